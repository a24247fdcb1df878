"""Notebook 04's comparison: attribute CVAE vs CLIP CVAE vs conditional GAN, same data, same epochs.

Trains the CLIP (if runs/clip has none for this mode), the attribute judge and the three generators, then prints
the comparison table and writes the numbers (and, for data that may be shown, the grids and GIFs) to figures/.

    COURSE_DATA=../shared/data COURSE_QUICK=1 python -m benchmarks.bench_faces --epochs 15 --judge-epochs 8
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks._common import write_results
from helpers import faces as F
from helpers.clip import face_data, load_or_train_clip
from helpers.config import get_config
from helpers.viz import save_image

MODELS = (("celeba-cvae", "attributes"), ("celeba-cvae", "clip"), ("celeba-gan", "attributes"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, help="epochs of every generator (default: the recipe of the mode)")
    parser.add_argument("--judge-epochs", type=int, help="epochs of the attribute judge")
    parser.add_argument("--tag", default="", help="suffix of the results file")
    args = parser.parse_args()
    cfg = get_config()
    data = face_data(cfg)
    print(f"face generators benchmark: {cfg}  data: {data}")
    clip = load_or_train_clip(cfg)
    figures = F.figures_dir(cfg, data)
    with tempfile.TemporaryDirectory() as tmp:
        judge, accuracy = F.train_face_judge(cfg, Path(tmp) / "judge", epochs=args.judge_epochs, data=data)
        print(f"judge trusted on ({F.JUDGE_MIN}+): {', '.join(F.reliable(accuracy))}")
        models = {}
        for model, condition in MODELS:
            name = F.run_name(model, condition)
            models[name] = F.train_faces(cfg, model, condition, Path(tmp) / name, epochs=args.epochs, data=data,
                                         clip=clip, progress=False, gif_path=figures / f"{name.replace('-', '_')}_training.gif")
            print(f"{name}: {models[name].train_seconds:.0f} s")
        rows = {"real faces": F.real_reference(judge, accuracy, clip, data, seed=cfg.seed)}
        for name, face in models.items():
            rows[name] = F.evaluate_faces(face, judge, accuracy, clip, data, seed=cfg.seed, inception=True)
        save_image(F.prompt_grid(models, n=6, seed=0), figures / "celeba_prompts_by_model.png")
    print(F.comparison_table(rows))
    source = "synthetic" if data.source.startswith("synthetic") else "real"
    write_results(f"faces_{cfg.mode}_{source}{('_' + args.tag) if args.tag else ''}",
                  {"mode": cfg.mode, "data": data.source, "epochs": args.epochs or cfg.recipe("celeba-cvae").epochs,
                   "judge_accuracy": accuracy, "judge_trusted": F.reliable(accuracy), "rows": rows})


if __name__ == "__main__":
    main()
