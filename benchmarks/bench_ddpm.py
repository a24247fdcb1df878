"""Notebook 06's benchmark: our UNet vs diffusers' UNet2DModel, and DDIM-50 vs DDPM-1000.

1. Training throughput (forward + backward + AdamW step, images/s) of our UNet and of a diffusers UNet2DModel of
   the same parameter count (within 10%), same batch, same machine, alternating rounds. The diffusers model has
   Ho et al.'s CIFAR layout (self-attention at 16x16 and in the middle); ours attends only at 8x8 and in the middle.
2. Same wall-clock: both trained for `--seconds` on the same images with the same loss, loop, EMA and seed,
   then judged the same way: class accuracy of their samples (a CIFAR-10 classifier trained on real images)
   and FID on that classifier's features against held-out real images.
3. Sampling with our trained model: DDIM-50 vs DDPM-1000, seconds per image and judged quality.

    COURSE_DATA=../shared/data python -m benchmarks.bench_ddpm --seconds 600 --judge-dir runs/cifar-judge-full-cpu
    python -m benchmarks.bench_ddpm --throughput-only
"""
from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch

from benchmarks._common import write_results
from helpers import cifar
from helpers.config import get_config, seed_everything
from helpers.diffusion import NoiseSchedule
from helpers.models.unet import count_parameters
from helpers.train import EMA, Trainer, TimeBudget, WallClock
from helpers.viz import save_image

SETTINGS = cifar.SETTINGS["quick"]  # ~2M parameters: what a CPU can train in minutes


class DiffusersUNet(torch.nn.Module):
    """diffusers' UNet2DModel behind our (x, t, labels) interface, so the same loop, loss and sampler drive it."""

    def __init__(self, width: int):
        super().__init__()
        from diffusers import UNet2DModel

        w = width
        self.unet = UNet2DModel(
            sample_size=32, in_channels=3, out_channels=3, block_out_channels=(w, 2 * w, 2 * w), layers_per_block=2,
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),  # attention at 16x16 (level 1)
            up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=32,
            num_class_embeds=len(cifar.CIFAR10_CLASSES) + 1, dropout=SETTINGS.dropout)
        self.null_class = len(cifar.CIFAR10_CLASSES)
        self.config = SimpleNamespace(in_channels=3)

    def forward(self, x, t, labels=None):
        labels = torch.full_like(t, self.null_class) if labels is None else labels
        return self.unet(x, t, class_labels=labels).sample


def throughput(model: torch.nn.Module, batch: int, steps: int, device) -> float:
    """Training images per second: the same step the Trainer takes (loss, backward, AdamW)."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, 32, 32, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            start = time.perf_counter()
        loss = (model(x, t, labels) - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def train_for(model, data, seconds: float, batch: int, lr: float, device, seed: int):
    seed_everything(seed)
    schedule = NoiseSchedule(SETTINGS.diffusion_steps, SETTINGS.schedule)
    trainer = Trainer(model, cifar.ddpm_loss_fn(schedule, SETTINGS.p_uncond), data.train_set(), epochs=10_000,
                      batch_size=batch, lr=lr, device=device, seed=seed, grad_clip=1.0,
                      callbacks=[EMA(0.999), WallClock(), TimeBudget(seconds)])
    trainer.fit()
    ddpm = cifar.ClassToImage(trainer.ema_model, schedule, trainer.history, extra={"image_size": 32})
    return ddpm, trainer.step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternating throughput rounds per model")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per round")
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument("--seconds", type=float, default=600, help="training wall-clock of each model")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--per-class", type=int, default=50, help="DDIM samples per class judged per model")
    parser.add_argument("--ddpm-per-class", type=int, default=5, help="DDPM-1000 samples per class (slow on CPU)")
    parser.add_argument("--judge-dir", help="a trained cifar-judge run (default: runs/cifar-judge, trained if missing)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    cfg = get_config()
    results: dict = {"batch": args.batch, "width": args.width}

    torch.manual_seed(0)
    ours, theirs = cifar.build_unet(args.width, SETTINGS), DiffusersUNet(args.width)
    results["params"] = {"ours": count_parameters(ours), "diffusers": count_parameters(theirs)}
    ratio = results["params"]["ours"] / results["params"]["diffusers"]
    print(f"parameters: ours {results['params']['ours']:,}  diffusers UNet2DModel {results['params']['diffusers']:,} "
          f"(ratio {ratio:.3f})")
    assert 0.9 <= ratio <= 1.1, "the two models must have the same size within 10%"
    speeds = {"ours": [], "diffusers": []}
    for _ in range(args.rounds):  # alternate, so a noisy neighbour slows both alike
        speeds["ours"].append(throughput(ours, args.batch, args.steps, cfg.device))
        speeds["diffusers"].append(throughput(theirs, args.batch, args.steps, cfg.device))
    best = {k: max(v) for k, v in speeds.items()}
    results["train_images_per_s"] = {k: round(v, 1) for k, v in best.items()}
    results["speedup"] = round(best["ours"] / best["diffusers"], 2)
    print(f"training throughput (best of {args.rounds}, batch {args.batch}, {cfg.device}): ours {best['ours']:.1f} "
          f"img/s, diffusers {best['diffusers']:.1f} img/s -> ours {results['speedup']:.2f}x")
    if args.throughput_only:
        write_results(f"ddpm_throughput{args.tag}", results)
        return

    from helpers.cifar_judge import load_or_train_cifar_judge

    data = cifar.cifar_data(cfg, limit_per_class=None)
    judge, judge_accuracy = load_or_train_cifar_judge(cfg, data, args.judge_dir)
    results.update(data=data.source, train_images=len(data.train_labels), judge_heldout_accuracy=judge_accuracy)
    real = cifar.real_reference(judge, data)
    results["real"] = {k: v for k, v in real.items() if k != "per_class"}
    print(f"data {data}; judge held-out accuracy {judge_accuracy:.2%}; real images FID (judge features) "
          f"{real['fid_own']:.2f}")
    figures = cfg.figures_for(data.source)
    trained = {}
    for name, model in (("ours", cifar.build_unet(args.width, SETTINGS)), ("diffusers", DiffusersUNet(args.width))):
        ddpm, steps = train_for(model, data, args.seconds, args.batch, args.lr, cfg.device, cfg.seed)
        quality = cifar.evaluate_ddpm(ddpm, judge, data, per_class=args.per_class, guidance=3.0, steps=50)
        quality.pop("per_class")
        results[f"same_time_{name}"] = {"train_steps": steps, "images_seen": steps * args.batch, **quality}
        trained[name] = ddpm
        print(f"{name:9s}: {args.seconds:.0f} s -> {steps} steps ({steps * args.batch} images); DDIM-50, w=3: "
              f"judged class accuracy {quality['class_accuracy']:.2%}, FID (judge features) {quality['fid_own']:.2f}")
        labels = torch.arange(10).repeat_interleave(8)
        save_image(cifar.class_grid(ddpm.generate(labels, guidance=3.0, steps=50, seed=1), 8),
                   figures / f"cifar_ddpm_{name}_{int(args.seconds)}s.png")

    ddpm, sampling = trained["ours"], {}
    for sampler, steps in (("ddim", 50), ("ddpm", 1000)):
        quality = cifar.evaluate_ddpm(ddpm, judge, data, per_class=args.ddpm_per_class, guidance=3.0,
                                      steps=steps, sampler=sampler, seed=2)
        quality.pop("per_class")
        sampling[f"{sampler}-{steps}"] = quality
        print(f"{sampler}-{steps}: {quality['ms_per_image']:.0f} ms/image, judged class accuracy "
              f"{quality['class_accuracy']:.2%}, FID (judge features) {quality['fid_own']:.2f} "
              f"({quality['n']} images; FID on so few images is biased upwards)")
    sampling["time_ratio_ddpm1000_over_ddim50"] = round(
        sampling["ddpm-1000"]["ms_per_image"] / sampling["ddim-50"]["ms_per_image"], 1)
    results["sampling"] = sampling
    print(f"DDPM-1000 takes {sampling['time_ratio_ddpm1000_over_ddim50']}x as long as DDIM-50")
    sweep = {}
    for scale in (0.0, 1.0, 3.0, 5.0):
        quality = cifar.evaluate_ddpm(ddpm, judge, data, per_class=max(1, args.per_class // 2), guidance=scale,
                                      steps=50, seed=3)
        sweep[str(scale)] = {"class_accuracy": quality["class_accuracy"], "fid_own": quality["fid_own"]}
        print(f"guidance {scale:g}: judged class accuracy {quality['class_accuracy']:.2%}, FID {quality['fid_own']:.2f}")
    results["guidance_sweep"] = sweep
    write_results(f"ddpm{args.tag}", results)


if __name__ == "__main__":
    main()
