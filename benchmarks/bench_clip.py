"""Notebook 03's CLIP: retrieval recall@k and zero-shot attribute accuracy on held-out faces.

Runs in the mode of the environment (COURSE_QUICK=1 for the quick recipe). With COURSE_DATA pointing at the
5,000 real CelebA faces these are real-face numbers; without it, quick mode measures the procedural stand-in.

    COURSE_DATA=../shared/data COURSE_QUICK=1 python -m benchmarks.bench_clip [--epochs N] [--tag NAME]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks._common import stopwatch, write_results
from helpers.clip import ClipTextEncoder, evaluate_clip, face_data, train_clip
from helpers.config import get_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, help="training epochs (default: the recipe of the mode)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--tag", default="", help="suffix of the results file")
    args = parser.parse_args()
    cfg = get_config()
    faces = face_data(cfg)
    record: dict = {"mode": cfg.mode, "data": faces.source, "train_faces": len(faces.train_images),
                    "heldout_faces": len(faces.test_images)}
    print(f"CLIP benchmark: {cfg}  data: {faces}")
    with tempfile.TemporaryDirectory() as tmp, stopwatch(record, "train"):
        trainer = train_clip(cfg, Path(tmp) / "clip", epochs=args.epochs, batch_size=args.batch_size, progress=False)
    record["recipe"] = {"epochs": trainer.epochs, "batch_size": trainer.batch_size}
    record["history"] = trainer.history
    scores = evaluate_clip(ClipTextEncoder(trainer.model, trainer.tokenizer), faces.test_images, faces.test_attrs)
    record.update(scores)
    for direction in ("text_to_image", "image_to_text"):
        print(f"{direction:14s} " + "  ".join(f"R@{k} {v:.3f}" for k, v in scores[direction].items()))
    print(f"chance R@10 {scores['chance_at_10']:.3f}")
    ranked = sorted(scores["zero_shot"].items(), key=lambda kv: -kv[1])
    print("zero-shot balanced accuracy: " + ", ".join(f"{a} {v:.2f}" for a, v in ranked))
    print(f"zero-shot mean over 40 attributes: {scores['zero_shot_mean']:.3f}  "
          f"(training {record['train_s']} s wall, {record['train_cpu_s']} s CPU)")
    source = "real" if "celeba" in faces.source.lower() else "synthetic"
    write_results(f"clip_{cfg.mode}_{source}{('_' + args.tag) if args.tag else ''}", record)


if __name__ == "__main__":
    main()
