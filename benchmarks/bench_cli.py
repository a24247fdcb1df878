"""Does the learner's command train as fast as the benchmarks? `python -m helpers train cifar-ddpm` (progress bar,
checkpoints, a GIF frame per epoch, the registry's imports) against the benchmarks' bare loop (`bench_ddpm.train_row`:
the same UNet, batch, data, EMA and time budget, nothing else), each a process of its own, alternating over
`--repeats` rounds so a noisy neighbour slows both alike.

Per run: optimizer steps reached in the budget, the training images/s the loop itself measured (its busy time), the
images/s the budget's probe measured (what the plan was made from), and the wall-clock of the whole process
(imports, data, training, GIF, checkpoint). Medians over the rounds, and the CLI's steps as a share of the loop's.

    COURSE_DATA=../shared/data python -m benchmarks.bench_cli --seconds 120 --repeats 3 --image-size 32
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks._common import write_results

ROOT = Path(__file__).resolve().parents[1]


def bare_loop(seconds: float, image_size: int) -> None:
    """The benchmarks' loop on the CLI's quick data, in this process; prints one JSON line."""
    from benchmarks.bench_ddpm import train_row
    from helpers import cifar
    from helpers.config import get_config

    cfg = get_config(quick=True)
    data = cifar.cifar_data(cfg, image_size)
    settings = replace(cifar.SETTINGS["quick"], image_size=image_size)
    recipe = cfg.recipe(cifar.KIND)
    ddpm, steps = train_row(settings, cifar.build_unet(recipe.width, settings), data, seconds, recipe, cfg.device, 0)
    print(json.dumps({"steps": steps, "loop_images_per_second": [h["images_per_second"] for h in ddpm.history]}))


def _probe_rate(log: str) -> float | None:
    found = re.search(r"measured (\d+) images/s", log)
    return float(found.group(1)) if found else None


def run(arm: str, seconds: float, image_size: int, folder: Path) -> dict:
    env = {**os.environ, "COURSE_QUICK": "1", "PYTHONPATH": str(ROOT)}
    if arm == "cli":
        out = folder / "cli"
        command = [sys.executable, "-m", "helpers", "train", "cifar-ddpm", "--image-size", str(image_size),
                   "--time-budget", str(seconds), "--out", str(out)]
    else:
        command = [sys.executable, "-m", "benchmarks.bench_cli", "--bare-loop", str(seconds),
                   "--image-size", str(image_size)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log = done.stdout + done.stderr
    if done.returncode:
        raise SystemExit(f"{arm} run failed (rc {done.returncode}):\n{log[-2000:]}")
    if arm == "cli":
        from helpers.checkpoint import read_index

        steps = read_index(out, "cifar-ddpm")["step"]
        loop = [float(v) for v in re.findall(r"epoch +\d+/\d+ .*?(\d+) images/s", log)]
    else:
        record = json.loads(done.stdout.strip().splitlines()[-1])
        steps, loop = record["steps"], record["loop_images_per_second"]
    return {"steps": steps, "loop_images_per_second": loop, "probe_images_per_second": _probe_rate(log),
            "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120, help="time budget of every run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--bare-loop", type=float, help=argparse.SUPPRESS)  # the loop's own process
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if args.bare_loop:
        return bare_loop(args.bare_loop, args.image_size)
    runs: dict[str, list[dict]] = {"cli": [], "loop": []}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as scratch:
        for round_ in range(args.repeats):
            for arm in (("cli", "loop") if round_ % 2 == 0 else ("loop", "cli")):
                result = run(arm, args.seconds, args.image_size, Path(scratch))
                runs[arm].append(result)
                print(f"round {round_ + 1} {arm:4s}: {result['steps']} steps, loop "
                      f"{'/'.join(f'{v:.0f}' for v in result['loop_images_per_second'])} images/s, probe "
                      f"{result['probe_images_per_second']} images/s, process {result['wall_s']:.0f} s", flush=True)
    summary = {arm: {"median_steps": statistics.median(r["steps"] for r in values),
                     "median_wall_s": statistics.median(r["wall_s"] for r in values)} for arm, values in runs.items()}
    ratio = summary["cli"]["median_steps"] / summary["loop"]["median_steps"]
    print(f"median steps in {args.seconds:.0f} s: CLI {summary['cli']['median_steps']:.0f}, bare loop "
          f"{summary['loop']['median_steps']:.0f} (CLI / loop = {ratio:.2f}); median process time "
          f"{summary['cli']['median_wall_s']:.0f} s vs {summary['loop']['median_wall_s']:.0f} s")
    write_results(f"cli_speed{args.tag}", {"seconds": args.seconds, "repeats": args.repeats,
                                           "image_size": args.image_size, "runs": runs, "summary": summary,
                                           "cli_over_loop_steps": round(ratio, 3)})


if __name__ == "__main__":
    main()
