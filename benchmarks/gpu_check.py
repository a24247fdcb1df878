"""`make gpu-check`: every model's full recipe for a few hundred steps on this machine, measured.

    python -m benchmarks.gpu_check                    # every model, 300 optimizer steps each
    python -m benchmarks.gpu_check --steps 100 ldm    # some models
    COURSE_SMOKE=1 python -m benchmarks.gpu_check --steps 2   # what CI runs on its CPU (tests/test_gpu_check.py)

For each model it runs `python -m helpers train <model>` in full mode, with AMP on CUDA, stopped after `--steps`
optimizer steps (COURSE_MAX_STEPS), on stand-ins of the downloads in their real formats (tests/standins.py: a GPU
machine may have no network) at the full recipe's model size and batch. It prints images/s, the peak GPU memory
and the projected wall-clock of the full recipe: epochs x the real dataset's size / images per second (training
steps only: the evaluations and checkpoints between epochs add to it), or the time budget of the two diffusion
models. Exits 1 if any model fails. The table is also written to --out as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELEBA_TRAIN = 202_599 - 10_000  # the mirror's rows, minus the 10,000 held out
# model: the training images of the real dataset its full recipe reads (None: a time budget decides the length)
MODELS = {
    "vae": 60_000, "text-cvae": 60_000, "judge": 60_000, "clip": CELEBA_TRAIN, "celeba-cvae": CELEBA_TRAIN,
    "celeba-gan": CELEBA_TRAIN, "face-judge": CELEBA_TRAIN, "ldm-autoencoder": CELEBA_TRAIN, "ldm": None,
    "cifar-judge": 50_000, "cifar-ddpm": None, "sketch-cvae": 9_500,
}


def _environment(work: Path, steps: int) -> dict[str, str]:
    """The smoke's stand-in environment (tests/smoke_full.py), with full-size batches unless COURSE_SMOKE is set."""
    sys.path.insert(0, str(ROOT / "tests"))
    from smoke_full import standin_environment

    smoke = os.environ.get("COURSE_SMOKE", "").strip().lower() in {"1", "true", "yes", "on"}
    env = standin_environment(work, large=not smoke)  # full batches need a few thousand images
    env.update({"COURSE_QUICK": "0", "COURSE_MAX_STEPS": str(steps)})
    return env


def measure(model: str, env: dict[str, str], work: Path) -> dict:
    """Train `model` for the capped steps; its images/s and peak memory from the checkpoint's history."""
    from helpers.registry import recipes

    out = work / "runs" / f"check-{model}"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "helpers", "train", model, "--out", str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        return {"model": model, "ok": False, "error": lines[-1][:300], "seconds": round(seconds, 1)}
    index = json.loads((out / "checkpoint.json").read_text())  # the history only: no need to verify the weights
    history = index["extra"].get("history") or []
    rates = [h["images_per_second"] for h in history if "images_per_second" in h]
    rate = max(rates) if rates else float("nan")  # the first epoch includes warm-up (cuDNN autotuning, caches)
    recipe = recipes().get(model, {}).get("full")
    images = MODELS[model]
    row = {"model": model, "ok": True, "seconds": round(seconds, 1), "images_per_second": round(rate, 1),
           "peak_memory_gib": max((h.get("peak_memory_gib") or 0 for h in history), default=0) or None,
           "batch_size": recipe.batch_size if recipe else None}
    if recipe is not None and recipe.time_budget:
        row.update(projected_minutes=recipe.time_budget / 60, images_in_budget=round(rate * recipe.time_budget))
    elif recipe is not None and images is not None:
        row.update(projected_minutes=round(recipe.epochs * images / rate / 60, 1), epochs=recipe.epochs)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", help=f"default: all ({', '.join(MODELS)})")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per model (default 300)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or args.steps < 1:
        print(f"error: {'unknown model(s) ' + ', '.join(unknown) if unknown else '--steps must be >= 1'}; "
              f"choose from {', '.join(MODELS)}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        work = Path(scratch)
        env = _environment(work, args.steps)
        capped = " (COURSE_SMOKE: batches of at most 8, numbers not representative)" if env.get("COURSE_SMOKE") else ""
        print(f"{device}: {args.steps} optimizer steps per model, full recipes, stand-in data{capped}", flush=True)
        print(f"{'model':16s} {'batch':>5s} {'images/s':>9s} {'peak GiB':>8s} {'full recipe':>22s}  wall", flush=True)
        for model in args.models or list(MODELS):
            row = measure(model, env, work)
            rows.append(row)
            if not row["ok"]:
                print(f"{model:16s} FAILED after {row['seconds']:.0f} s: {row['error']}", flush=True)
                continue
            full = (f"~{row['projected_minutes']:.0f} min ({row['epochs']} epochs)" if "epochs" in row
                    else f"{row['projected_minutes']:.0f} min budget")
            peak = f"{row['peak_memory_gib']:.2f}" if row["peak_memory_gib"] else "-"
            print(f"{model:16s} {row['batch_size'] or '-':>5} {row['images_per_second']:9.0f} {peak:>8s} "
                  f"{full:>22s}  {row['seconds']:.0f} s", flush=True)
    failed = [row["model"] for row in rows if not row["ok"]]
    from helpers.files import write_json_atomic

    write_json_atomic(Path(args.out), {"device": device, "steps": args.steps, "models": rows})
    print(f"{len(rows) - len(failed)} of {len(rows)} models trained" + (f"; FAILED: {', '.join(failed)}" if failed
                                                                         else "") + f"; table in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
