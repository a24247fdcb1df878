"""Run the course notebooks headless, in order, and keep the executed copies: `make full`.

    python scripts/run_notebooks.py                 # every notebook, full mode
    python scripts/run_notebooks.py 01 02           # only these (by number or name)
    python scripts/run_notebooks.py --force 02      # run again even if it already finished
    python scripts/run_notebooks.py --quick         # quick mode (what CI checks, but keeping the outputs)

Executed copies go to outputs/executed/<mode>/<notebook>.ipynb, written atomically when a notebook finishes, so a
notebook whose copy exists (and is newer than the notebook) is skipped: an interrupted `make full` resumes at the
notebook it was running. One progress line per notebook; the wall-clock of each is kept in timings.json.
A notebook that fails stops the run with the cell that failed; its partial output goes to <name>.failed.ipynb.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from helpers.files import write_atomic, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]


def select(notebooks: list[Path], wanted: list[str]) -> list[Path]:
    if not wanted:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.name.startswith(w) or nb.stem == w for w in wanted)]
    unknown = [w for w in wanted if not any(nb.name.startswith(w) or nb.stem == w for nb in notebooks)]
    if unknown:
        names = ", ".join(nb.stem for nb in notebooks)
        raise SystemExit(f"error: no notebook matches {', '.join(unknown)}; choose from {names}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", help="numbers or names (default: all, in order)")
    parser.add_argument("--force", action="store_true", help="run notebooks that already finished again")
    parser.add_argument("--quick", action="store_true", help="quick mode instead of full mode")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "executed"), help="where executed copies go")
    parser.add_argument("--notebooks-dir", default=str(ROOT / "notebooks"), help="where the notebooks are")
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: none)")
    args = parser.parse_args(argv)

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    mode = "quick" if args.quick else "full"
    os.environ["COURSE_QUICK"] = "1" if args.quick else "0"  # the kernels inherit it
    notebooks = select(sorted(Path(args.notebooks_dir).glob("[0-9][0-9]_*.ipynb")), args.notebooks)
    out = Path(args.out) / mode
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    print(f"{len(notebooks)} notebook(s), {mode} mode, executed copies in {out}", flush=True)
    for number, path in enumerate(notebooks, 1):
        target = out / path.name
        prefix = f"[{number}/{len(notebooks)}] {path.stem}"
        if target.exists() and target.stat().st_mtime >= path.stat().st_mtime and not args.force:
            took = timings.get(path.stem, {}).get("seconds")
            print(f"{prefix}: done before{f' ({took:.0f} s)' if took else ''}, skipped (--force runs it again)",
                  flush=True)
            continue
        print(f"{prefix}: running ...", flush=True)
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        try:
            client.execute()
        except CellExecutionError as error:
            nbformat.write(notebook, out / f"{path.stem}.failed.ipynb")
            first = f"{error.ename}: {error.evalue}"  # the exception the failing cell raised
            print(f"{prefix}: FAILED after {time.perf_counter() - start:.0f} s: {first}\n"
                  f"  the executed part is in {out / (path.stem + '.failed.ipynb')}", flush=True)
            return 1
        seconds = time.perf_counter() - start
        write_atomic(target, lambda tmp: nbformat.write(notebook, str(tmp)))
        timings[path.stem] = {"seconds": round(seconds, 1), "mode": mode,
                              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_json_atomic(timings_path, timings)
        print(f"{prefix}: finished in {seconds:.0f} s -> {target}", flush=True)
    total = sum(timings.get(nb.stem, {}).get("seconds", 0) for nb in notebooks)
    print(f"all {len(notebooks)} notebook(s) done; {total:.0f} s of notebook time in all", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
