"""`make smoke-full`: every notebook top to bottom in FULL mode on the CPU, on stand-ins of the real downloads.

    python tests/smoke_full.py               # all notebooks, in a temporary folder
    python tests/smoke_full.py 08 --keep out # some notebooks; keep the stand-ins, runs and executed copies in out/

What it checks: the code paths a learner's default run takes (full mode: full-size models, the download formats of
torchvision's MNIST / CIFAR-10 / CelebA, the CelebA parquet mirror and zoheb/sketch-scene), which quick mode and
the unit tests never take. What it does not check: that full mode learns. The stand-ins are a few dozen images
(tests/standins.py) and COURSE_SMOKE=1 cuts every run to the smoke cap of helpers.config (a few optimizer steps of
a few images, a few samples per evaluation).

Nothing outside the chosen folder is written: data, runs, figures and outputs all go there, COURSE_DATA is
unset, and the hub is offline (the two hub datasets are read from local folders of parquet shards).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE_FOLDERS = ("standins", "site", "runs", "outputs", "figures", "executed")  # all the smoke writes
# Loaded by every Python process of the smoke (the notebook kernels too): torchvision checks the MD5 sums of the
# real CIFAR-10 and CelebA files, which stand-ins cannot match.
SITECUSTOMIZE = f"""import sys
sys.path.insert(0, {str(ROOT / "tests")!r})
from standins import accept_standin_checksums
accept_standin_checksums()
"""


def standin_environment(work: Path, large: bool = False) -> dict[str, str]:
    """Write the stand-ins into `work` and return the environment that points full mode at them: downloads,
    the two hub datasets as local folders, runs / outputs / figures inside `work`, no COURSE_DATA, hub offline,
    torchvision's MD5 checks relaxed for the stand-ins (`large`: see standins.write_all)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from standins import write_all

    paths = write_all(work / "standins", large=large)
    site = work / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {key: value for key, value in os.environ.items() if key not in ("COURSE_DATA", "COURSE_QUICK")}
    env.update({
        "COURSE_DOWNLOADS": str(paths["downloads"]), "COURSE_HUB_CELEBA": str(paths["celeba"]),
        "COURSE_HUB_SKETCHES": str(paths["sketches"]), "COURSE_RUNS": str(work / "runs"),
        "COURSE_OUTPUTS": str(work / "outputs"), "COURSE_FIGURES": str(work / "figures"), "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), str(ROOT), env.get("PYTHONPATH")])),
    })
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", help="numbers or names (default: all)")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smoke-full-") as scratch:
        work = Path(args.keep).resolve() if args.keep else Path(scratch)
        for name in SMOKE_FOLDERS:  # a kept folder from an earlier smoke: start afresh (stale caches, runs)
            shutil.rmtree(work / name, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        env = standin_environment(work)
        env["COURSE_SMOKE"] = "1"
        print(f"stand-ins written to {work / 'standins'} in {time.perf_counter() - start:.1f} s; "
              f"full mode, COURSE_SMOKE=1", flush=True)
        command = [sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), "--force",
                   "--out", str(work / "executed"), *args.notebooks]
        code = subprocess.call(command, env=env, cwd=ROOT)
        print(f"smoke-full {'passed' if code == 0 else 'FAILED'} in {time.perf_counter() - start:.0f} s", flush=True)
        return code


if __name__ == "__main__":
    sys.exit(main())
