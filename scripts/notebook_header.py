"""The lines every notebook opens with, defined once: the Colab/Kaggle badges, the install cell and the mode switch.

    python scripts/notebook_header.py          # rewrite the notebooks' headers from the definitions below
    python scripts/notebook_header.py --check  # exit 1 if a notebook's header differs (tests/test_notebooks.py)

A notebook is opened on Colab or Kaggle before the course is installed, so it cannot import these lines from the
package: each notebook holds a copy, and this script writes (or checks) every copy from the one definition here.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from helpers.config import REPOSITORY
from helpers.files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
REPO = REPOSITORY
INSTALL_CELL = f'''import os, subprocess, sys

# Colab and Kaggle start without the course: install it there (elsewhere: `make setup` or `conda env create`)
if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/{REPO}"], check=True)'''
MODE_LINE = ('MODE = "auto"  # "auto": quick on a CPU-only runtime, full on a GPU; or "quick" / "full" '
             '(COURSE_QUICK=1 or 0 overrides)')
BADGE_PATTERN = re.compile(r"^\[!\[Open In Colab\].*$", re.MULTILINE)


def badges(name: str) -> str:
    path = f"{REPO}/blob/main/notebooks/{name}"
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}) "
            f"[![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]"
            f"(https://kaggle.com/kernels/welcome?src=https://github.com/{path})")


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def expected_header(path: Path, notebook: dict) -> list[str]:
    """What differs between `notebook` and its header as defined here ([] when it matches)."""
    problems = []
    title = "".join(notebook["cells"][0]["source"])
    if badges(path.name) not in title:
        problems.append("the first cell lacks the Colab and Kaggle badges")
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    if "".join(code[0]["source"]) != INSTALL_CELL:
        problems.append("the first code cell is not the install cell")
    setup = "".join(code[1]["source"]) if len(code) > 1 else ""
    if MODE_LINE not in setup or "get_config(MODE)" not in setup or "cfg.cost(" not in setup:
        problems.append('the second code cell lacks the mode switch (MODE = "auto", get_config(MODE), cfg.cost)')
    return problems


def rewrite(path: Path, notebook: dict) -> None:
    title = notebook["cells"][0]
    text = BADGE_PATTERN.sub(badges(path.name), "".join(title["source"]), count=1)
    title["source"] = _lines(text)
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    code[0]["source"] = _lines(INSTALL_CELL)
    setup = "".join(code[1]["source"])
    if MODE_LINE not in setup:
        setup = setup.replace("cfg = get_config()\nprint(cfg)",
                              f'{MODE_LINE}\ncfg = get_config(MODE)\nprint(cfg)\nprint(cfg.cost("{path.stem}"))', 1)
    code[1]["source"] = _lines(setup)
    write_text_atomic(path, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on a difference")
    args = parser.parse_args(argv)
    failed = 0
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = json.loads(path.read_text())
        if not args.check:
            rewrite(path, notebook)
        for problem in expected_header(path, notebook):
            print(f"{path.name}: {problem}")
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
