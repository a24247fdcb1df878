"""Notebook 05/07's benchmark: which DDPM recipe learns fastest on a CPU, which sampler is fastest, and what a
UNet costs.

1. Recipe study at equal wall-clock: every row trains the same UNet on the same images with the same loop, seed
   and time budget (`--seconds`, the learning-rate schedule planned to end on time), rows alternating over
   `--repeats` rounds so a noisy neighbour slows them alike; each is judged the same way: class accuracy of 20
   samples per class (DPM-Solver++(2M), 20 steps, guidance 3) read by a classifier trained on real images, and
   FID on that classifier's features against held-out images. Medians over the rounds.
   Rows: the adopted recipe (v-prediction, min-SNR-5 weighting, cosine schedule, warm-up + cosine learning rate,
   EMA per optimizer step), each of its choices undone one at a time, EDM's preconditioned denoiser with its
   log-normal noise levels (sampled on the same cosine schedule), the previous recipe (epsilon, linear,
   uniform, constant learning rate), and diffusers' UNet2DModel trained with that previous recipe.
2. Samplers on the adopted model: DPM-Solver++(2M) at 10/20/50 steps and DDIM-50 ("trailing" spacing) against
   DDPM-1000, milliseconds per image and judged accuracy.
3. Throughput (training images/s, fwd + bwd + AdamW) of UNet widths, depths, attention placements and batch
   sizes, and the FLOPs of one training image (forward + backward ~ 3x forward) for the full recipe.

    python -m benchmarks.bench_ddpm --seconds 60                          # procedural icons, 16x16 (quick mode)
    COURSE_QUICK=0 COURSE_DATA=../shared/data python -m helpers train cifar-judge --epochs 20 \
        --out runs/cifar-judge/bench-32px                                  # once: the judge of real photos
    COURSE_DATA=../shared/data python -m benchmarks.bench_ddpm --real --image-size 32 --seconds 360 \
        --rows adopted,epsilon,previous,diffusers,edm,channels-last --skip samplers,costs --tag _real
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import asdict, replace
from types import SimpleNamespace

import torch

from benchmarks._common import write_results
from helpers import cifar
from helpers.config import get_config, seed_everything
from helpers.diffusion import NoiseSchedule
from helpers.models.unet import count_parameters
from helpers.train import EMA, Trainer, WallClock

STRONG_JUDGE = 0.85  # the least held-out accuracy on real photos of a judge that grades real-data rows

PREVIOUS = dict(prediction="epsilon", schedule="linear", min_snr_gamma=None, lr_schedule="constant")
ROWS = {  # name -> (settings changed from the adopted quick recipe, model: "ours" | "diffusers")
    "adopted": ({}, "ours"),
    "epsilon": (dict(prediction="epsilon"), "ours"),
    "uniform-weight": (dict(min_snr_gamma=None), "ours"),
    "linear-schedule": (dict(schedule="linear"), "ours"),
    "shifted-cosine": (dict(shift=0.5), "ours"),
    "constant-lr": (dict(lr_schedule="constant"), "ours"),
    "edm": (dict(prediction="edm", noise_levels="lognormal", min_snr_gamma=None), "ours"),
    "previous": (PREVIOUS, "ours"),
    "diffusers": (PREVIOUS, "diffusers"),
    "channels-last": ({}, "ours"),
}
DESCRIPTIONS = {
    "adopted": "v-prediction, min-SNR-5, cosine schedule, warm-up + cosine LR",
    "epsilon": "adopted, but predicting epsilon",
    "uniform-weight": "adopted, but uniform loss weighting",
    "linear-schedule": "adopted, but the linear noise schedule",
    "shifted-cosine": "adopted, cosine schedule shifted to SNR x4 (shift 0.5)",
    "constant-lr": "adopted, but a constant learning rate",
    "edm": "EDM: preconditioned denoiser (data std 0.5), log-normal noise levels",
    "previous": "the previous recipe: epsilon, linear, uniform, constant LR",
    "diffusers": "diffusers UNet2DModel (same size) with the previous recipe",
    "channels-last": "adopted, images and weights stored channels_last (NHWC) in memory",
}


class DiffusersUNet(torch.nn.Module):
    """diffusers' UNet2DModel behind our (x, t, labels) interface, so the same loop, loss and sampler drive it.
    Ho et al.'s layout: two blocks per level, self-attention at the middle level."""

    def __init__(self, width: int, dropout: float = 0.0):
        super().__init__()
        from diffusers import UNet2DModel

        w = width
        self.unet = UNet2DModel(
            sample_size=32, in_channels=3, out_channels=3, block_out_channels=(w, 2 * w, 2 * w), layers_per_block=2,
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=32,
            num_class_embeds=len(cifar.CIFAR10_CLASSES) + 1, dropout=dropout)
        self.null_class = len(cifar.CIFAR10_CLASSES)
        self.config = SimpleNamespace(in_channels=3)

    def forward(self, x, t, labels=None):
        labels = torch.full_like(t, self.null_class) if labels is None else labels
        return self.unet(x, t, class_labels=labels).sample


def train_row(settings, model, data, seconds, recipe, device, seed, channels_last=False):
    seed_everything(seed)
    schedule = NoiseSchedule.from_settings(asdict(settings))
    trainer = Trainer(model, cifar.ddpm_loss_fn(schedule, settings.p_uncond, settings.min_snr_gamma), data.train_set(),
                      epochs=1, batch_size=recipe.batch_size, lr=recipe.lr, device=device, seed=seed, grad_clip=1.0,
                      lr_schedule=settings.lr_schedule, time_budget=seconds,
                      callbacks=[EMA(settings.ema_decay), WallClock()], channels_last=channels_last)
    trainer.fit()
    ddpm = cifar.ClassToImage(trainer.ema_model, schedule, trainer.history, extra={"image_size": data.image_size})
    return ddpm, trainer.step


def throughput(model: torch.nn.Module, batch: int, size: int, steps: int, device) -> float:
    """Training images per second: the step the Trainer takes (loss, backward, AdamW), after two warm-up steps."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    t, labels = torch.randint(0, 1000, (batch,), device=device), torch.randint(0, 10, (batch,), device=device)
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        loss = (model(x, t, labels) - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def training_flops(model: torch.nn.Module, size: int) -> float:
    """FLOPs of one training image: forward counted by torch's FlopCounterMode, backward taken as twice that."""
    from torch.utils.flop_counter import FlopCounterMode

    x, t, labels = torch.randn(1, 3, size, size), torch.tensor([500]), torch.tensor([3])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x, t, labels)
    return 3.0 * counter.get_total_flops()


def study(args, cfg, data, judge, colour, results):
    base = replace(cifar.SETTINGS["quick"], image_size=data.image_size)
    recipe = cfg.recipe(cifar.KIND)
    rows = args.rows.split(",") if args.rows else list(ROWS)
    runs: dict[str, list[dict]] = {name: [] for name in rows}
    adopted_model = None
    for round_ in range(args.repeats):
        order = rows if round_ % 2 == 0 else rows[::-1]  # alternate the order too
        for name in order:
            changes, kind = ROWS[name]
            settings = replace(base, **changes)
            seed_everything(cfg.seed)
            model = (cifar.build_unet(recipe.width, settings) if kind == "ours"
                     else DiffusersUNet(recipe.width, settings.dropout))
            ddpm, steps = train_row(settings, model, data, args.seconds, recipe, cfg.device, cfg.seed,
                                    channels_last=name == "channels-last")
            quality = cifar.evaluate_ddpm(ddpm, judge, data, per_class=args.per_class, guidance=3.0, steps=20,
                                          sampler="dpm++2m", baseline=colour)
            run = {"train_steps": steps, "images_seen": steps * recipe.batch_size, "params": ddpm.parameters,
                   "class_accuracy": quality["class_accuracy"], "fid_own": quality["fid_own"],
                   "colour_baseline": quality["baseline_accuracy"]}
            runs[name].append(run)
            print(f"round {round_ + 1} {name:16s} {steps:5d} steps  judged {run['class_accuracy']:6.1%}  "
                  f"colour classifier {run['colour_baseline']:6.1%}  FID {run['fid_own']:7.2f}", flush=True)
            if name == "adopted":
                adopted_model = ddpm
                from helpers.viz import save_image
                save_image(cifar.class_grid(ddpm.generate(torch.arange(10).repeat_interleave(8), seed=1), 8),
                           cfg.outputs_dir / "bench" / f"ddpm_adopted_{data.image_size}px_{int(args.seconds)}s.png")
    table = {}
    for name, values in runs.items():
        table[name] = {"description": DESCRIPTIONS[name], "runs": values,
                       **{key: statistics.median(v[key] for v in values)
                          for key in ("train_steps", "class_accuracy", "fid_own", "colour_baseline")}}
    results["recipe_study"] = {"seconds": args.seconds, "repeats": args.repeats, "per_class": args.per_class,
                               "sampler": "dpm++2m-20, guidance 3", "rows": table}
    print(f"\n| recipe ({args.seconds:.0f} s each, median of {args.repeats}) | steps | judged class accuracy | FID (judge) |")
    for name, row in table.items():
        print(f"| {row['description']} | {row['train_steps']:.0f} | {row['class_accuracy']:.1%} | {row['fid_own']:.2f} |")
    return adopted_model


def samplers(ddpm, judge, data, per_class, results):
    table = {}
    for sampler, steps in (("dpm++2m", 10), ("dpm++2m", 20), ("dpm++2m", 50), ("ddim", 50), ("ddpm", 1000)):
        quality = cifar.evaluate_ddpm(ddpm, judge, data, per_class=per_class, guidance=3.0, steps=steps,
                                      sampler=sampler, seed=2)
        table[f"{sampler}-{steps}"] = {k: quality[k] for k in ("ms_per_image", "class_accuracy", "fid_own", "n")}
        print(f"{sampler}-{steps:<4d}: {quality['ms_per_image']:7.1f} ms/image  judged {quality['class_accuracy']:6.1%}"
              f"  FID {quality['fid_own']:.2f}", flush=True)
    slow = table["ddpm-1000"]["ms_per_image"]
    for row in table.values():
        row["speedup_vs_ddpm1000"] = round(slow / row["ms_per_image"], 1)
    results["samplers"] = table


def unet_costs(args, cfg, results):
    size, rounds = args.image_size, 3
    quick, full = cifar.SETTINGS["quick"], cifar.SETTINGS["full"]
    variants = {
        "quick (w32, blocks 1-2-2, attn 4x4)": (32, quick, 32),
        "w24": (24, quick, 32),
        "w48": (48, quick, 32),
        "blocks 2-2-2": (32, replace(quick, blocks=(2, 2, 2)), 32),
        "attention at 8x8 too": (32, replace(quick, attention_levels=(1, 2)), 32),
        "batch 16": (32, quick, 16),
        "batch 64": (32, quick, 64),
    }
    speeds = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (width, settings, batch) in variants.items():
            torch.manual_seed(0)
            speeds[name].append(throughput(cifar.build_unet(width, settings), batch, size, 4, cfg.device))
    table = {name: {"images_per_s": round(statistics.median(v), 1),
                    "params": count_parameters(cifar.build_unet(variants[name][0], variants[name][1]))}
             for name, v in speeds.items()}
    for name, row in table.items():
        print(f"{name:36s} {row['params'] / 1e6:5.2f}M params  {row['images_per_s']:7.1f} img/s (median of {rounds})")
    full_width = get_config(quick=False).recipe(cifar.KIND).width
    flops = {f"full w{w} 32px": training_flops(cifar.build_unet(w, full), 32) for w in (full_width, 2 * full_width)}
    flops[f"quick w32 {size}px"] = training_flops(cifar.build_unet(32, quick), size)
    for name, value in flops.items():
        print(f"training FLOPs per image, {name}: {value / 1e9:.2f} GFLOP")
    results["throughput"] = {"image_size": size, "rows": table}
    results["training_gflops_per_image"] = {k: round(v / 1e9, 3) for k, v in flops.items()}


def plot_curve(curve: dict, title: str, out) -> None:
    """Judged accuracy and FID against training images seen (and FLOPs) of one budgeted run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curve["points"]
    x = [p["images_seen"] for p in points]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, [100 * p["class_accuracy"] for p in points], "o-", label="judged class accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_xlim(0, max(x) * 1.05)
    ax.set_xlabel(f"training images seen (x {curve['training_gflops_per_image']:.2f} GFLOP each)")
    ax.set_ylabel("judged class accuracy (%)")
    twin = ax.twinx()
    twin.plot(x, [p["fid_own"] for p in points], "s--", color="tab:red", label="FID (judge features)")
    twin.set_ylim(0, max(p["fid_own"] for p in points) * 1.2)
    twin.set_ylabel("FID (judge features), lower is better")
    ax.set_title(f"{title}: one {curve['seconds']:.0f}-s CPU run, judged after every epoch", fontsize=9)
    fig.legend(loc="lower center", bbox_to_anchor=(0.5, 0.2), fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def quality_curve(args, cfg, data, judge, results):
    """The adopted recipe trained for `--curve` seconds, judged after every epoch: quality against images seen
    and training FLOPs (the figure figures/ddpm_quality_vs_compute.png)."""
    from helpers.train import Evaluate

    settings = replace(cifar.SETTINGS["quick"], image_size=data.image_size)
    recipe = cfg.recipe(cifar.KIND)
    flops = training_flops(cifar.build_unet(recipe.width, settings), data.image_size)
    points = []

    def judge_now(model):
        ddpm = cifar.ClassToImage(model, NoiseSchedule.from_settings(asdict(settings)),
                                  extra={"image_size": data.image_size})
        quality = cifar.evaluate_ddpm(ddpm, judge, data, per_class=10, guidance=3.0, steps=20, sampler="dpm++2m")
        points.append({"class_accuracy": quality["class_accuracy"], "fid_own": quality["fid_own"]})
        return {}

    class JudgeEMA(Evaluate):  # judge the EMA weights, the ones that sample
        def after_epoch(self, trainer):
            judge_now(trainer.ema_model)
            points[-1].update(step=trainer.step, images_seen=trainer.step * recipe.batch_size,
                              train_seconds=trainer.history[-1]["train_seconds"])
            points[-1]["training_pflops"] = points[-1]["images_seen"] * flops / 1e15
            print(f"epoch {trainer.epoch + 1}: {points[-1]}", flush=True)

    seed_everything(cfg.seed)
    schedule = NoiseSchedule.from_settings(asdict(settings))
    trainer = Trainer(cifar.build_unet(recipe.width, settings),
                      cifar.ddpm_loss_fn(schedule, settings.p_uncond, settings.min_snr_gamma), data.train_set(),
                      epochs=1, batch_size=recipe.batch_size, lr=recipe.lr, device=cfg.device, seed=cfg.seed,
                      grad_clip=1.0, lr_schedule=settings.lr_schedule, time_budget=args.curve,
                      callbacks=[EMA(settings.ema_decay), WallClock(), JudgeEMA(lambda m: {})])
    trainer.fit()
    results["quality_curve"] = {"seconds": args.curve, "training_gflops_per_image": flops / 1e9, "points": points}
    label = "procedural icons" if data.source.startswith("synthetic") else "CIFAR-10"
    out = cfg.figures_for(data.source) / f"ddpm_quality_vs_compute_{data.image_size}px.png"
    plot_curve(results["quality_curve"], f"DDPM, {data.image_size}x{data.image_size} {label}", out)
    print(f"figure -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="training wall-clock of every recipe row")
    parser.add_argument("--repeats", type=int, default=1, help="alternating rounds of the recipe study")
    parser.add_argument("--rows", default="", help=f"comma-separated rows (default all: {','.join(ROWS)})")
    parser.add_argument("--per-class", type=int, default=20, help="judged samples per class and row")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--real", action="store_true", help="the local CIFAR-10 in COURSE_DATA, all images")
    parser.add_argument("--skip", default="", help="parts to skip: study,samplers,costs")
    parser.add_argument("--judge-dir", help="a trained cifar-judge run for this data and size (trained if missing)")
    parser.add_argument("--curve", type=float, default=0, help="also train the adopted recipe this many seconds, "
                                                                "judged every epoch (quality vs compute figure)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    cfg = get_config(quick=True)
    skip = set(filter(None, args.skip.split(",")))
    results: dict = {"image_size": args.image_size}
    from helpers.cifar_judge import load_or_train_cifar_judge

    data = cifar.cifar_data(cfg, args.image_size, None if args.real else -1)
    judge_dir = args.judge_dir or cfg.run_dir("cifar-judge") / f"bench-{args.image_size}px"
    # Real photos are judged by the full-recipe judge only: a judge that misreads a third of real photos cannot
    # tell samples apart either. It is trained once and reused (see the command in the docstring).
    judge_cfg = get_config(quick=False) if args.real else cfg
    judge, judge_accuracy = load_or_train_cifar_judge(judge_cfg, data, judge_dir)
    if args.real and judge_accuracy < STRONG_JUDGE:
        print(f"the judge in {judge_dir} reads only {judge_accuracy:.1%} of held-out real photos (needs "
              f"{STRONG_JUDGE:.0%}); train the full-recipe judge first (about 40 min on 2 CPU cores): "
              f"COURSE_QUICK=0 python -m helpers train cifar-judge --epochs 20 --out {judge_dir}",
              file=sys.stderr)
        raise SystemExit(2)
    colour = cifar.colour_baseline(data)  # the trivial baseline beside every judged number: 4x4 mean colours
    results.update(data=data.source, train_images=len(data.train_labels), judge_heldout_accuracy=judge_accuracy,
                   colour_baseline_heldout=colour.accuracy(data.test_images, data.test_labels),
                   quick_settings=asdict(cifar.SETTINGS["quick"]))
    print(f"data {data}; judge held-out accuracy {judge_accuracy:.1%}", flush=True)
    ddpm = None
    if "study" not in skip:
        ddpm = study(args, cfg, data, judge, colour, results)
    if "samplers" not in skip and ddpm is not None:
        samplers(ddpm, judge, data, max(2, args.per_class // 2), results)
    if "costs" not in skip:
        unet_costs(args, cfg, results)
    if args.curve:
        quality_curve(args, cfg, data, judge, results)
    write_results(f"ddpm{args.tag}", results)


if __name__ == "__main__":
    main()
