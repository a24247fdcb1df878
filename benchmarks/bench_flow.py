"""Flow matching and the diffusion transformer against notebook 05's adopted recipe, at equal wall-clock.

Every row trains on the same images with the same loop, seed and time budget (`--seconds`; the learning-rate
schedule planned to end on time), rows alternating over `--repeats` rounds (the order reversed every other round)
so that a noisy neighbour slows them alike. Each trained model is judged at several sampling lengths (`--steps`,
default 4, 8 and 20), guidance 3, `--per-class` samples per class: the share the quick judge reads as the class
asked for (with n and a 95% Wilson interval), the 4x4 mean-colour classifier on the same samples (the trivial
baseline), and FID on the judge's features against held-out images. Medians over the rounds.

Rows (`--rows`, default all but the extras):
    v-unet       the adopted recipe: v-prediction, min-SNR-5, cosine schedule, DPM-Solver++(2M)
    flow-unet    rectified flow with logit-normal times (SD3's default), the same UNet, Euler and Heun
    flow-dit     rectified flow on a diffusion transformer (patch 2, adaLN-zero), Euler and Heun
    extras: flow-unet-uniform (uniform times), v-dit (the adopted objective on the DiT)

Heun makes 2N - 1 network calls for N steps; the table prints the calls beside every number.

    python -m benchmarks.bench_flow --seconds 120 --repeats 2                      # procedural icons, 16x16
    COURSE_DATA=../shared/data python -m benchmarks.bench_flow --real --image-size 32 --seconds 360 --tag _real
                                                                    # real CIFAR-10, 32x32, 6 minutes a row

Real photos are judged only by a judge that reads at least 85% of held-out real photos (trained once, see
benchmarks/bench_ddpm.py); the run stops with the command to train it otherwise.
"""
from __future__ import annotations

import argparse
import statistics
import sys

from benchmarks._common import write_results
from benchmarks.bench_ddpm import STRONG_JUDGE
from helpers import cifar
from helpers.checkpoint import read_index
from helpers.config import get_config
from helpers.metrics import format_accuracy

ROWS = {  # name -> (objective, backbone, extra settings)
    "v-unet": ("v", "unet", {}),
    "flow-unet": ("flow", "unet", {}),
    "flow-dit": ("flow", "dit", {}),
    "flow-unet-uniform": ("flow", "unet", {"noise_levels": "uniform"}),
    "v-dit": ("v", "dit", {}),
}
DEFAULT_ROWS = ("v-unet", "flow-unet", "flow-dit")


def samplers_of(settings) -> tuple[str, ...]:
    return ("euler", "heun") if settings.prediction == "flow" else ("dpm++2m",)


def calls(sampler: str, steps: int) -> int:
    return 2 * steps - 1 if sampler == "heun" else steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120, help="training wall-clock of every row")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds")
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    parser.add_argument("--steps", default="4,8,20", help="sampling steps to judge every model at")
    parser.add_argument("--per-class", type=int, default=20, help="judged samples per class, row and step count")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--real", action="store_true", help="the local CIFAR-10 in COURSE_DATA, all images")
    parser.add_argument("--judge-dir", help="a trained cifar-judge run for this data and size (trained if missing)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    step_counts = [int(s) for s in args.steps.split(",")]
    cfg = get_config(quick=True)
    from helpers.cifar_judge import load_or_train_cifar_judge

    data = cifar.cifar_data(cfg, args.image_size, None if args.real else -1)
    judge_dir = args.judge_dir or cfg.run_dir("cifar-judge") / f"bench-{args.image_size}px"
    judge, judge_accuracy = load_or_train_cifar_judge(get_config(quick=False) if args.real else cfg, data, judge_dir)
    if args.real and judge_accuracy < STRONG_JUDGE:
        print(f"the judge in {judge_dir} reads only {judge_accuracy:.1%} of held-out real photos (needs "
              f"{STRONG_JUDGE:.0%}); train it first: COURSE_QUICK=0 python -m helpers train cifar-judge --epochs 20 "
              f"--out {judge_dir}", file=sys.stderr)
        raise SystemExit(2)
    colour = cifar.colour_baseline(data)
    results: dict = {"data": data.source, "image_size": data.image_size, "train_images": len(data.train_labels),
                     "seconds": args.seconds,
                     "repeats": args.repeats, "per_class": args.per_class, "guidance": 3.0,
                     "judge_heldout_accuracy": judge_accuracy, "judge_heldout_n": len(data.test_labels),
                     "colour_baseline_heldout": colour.accuracy(data.test_images, data.test_labels)}
    print(f"data {data.source}; judge reads {format_accuracy(judge_accuracy, len(data.test_labels))} of held-out "
          f"images, the colour classifier {results['colour_baseline_heldout']:.1%}", flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in rows}
    for round_ in range(args.repeats):
        for name in (rows if round_ % 2 == 0 else rows[::-1]):
            objective, backbone, extra = ROWS[name]
            settings = cifar.with_objective(cifar.SETTINGS["quick"], objective, backbone)
            settings = cifar.replace(settings, image_size=data.image_size, **extra)
            out = cfg.run_dir("bench") / f"flow-{name}"
            ddpm = cifar.train_cifar_ddpm(cfg, out, data=data, settings=settings, time_budget=args.seconds,
                                          progress=False)
            last = ddpm.history[-1]
            run = {"train_steps": read_index(out, cifar.KIND)["step"], "params": ddpm.parameters,
                   "images_per_second": last.get("images_per_second"), "train_seconds": last.get("train_seconds"),
                   "samples": {}}
            for sampler in samplers_of(settings):
                for steps in step_counts:
                    q = cifar.evaluate_ddpm(ddpm, judge, data, per_class=args.per_class, guidance=3.0, steps=steps,
                                            sampler=sampler, baseline=colour)
                    run["samples"][f"{sampler}-{steps}"] = {
                        "calls": calls(sampler, steps), "class_accuracy": q["class_accuracy"], "n": q["n"],
                        "colour_baseline": q["baseline_accuracy"], "fid_own": q["fid_own"],
                        "ms_per_image": q["ms_per_image"]}
                    print(f"round {round_ + 1} {name:18s} {run['train_steps']} steps {sampler}-{steps:<3d} "
                          f"({calls(sampler, steps)} calls): judged {format_accuracy(q['class_accuracy'], q['n'])}, "
                          f"colour {q['baseline_accuracy']:.1%}, FID {q['fid_own']:.2f}", flush=True)
            runs[name].append(run)
    table = {}
    for name, values in runs.items():
        keys = values[0]["samples"].keys()
        table[name] = {"runs": values, "train_steps": statistics.median(v["train_steps"] for v in values),
                       "params": values[0]["params"],
                       "median": {k: {m: statistics.median(v["samples"][k][m] for v in values)
                                      for m in ("class_accuracy", "colour_baseline", "fid_own")}
                                  | {"calls": values[0]["samples"][k]["calls"],
                                     "n_total": sum(v["samples"][k]["n"] for v in values)} for k in keys}}
    results["rows"] = table
    print(f"\n| row ({args.seconds:.0f} s each, median of {args.repeats}) | params | steps | sampler | calls | "
          f"judged | colour | FID |")
    for name, row in table.items():
        for key, m in row["median"].items():
            print(f"| {name} | {row['params'] / 1e6:.2f}M | {row['train_steps']:.0f} | {key} | {m['calls']} | "
                  f"{m['class_accuracy']:.1%} | {m['colour_baseline']:.1%} | {m['fid_own']:.2f} |")
    write_results(f"flow{args.tag}", results)


if __name__ == "__main__":
    main()
