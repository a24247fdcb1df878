"""Notebook 07's benchmark: latent diffusion on faces, measured end to end.

1. Stage 1: the autoencoder's held-out reconstruction PSNR and its training time.
2. Stage 2: the text-conditioned latent UNet trained for `--seconds` of wall-clock (on a GPU: the full recipe).
3. Prompted-attribute accuracy of single-attribute prompts, judged by notebook 04's attribute classifier trained
   on real faces, at several guidance scales (does guidance help?), against the rate at which real faces show
   the attribute anyway; FID on our CLIP's image features (faces from held-out captions vs held-out faces).
4. DDIM-50 vs DDPM-1000: seconds per face and judged accuracy of both.

    COURSE_DATA=../shared/data COURSE_QUICK=1 python -m benchmarks.bench_ldm --seconds 900
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks._common import write_results
from helpers import ldm
from helpers.clip import face_data, load_or_train_clip, train_clip
from helpers.config import get_config
from helpers.faces import load_or_train_face_judge, reliable, train_face_judge
from helpers.metrics import frechet_distance
from helpers.viz import labelled_grid, save_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600, help="wall-clock of the latent UNet's training")
    parser.add_argument("--ae-epochs", type=int, help="autoencoder epochs (default: the mode's recipe)")
    parser.add_argument("--width", type=int, help="UNet width (default: the mode's recipe)")
    parser.add_argument("--clip-epochs", type=int, help="train a CLIP for this benchmark (default: reuse runs/clip)")
    parser.add_argument("--judge-epochs", type=int, help="train the attribute judge for this benchmark (default: "
                                                          "reuse runs/face-judge)")
    parser.add_argument("--all-faces", action="store_true", help="train the UNet on every face (quick mode: 2,000)")
    parser.add_argument("--per-prompt", type=int, default=32, help="DDIM samples per single-attribute prompt")
    parser.add_argument("--ddpm-per-prompt", type=int, default=4, help="DDPM-1000 samples per prompt (slow on CPU)")
    parser.add_argument("--guidance", default="0,1,3,5", help="guidance scales to judge")
    parser.add_argument("--fid-n", type=int, default=500)
    parser.add_argument("--runs", default="runs/bench-ldm", help="where the benchmark's models go")
    args = parser.parse_args()

    cfg = get_config()
    runs = Path(args.runs)
    data = face_data(cfg)
    print(f"{cfg}\ndata {data}", flush=True)
    results: dict = {"mode": cfg.mode, "data": data.source, "device": str(cfg.device)}

    start = time.perf_counter()
    autoencoder, history = ldm.train_autoencoder(cfg, runs / "autoencoder", epochs=args.ae_epochs, data=data,
                                                 progress=False)
    results["autoencoder"] = {"seconds": round(time.perf_counter() - start, 1), "epochs": len(history),
                              "heldout_psnr": ldm.reconstruction_psnr(autoencoder, data.test_images),
                              "parameters": sum(p.numel() for p in autoencoder.parameters())}
    print(f"autoencoder: {results['autoencoder']}", flush=True)

    clip_dir = cfg.run_dir("clip")
    if args.clip_epochs:
        clip_dir = runs / "clip"
        train_clip(cfg, clip_dir, epochs=args.clip_epochs, data=data, progress=False)
    clip = load_or_train_clip(cfg, clip_dir, data=data)  # runs/clip when notebook 03 trained it in this mode
    if args.judge_epochs:
        judge, judge_accuracy = train_face_judge(cfg, runs / "face-judge", epochs=args.judge_epochs, data=data)
    else:
        judge, judge_accuracy = load_or_train_face_judge(cfg, data)
    judged = reliable(judge_accuracy)
    floor = ldm.real_attribute_rates(judge, judged, data)
    results["judge"] = {"reliable": judged, "real_rate_per_prompt": floor,
                        "real_rate_mean": sum(floor.values()) / len(floor)}
    print(f"judge reads {len(judged)} attributes reliably: {', '.join(judged)}; real faces show the prompted "
          f"attribute {results['judge']['real_rate_mean']:.1%} of the time", flush=True)

    settings = replace(ldm.SETTINGS[cfg.mode], train_limit=None) if args.all_faces else None
    model = ldm.train_ldm(cfg, runs / "ldm", data=data, autoencoder_dir=runs / "autoencoder", clip_dir=clip_dir,
                          settings=settings, progress=False, time_budget=args.seconds, gif_every=10_000,
                          **({"width": args.width} if args.width else {}))
    results["clip"] = {"run": str(clip_dir), "epochs": args.clip_epochs or "reused"}
    results["ldm"] = {"parameters": model.parameters, "train_faces": len(data.train_images) if args.all_faces else
                      ldm.SETTINGS[cfg.mode].train_limit, "train_seconds": model.train_seconds,
                      "epochs": len(model.history), "final_loss": model.history[-1]["loss"],
                      "encode_seconds": model.extra["encode_seconds"], "latent_scale": model.scale}
    print(f"ldm: {results['ldm']}", flush=True)

    figures = cfg.figures_for(data.source)
    scales = [float(s) for s in args.guidance.split(",")]
    results["guidance"] = {}
    for scale in scales:
        row = ldm.attribute_accuracy(model, judge, judged, per_prompt=args.per_prompt, guidance=scale)
        images = row.pop("images")
        results["guidance"][f"{scale:g}"] = row
        print(f"DPM-Solver++(2M)-20, guidance {scale:g}: prompted-attribute accuracy {row['attribute_accuracy']:.1%} "
              f"({row['n']} faces, {row['ms_per_image']:.0f} ms/face)", flush=True)
        if scale == 3.0:
            save_image(labelled_grid((images + 1) / 2, list(row["per_prompt"]), ncol=args.per_prompt, scale=1),
                       figures / "bench_ldm_single_attribute_w3.png")

    sampler_rows = {}
    for sampler, count in (("dpm++2m", 20), ("ddim", 50), ("ddpm", 1000)):
        row = ldm.attribute_accuracy(model, judge, judged, per_prompt=args.ddpm_per_prompt, guidance=3.0,
                                     steps=count, sampler=sampler, seed=1)
        row.pop("images")
        sampler_rows[f"{sampler}-{count}"] = row
        print(f"{sampler}-{count}, guidance 3: {row['ms_per_image']:.0f} ms/face, prompted-attribute accuracy "
              f"{row['attribute_accuracy']:.1%} ({row['n']} faces)", flush=True)
    ratio = sampler_rows["ddpm-1000"]["ms_per_image"] / sampler_rows["dpm++2m-20"]["ms_per_image"]
    results["samplers"] = {**sampler_rows, "ddpm1000_over_dpm20_time": ratio}
    print(f"DDPM-1000 takes {ratio:.1f}x the time of DPM-Solver++(2M)-20", flush=True)

    fid = ldm.sample_fid(model, clip, data, n=args.fid_n, guidance=3.0)
    n = fid["n"]
    real = frechet_distance(clip.image_features(data.train_images[:n]), clip.image_features(data.test_images[:n]))
    results["fid_clip"] = {"samples": fid["fid_clip"], "real_train_vs_heldout": real, "n": n}
    print(f"FID on our CLIP's image features ({n} faces): samples {fid['fid_clip']:.2f}, real training faces "
          f"{real:.2f}", flush=True)
    save_image(ldm.prompt_rows(model, list(ldm.GRID_PROMPTS), n=8, guidance=3.0), figures / "bench_ldm_prompts.png")
    save_image(ldm.guidance_grid(model, list(ldm.GRID_PROMPTS[:4]), scales, seed=1),
               figures / "bench_ldm_guidance.png")
    write_results("ldm", results)


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
