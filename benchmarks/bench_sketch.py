"""Notebook 08's benchmark: the training features one at a time, then the quality of a longer run.

1. Throughput (sketches/s over `--batches` batches after a warm-up) of the same training step with data-loading
   workers 0 / 2 (+ persistent), pinned memory on / off, mixed precision on / off (CUDA only: on a CPU the AMP
   rows are skipped and said so), gradient clipping on / off.
2. Quality: the CVAE trained for `--epochs`, then the doodle judge (trained on the real doodles) reads
   `--per-class` samples of every class prompt; held-out reconstruction BCE.

    COURSE_DATA=../shared/data COURSE_QUICK=1 COURSE_RUNS=runs/bench-sketch-all \
        python -m benchmarks.bench_sketch --all-doodles --epochs 6 --per-class 100
"""
from __future__ import annotations

import argparse
import time

import torch

from benchmarks._common import Stopwatch, write_results
from helpers import sketch as sk
from helpers.config import get_config
from helpers.data.sketches import load_sketches
from helpers.viz import labelled_grid, save_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, help="training epochs of the quality run (default: the recipe)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per throughput row")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--text-encoder", default="auto", choices=sk.TEXT_ENCODERS)
    parser.add_argument("--all-doodles", action="store_true",
                        help="train on every local training doodle, not quick mode's 300 per class")
    args = parser.parse_args()

    cfg = get_config()
    data = load_sketches(cfg) if args.all_doodles else sk.sketch_data(cfg)
    print(f"{cfg}\ndata {data}", flush=True)
    encoder, recorded = sk.load_sketch_encoder(cfg, args.text_encoder, data)
    results: dict = {"mode": cfg.mode, "data": data.source, "device": str(cfg.device), "text_encoder": encoder.name}

    cuda = cfg.device.type == "cuda"
    rows = [("baseline: 0 workers, no pinning, fp32, clip 1.0", dict(num_workers=0, pin_memory=False, amp=False)),
            ("2 workers", dict(num_workers=2, pin_memory=False, amp=False)),
            ("2 persistent workers", dict(num_workers=2, persistent_workers=True, pin_memory=False, amp=False)),
            ("no gradient clipping", dict(num_workers=0, pin_memory=False, amp=False, grad_clip=None))]
    if cuda:
        rows += [("pinned memory", dict(num_workers=0, pin_memory=True, amp=False)),
                 ("AMP (bf16/fp16 autocast)", dict(num_workers=0, pin_memory=False, amp=True)),
                 ("all: 4 persistent workers, pinned, AMP", dict(num_workers=4, persistent_workers=True,
                                                                  pin_memory=True, amp=True))]
    throughput = {}
    for name, options in rows:
        watch = Stopwatch(3, args.batches)
        sk.train_sketch_cvae(cfg, cfg.run_dir("bench-sketch-throughput"), data=data, encoder=encoder,
                             recorded=recorded, progress=False, epochs=1, callbacks=[watch],
                             gif_path=cfg.outputs_dir / "bench_sketch_throughput.gif", **options)
        throughput[name] = round(watch.rate, 1)
        print(f"{name:45s} {watch.rate:8.1f} sketches/s", flush=True)
    if not cuda:
        throughput["pinned memory / AMP"] = "skipped: CPU only (pinning speeds host-to-GPU copies; AMP is slower on CPU)"
    results["throughput"] = throughput

    start = time.perf_counter()
    model = sk.train_sketch_cvae(cfg, cfg.run_dir("bench-sketch"), data=data, encoder=encoder, recorded=recorded,
                                 progress=False, epochs=args.epochs)
    judge, judge_accuracy = sk.load_or_train_doodle_judge(cfg, data)
    quality = sk.evaluate_sketches(model, judge, data, per_class=args.per_class)
    images = quality.pop("images")
    results["quality"] = {"epochs": len(model.history), "train_seconds": model.train_seconds,
                          "wall_seconds": round(time.perf_counter() - start, 1), "parameters": model.parameters,
                          "judge_heldout_accuracy": judge_accuracy, **quality}
    print(f"trained {len(model.history)} epochs in {model.train_seconds:.0f} s; judge {judge_accuracy:.1%} on real "
          f"held-out doodles; samples judged as their class {quality['class_accuracy']:.1%} ("
          + ", ".join(f"{c} {v:.0%}" for c, v in quality["per_class"].items())
          + f"); held-out BCE {quality['heldout_bce']:.1f} per sketch", flush=True)
    figures = cfg.figures_for(data.source)
    keep = torch.cat([torch.arange(i * args.per_class, i * args.per_class + 8) for i in range(len(data.classes))])
    save_image(labelled_grid(1 - images[keep].expand(-1, 3, -1, -1), sk.class_prompts(data.classes), ncol=8, scale=1),
               figures / "bench_sketch_samples.png")
    write_results("sketch", results)


if __name__ == "__main__":
    main()
