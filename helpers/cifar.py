"""Notebook 05's track: a class-conditional DDPM on CIFAR-10, from a prompt to an image.

    prompt --ClassReader (MiniLM similarity to class names)--> class --sample(DPM-Solver++/DDIM/DDPM, guidance)--> image

- Training: the DDPM loss with v-prediction and min-SNR weighting on the cosine schedule
  (helpers/diffusion.training_loss; benchmarks/bench_ddpm.py measured the recipe) through the one Trainer, to a
  time budget with a warm-up + cosine learning rate, random horizontal flips, labels replaced by the "no class"
  token with probability `p_uncond` (so one network learns p(x | class) and p(x): what classifier-free guidance
  needs), an EMA of the weights that samples.
- Checkpoints hold the raw weights, the optimizer, the step, the RNG and the EMA, so an interrupted run
  resumed continues exactly as if never stopped (tests/test_cifar.py checks it weight for weight).
- Judging: a CIFAR-10 classifier trained on the real training images (helpers/cifar_judge) reads the
  class of generated samples; FID/KID use that classifier's features (our own, offline) against held-out
  real images, and Inception features when torchvision can download them.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import torch

from helpers.checkpoint import has_checkpoint, read_checkpoint, read_index
from helpers.config import CourseConfig, Recipe, seed_everything
from helpers.data.cifar10 import CIFAR10_CLASSES, ImageSplits, load_cifar10
from helpers.diffusion import FlowSchedule, NoiseSchedule, guided, sample, schedule_from_settings, training_loss
from helpers.errors import CourseError
from helpers.metrics import PooledPixelBaseline, format_accuracy, judge_line
from helpers.text.prompts import check_prompt
from helpers.models.dit import DiT, DiTConfig
from helpers.models.unet import UNet, UNetConfig
from helpers.registry import ModelKind, Samples, sampling_tag
from helpers.train import EMA, Checkpointing, GifFrames, ProgressBar, Trainer, TrainedModel, WallClock
from helpers.viz import labelled_grid

KIND = "cifar-ddpm"
GIF_SEEDS = 4  # samples per class in the training GIF
GIF_STEPS = 10  # sampling steps of a GIF frame (40 images, doubled for guidance): half what the evaluation's 20 cost


@dataclass(frozen=True)
class DDPMSettings:
    """What the DDPM of notebook 05 needs beyond a Recipe (epochs, batch size, lr and width live there)."""

    limit_per_class: int | None  # training images per class (None = all 5,000)
    mults: tuple[int, ...]
    blocks: int | tuple[int, ...]  # residual blocks per level (one at full resolution: it costs the most there)
    attention_levels: tuple[int, ...]
    dropout: float
    ema_decay: float
    p_uncond: float = 0.1  # share of labels dropped to "no class" in training (classifier-free guidance)
    schedule: str = "cosine"
    diffusion_steps: int = 1000
    prediction: str = "v"  # what the UNet outputs: "epsilon" (Ho et al.), "v" (Salimans & Ho) or "edm" (Karras et al.)
    min_snr_gamma: float | None = 5.0  # min-SNR-gamma loss weighting (Hang et al.); None = uniform
    shift: float = 1.0  # the schedule's SNR divided by shift^2 (< 1 for images smaller than 32x32)
    noise_levels: str = "uniform"  # training steps drawn uniformly, or "lognormal" in sigma (EDM)
    lr_schedule: str = "cosine"  # warm-up then cosine decay (the Trainer's), or "constant"
    image_size: int = 32
    sampler: str = "dpm++2m"  # the sampler of the figures and the evaluation
    sample_steps: int = 20
    backbone: str = "unet"  # the network: "unet" (helpers.models.unet) or "dit" (helpers.models.dit)
    dit_patch: int = 2  # the DiT's tokens: patch x patch pixels each
    dit_width: int = 96  # the DiT's channels per token (the UNet's width is the recipe's)
    dit_depth: int = 6
    dit_heads: int = 4


# quick: a 0.9M-parameter UNet (width 24) on the 10,000 procedural icons (or the first 1,000 real images per class)
# at 16x16, trained for 120 s (about 750 steps on a quiet 2-core CPU). At equal wall-clock, width 24 takes ~1.4x the
# steps of width 32 and was judged higher in all four alternating runs (90 s and 120 s; README, "Quick mode on
# today's icons"): the colour-blind icons' classes are judged well above a colour-only classifier, not yet all
# drawn. full: ~9M parameters at CIFAR's 32x32 for 15 minutes (about 20 epochs on a T4-class GPU with mixed
# precision, by FLOPs; a larger --time-budget trains longer, nothing else changes).
SETTINGS = {
    "quick": DDPMSettings(limit_per_class=1000, mults=(1, 2, 2), blocks=(1, 2, 2), attention_levels=(2,), dropout=0.0,
                          ema_decay=0.995, image_size=16),
    "full": DDPMSettings(limit_per_class=None, mults=(1, 2, 2, 2), blocks=(1, 2, 2, 2), attention_levels=(2,),
                         dropout=0.1, ema_decay=0.9995),
}

# ------------------------------------------------------------------------------------------ text -> class
SYNONYMS = {
    "airplane": ["airplane", "aeroplane", "plane", "jet", "airliner"],
    "automobile": ["automobile", "car", "sedan", "sports car"],
    "bird": ["bird", "sparrow", "ostrich", "eagle"],
    "cat": ["cat", "kitten", "kitty"],
    "deer": ["deer", "elk", "moose", "stag"],
    "dog": ["dog", "puppy", "hound"],
    "frog": ["frog", "toad"],
    "horse": ["horse", "pony", "foal"],
    "ship": ["ship", "boat", "cargo ship", "ferry"],
    "truck": ["truck", "lorry", "fire truck", "dump truck"],
}
TEMPLATES = ("a photo of a {}", "{}", "a picture of a {}")


class ClassReader:
    """Prompt -> CIFAR-10 class through the frozen MiniLM sentence encoder (notebook 02's).

    Every class is described by a few phrases ("a photo of a puppy" ...); a prompt takes the class of the
    phrase it is most similar to (cosine). Below `threshold` the prompt names no class (a bicycle, a
    lion, soup); two classes within `margin` of each other and both above it is a prompt naming several.
    The thresholds were set on the prompts in tests/test_cifar.py (named classes score 0.65-1.0, others < 0.53).
    """

    def __init__(self, encoder=None, threshold: float = 0.55, margin: float = 0.1, cache_dir: Path | None = None):
        from helpers.text.encoders import cached_embeddings, load_text_encoder

        self.encoder = encoder or load_text_encoder("minilm")
        self.threshold, self.margin = threshold, margin
        phrases = [(i, t.format(name)) for i, c in enumerate(CIFAR10_CLASSES) for name in SYNONYMS[c] for t in TEMPLATES]
        self.owner = torch.tensor([i for i, _ in phrases])
        texts = [p for _, p in phrases]
        self.phrases = (cached_embeddings(self.encoder, texts, cache_dir) if cache_dir else self.encoder.encode(texts))

    def scores(self, prompt: str) -> torch.Tensor:
        """Best similarity of the prompt to each class's phrases: (10,)."""
        similarity = self.encoder.encode([prompt])[0] @ self.phrases.T
        return torch.stack([similarity[self.owner == i].max() for i in range(len(CIFAR10_CLASSES))])

    def __call__(self, prompt: str) -> int:
        text = check_prompt(prompt, f'name one CIFAR-10 class, e.g. "a photo of a cat" ({", ".join(CIFAR10_CLASSES)})')
        if text.lower() in CIFAR10_CLASSES:
            return CIFAR10_CLASSES.index(text.lower())
        best, index = self.scores(text).topk(2)
        if best[0] < self.threshold:
            raise CourseError(f"\"{text}\" names no CIFAR-10 class (closest: {CIFAR10_CLASSES[index[0]]}, "
                              f"similarity {best[0]:.2f}); try one of: {', '.join(CIFAR10_CLASSES)}")
        if best[1] >= self.threshold and best[0] - best[1] < self.margin:
            raise CourseError(f"\"{text}\" names several classes ({CIFAR10_CLASSES[index[0]]}, "
                              f"{CIFAR10_CLASSES[index[1]]}); this model draws one class per prompt")
        return int(index[0])


# ------------------------------------------------------------------------------------------ generator
class ClassToImage(TrainedModel):
    """A trained class-conditional DDPM: class labels (or a prompt) -> images in [-1, 1]."""

    def __init__(self, model: UNet | DiT, schedule: NoiseSchedule | FlowSchedule, history: list[dict] | None = None,
                 reader: ClassReader | None = None, extra: dict | None = None):
        self.model, self.schedule = model.eval(), schedule
        self.history, self.reader, self.extra = history or [], reader, extra or {}

    @property
    def image_size(self) -> int:
        return int(self.extra.get("image_size", 32))

    @property
    def default_sampler(self) -> str:
        """The sampler of this model's figures: Euler for a flow-matching model, DPM-Solver++(2M) otherwise."""
        return "euler" if isinstance(self.schedule, FlowSchedule) else "dpm++2m"

    def eps_fn(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.model(x, t, labels)

    @torch.no_grad()
    def generate(self, labels: Sequence[int] | torch.Tensor, *, guidance: float = 3.0, steps: int = 20,
                 sampler: str | None = None, seed: int = 0, batch_size: int = 250, progress: bool = False,
                 keep=None, spacing: str = "trailing") -> torch.Tensor:
        """One image per label, (N, 3, S, S) in [-1, 1] on the CPU. The same seed gives the same images.

        `sampler` None: the model's own (`default_sampler`); a flow model takes "euler" or "heun", a diffusion
        model "dpm++2m", "ddim" or "ddpm".

        guidance 0 = unconditional, 1 = plain conditional, > 1 = classifier-free guidance towards the class.
        """
        labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        if len(labels) == 0:
            raise CourseError("no labels to draw: pass at least one class index 0-9")
        if labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES):
            raise CourseError(f"class indices must be 0-9 ({', '.join(CIFAR10_CLASSES)}), got {labels.tolist()}")
        if guidance < 0:
            raise CourseError(f"guidance must be >= 0 (0 = unconditional, 1 = no guidance), got {guidance}")
        self.model.eval()
        generator, out = torch.Generator().manual_seed(seed), []
        for start in range(0, len(labels), batch_size):
            chunk = labels[start:start + batch_size].to(self.device)
            null = torch.full_like(chunk, self.model.null_class)
            eps = (guided(self.eps_fn, chunk, null, guidance) if guidance > 0
                   else lambda x, t, null=null: self.eps_fn(x, t, null))  # w = 0: the unconditional model alone
            shape = (len(chunk), self.model.config.in_channels, self.image_size, self.image_size)
            out.append(sample(eps, shape, self.schedule, sampler=sampler or self.default_sampler, steps=steps,
                              generator=generator, device=self.device, progress=progress, keep=keep,
                              spacing=spacing).cpu())
        return torch.cat(out).clamp(-1, 1)

    def read(self, prompt: str) -> int:
        if self.reader is None:
            self.reader = ClassReader()
        return self.reader(prompt)

    def __call__(self, prompt: str, n: int = 8, **kwargs) -> tuple[torch.Tensor, int]:
        """(n, 3, S, S) images in [-1, 1] of the class the prompt names, and that class index."""
        if not 1 <= n <= 1024:
            raise CourseError(f"n must be between 1 and 1024, got {n}")
        label = self.read(prompt)
        return self.generate([label] * n, **kwargs), label

    @classmethod
    def from_checkpoint(cls, run_dir: str | Path, device: torch.device | str = "cpu", use_ema: bool = True,
                        reader: ClassReader | None = None) -> "ClassToImage":
        run_dir = Path(run_dir)
        hint = f"python -m helpers train {KIND} --out {run_dir}"
        checkpoint = read_checkpoint(run_dir, KIND, train_hint=hint)
        extra = checkpoint.index["extra"]
        settings = extra.get("settings", {})
        backbone = settings.get("backbone", "unet")
        if backbone not in BACKBONES:
            raise CourseError(f"{run_dir} holds a {backbone!r} network, which this version cannot build; retrain "
                              f"with `{hint}`")
        model = checkpoint.rebuild(BACKBONES[backbone], ema=use_ema, train_hint=hint)
        schedule = schedule_from_settings(settings)
        return cls(model.to(device).eval(), schedule, extra.get("history", []), reader, extra)


# ------------------------------------------------------------------------------------------ training
def cifar_data(cfg: CourseConfig, image_size: int | None = None, limit_per_class: int | None = -1) -> ImageSplits:
    """The mode's CIFAR-10 at the mode's image size (limit_per_class=-1: the mode's setting; None: all images)."""
    limit = SETTINGS[cfg.mode].limit_per_class if limit_per_class == -1 else limit_per_class
    return load_cifar10(cfg, image_size=image_size or SETTINGS[cfg.mode].image_size, limit_per_class=limit)


def ddpm_loss_fn(schedule: NoiseSchedule, p_uncond: float, min_snr_gamma: float | None = None):
    def loss_fn(trainer: Trainer, batch) -> dict[str, torch.Tensor]:
        images, labels = batch
        flip = torch.rand(len(images), device=images.device) < 0.5  # CIFAR objects face either way
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
        drop = torch.rand(len(labels), device=labels.device) < p_uncond
        labels = torch.where(drop, torch.full_like(labels, trainer.model.null_class), labels)
        return {"loss": training_loss(schedule, lambda x, t: trainer.model(x, t, labels), images,
                                      min_snr_gamma=min_snr_gamma)}

    return loss_fn


def _gif_render(schedule: NoiseSchedule, image_size: int, steps: int, sampler: str, guidance: float = 3.0):
    labels = torch.arange(len(CIFAR10_CLASSES)).repeat_interleave(GIF_SEEDS)

    def render(model: UNet) -> torch.Tensor:
        images = ClassToImage(model, schedule, extra={"image_size": image_size}).generate(
            labels, guidance=guidance, steps=steps, sampler=sampler, seed=1234)
        return labelled_grid((images + 1) / 2, list(CIFAR10_CLASSES), ncol=GIF_SEEDS, scale=2, label_width=80)

    return render


def build_unet(recipe_width: int, settings: DDPMSettings) -> UNet | DiT:
    """The network the settings name: the UNet at the recipe's width, or (backbone "dit") the diffusion transformer."""
    if settings.backbone == "dit":
        return DiT(DiTConfig(patch=settings.dit_patch, width=settings.dit_width, depth=settings.dit_depth,
                             heads=settings.dit_heads, num_classes=len(CIFAR10_CLASSES)))
    return UNet(UNetConfig(width=recipe_width, mults=settings.mults, blocks=settings.blocks,
                           attention_levels=settings.attention_levels, num_classes=len(CIFAR10_CLASSES),
                           dropout=settings.dropout))


OBJECTIVES = ("v", "epsilon", "edm", "flow")
BACKBONES = {"unet": UNet, "dit": DiT}


def with_objective(settings: DDPMSettings, objective: str | None = None, backbone: str | None = None) -> DDPMSettings:
    """The settings changed to train another objective or backbone, with what each objective needs beside it:
    "flow" (rectified flow: logit-normal times, no min-SNR weighting, the Euler sampler), "edm" (log-normal noise
    levels, its own weighting), "epsilon" or "v" (min-SNR-5, uniform steps, DPM-Solver++)."""
    if objective is not None:
        if objective not in OBJECTIVES:
            raise CourseError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if objective == "flow":
            settings = replace(settings, prediction="flow", noise_levels="logit-normal", min_snr_gamma=None,
                               sampler="euler", shift=1.0)
        elif objective == "edm":
            settings = replace(settings, prediction="edm", noise_levels="lognormal", min_snr_gamma=None,
                               sampler="dpm++2m")
        else:
            settings = replace(settings, prediction=objective, noise_levels="uniform", min_snr_gamma=5.0,
                               sampler="dpm++2m")
    if backbone is not None:
        if backbone not in BACKBONES:
            raise CourseError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
        settings = replace(settings, backbone=backbone)
    return settings


def train_cifar_ddpm(cfg: CourseConfig, out: str | Path | None = None, *, epochs: int | None = None,
                     image_size: int | None = None, resume: bool = False, progress: bool = True,
                     gif_path: str | Path | None = None, data: ImageSplits | None = None,
                     settings: DDPMSettings | None = None, gif_every: int | None = None,
                     time_budget: float | str | None = None, callbacks: Sequence = (),
                     **recipe_overrides) -> ClassToImage:
    """Train the class-conditional DDPM of notebook 05 into `out` (default runs/cifar-ddpm); returns its EMA model.

    `recipe_overrides` (batch_size, lr, width) and `settings` change the mode's defaults. `time_budget` (seconds
    or "20m"; default: the mode's) trains for that long, with the learning-rate schedule planned to end on time;
    `epochs` given without a budget trains that many epochs instead.
    """
    recipe = cfg.recipe(KIND, epochs=epochs, gif_every=gif_every, time_budget=time_budget, **recipe_overrides)
    settings = settings or SETTINGS[cfg.mode]
    out = Path(out or cfg.run_dir(KIND))
    data = data or cifar_data(cfg, image_size or settings.image_size, settings.limit_per_class)
    image_size = int(data.train_images.shape[-1])
    schedule = schedule_from_settings(asdict(settings))
    if resume and has_checkpoint(out):
        recorded = read_index(out, KIND)["extra"]
        if recorded.get("data") != data.source or recorded.get("image_size") != image_size:
            raise CourseError(f"{out} was trained on {recorded.get('data')} at {recorded.get('image_size')} px; "
                              f"resume with the same data and --image-size, or train anew without --resume")
        was = recorded.get("settings", {})
        was = (was.get("prediction", "epsilon"), was.get("backbone", "unet"))
        if was != (settings.prediction, settings.backbone):
            raise CourseError(f"{out} trained a {was[1]} with objective {was[0]}; resume it with --objective {was[0]} "
                              f"--backbone {was[1]}, or train anew without --resume")
    seed_everything(cfg.seed)
    model = build_unet(recipe.width, settings)
    extra = {"mode": cfg.mode, "recipe": asdict(recipe), "settings": asdict(settings), "data": data.source,
             "image_size": image_size, "schedule": settings.schedule, "diffusion_steps": settings.diffusion_steps,
             "classes": list(CIFAR10_CLASSES)}
    gif_path = Path(gif_path) if gif_path else out / "training.gif"
    callbacks = [EMA(settings.ema_decay), WallClock(),
                 GifFrames(_gif_render(schedule, image_size, min(GIF_STEPS, settings.sample_steps), settings.sampler), out / "frames",
                           gif_path, every=recipe.gif_every),
                 Checkpointing(out, KIND, resume=resume, extra=extra), *callbacks]
    if progress:
        callbacks.append(ProgressBar())
    trainer = Trainer(model, ddpm_loss_fn(schedule, settings.p_uncond, settings.min_snr_gamma), data.train_set(),
                      epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, device=cfg.device,
                      callbacks=callbacks, seed=cfg.seed, grad_clip=1.0, lr_schedule=settings.lr_schedule,
                      time_budget=recipe.time_budget)
    trainer.fit()
    return ClassToImage(trainer.ema_model, schedule, trainer.history, extra=extra)


# ------------------------------------------------------------------------------------------ pictures
def class_grid(images: torch.Tensor, per_class: int, classes: Sequence[str] = CIFAR10_CLASSES, scale: int = 2):
    """Class-major images in [-1, 1] (10 * per_class) -> one labelled grid, a row per class."""
    return labelled_grid((images + 1) / 2, list(classes), ncol=per_class, scale=scale, label_width=80)


def guidance_grid(ddpm: ClassToImage, scales: Sequence[float], per_class: int = 1, steps: int = 20,
                  seed: int = 0) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
    """A row per guidance scale, a column per class (same seeds everywhere): how guidance trades variety for class."""
    labels = torch.arange(len(CIFAR10_CLASSES)).repeat(per_class)
    rows = {scale: ddpm.generate(labels, guidance=scale, steps=steps, seed=seed) for scale in scales}
    images = torch.cat([rows[s] for s in scales])
    return labelled_grid((images + 1) / 2, [f"w = {s:g}" for s in scales], ncol=len(labels), scale=2,
                         label_width=50), rows


# ------------------------------------------------------------------------------------------ measuring
def colour_baseline(data: ImageSplits) -> PooledPixelBaseline:
    """The trivial baseline printed beside the judge: a classifier on the 4x4 mean colours of an image, fitted on
    the training images (a few seconds). It scores images in [0, 1] or uint8 (`sample_quality` converts)."""
    return PooledPixelBaseline(data.train_images, data.train_labels)


def sample_quality(images: torch.Tensor, labels: torch.Tensor, judge, real: torch.Tensor,
                   baseline: PooledPixelBaseline | None = None) -> dict[str, float]:
    """Judged class accuracy of generated images (in [-1, 1]) and its sample count, FID/KID against real images on
    the judge's features, and with a `baseline` (`colour_baseline`) the share of the images it reads as their
    class: how much of the judged accuracy the colours alone explain."""
    from helpers.cifar_judge import class_accuracy, judge_features
    from helpers.metrics import frechet_distance, kernel_inception_distance

    fake_features, real_features = judge_features(judge, images), judge_features(judge, real)
    accuracy = class_accuracy(judge, images, labels)
    result = {"class_accuracy": accuracy["accuracy"], "n": accuracy["n_images"], "per_class": accuracy["per_class"],
              "fid_own": frechet_distance(fake_features, real_features),
              "kid_own": kernel_inception_distance(fake_features, real_features)}
    if baseline is not None:
        result["baseline_accuracy"] = baseline.accuracy((images + 1) / 2, labels)
    return result


def evaluate_ddpm(ddpm: ClassToImage, judge, data: ImageSplits, *, per_class: int = 50, guidance: float = 3.0,
                  steps: int = 20, sampler: str | None = None, seed: int = 0, inception: bool = False,
                  baseline: PooledPixelBaseline | None = None) -> dict:
    """Draw `per_class` images of every class and measure them against the held-out real images (and, with a
    `baseline`, how many of them the colour classifier reads as their class)."""
    labels = torch.arange(len(CIFAR10_CLASSES)).repeat_interleave(per_class)
    start = time.perf_counter()
    sampler = sampler or ddpm.default_sampler
    images = ddpm.generate(labels, guidance=guidance, steps=steps, sampler=sampler, seed=seed)
    seconds = time.perf_counter() - start
    from helpers.data.celeba import to_float

    real = to_float(data.test_images)
    result = {"sampler": f"{sampler}-{steps}", "guidance": guidance, "n": len(labels),
              "ms_per_image": 1000 * seconds / len(labels), "params": ddpm.parameters,
              "train_seconds": ddpm.train_seconds, **sample_quality(images, labels, judge, real, baseline)}
    if inception:
        result.update(inception_fid(images, real, ddpm.device))
    return result


def inception_fid(fake: torch.Tensor, real: torch.Tensor, device) -> dict:
    """The papers' FID (`helpers.metrics.standard_fid`) and its sample count, else the reason it was skipped."""
    from helpers.metrics import standard_fid

    try:
        return {"fid_inception": standard_fid(fake, real, device), "fid_inception_n": len(fake)}
    except CourseError as error:
        return {"fid_inception": None, "fid_inception_skipped": str(error)}


def real_reference(judge, data: ImageSplits, n: int = 500, baseline: PooledPixelBaseline | None = None
                   ) -> dict[str, float]:
    """What real images score, the row generated ones are read against: the judge's accuracy on held-out
    images it never trained on (and its count `n`; with a `baseline`, the colour classifier's on the same
    images), and FID/KID of `n` real training images against the held-out ones."""
    from helpers.cifar_judge import class_accuracy
    from helpers.data.celeba import to_float

    per = max(1, n // len(CIFAR10_CLASSES))
    keep = torch.cat([torch.nonzero(data.train_labels == c).flatten()[:per] for c in range(len(CIFAR10_CLASSES))])
    result = sample_quality(to_float(data.train_images[keep]), data.train_labels[keep], judge,
                            to_float(data.test_images))
    heldout = class_accuracy(judge, to_float(data.test_images), data.test_labels)
    result.update(class_accuracy=heldout["accuracy"], n=heldout["n_images"], per_class=heldout["per_class"])
    if baseline is not None:
        result["baseline_accuracy"] = baseline.accuracy(data.test_images, data.test_labels)
    return result


# ------------------------------------------------------------------------------------------ the registry's entry
def _cli_train(cfg: CourseConfig, out: Path, options) -> None:
    settings = with_objective(SETTINGS[cfg.mode], getattr(options, "objective", None), getattr(options, "backbone", None))
    ddpm = train_cifar_ddpm(cfg, out, epochs=options.epochs, image_size=options.image_size, resume=options.resume,
                            gif_path=options.gif, time_budget=options.budget, settings=settings)
    network = "diffusion transformer" if settings.backbone == "dit" else "UNet"
    objective = "rectified flow" if settings.prediction == "flow" else f"{settings.prediction}-prediction"
    print(f"trained {ddpm.parameters / 1e6:.1f}M-parameter {network} ({objective}) for {ddpm.train_seconds:.0f} s; draw with "
          f"`python -m helpers generate --model cifar-ddpm \"a photo of a cat\"`, measure with "
          f"`python -m helpers evaluate --model cifar-ddpm`")


def _generate(ddpm: ClassToImage, options) -> Samples:
    options.sampler = options.sampler or ddpm.default_sampler  # the file name says which sampler drew them
    images, label = ddpm(options.prompt, n=options.n, guidance=options.guidance, steps=options.steps,
                         sampler=options.sampler, seed=options.seed, progress=True)
    name = CIFAR10_CLASSES[label]
    return Samples((images + 1) / 2, f"cifar_{name}_{sampling_tag(options)}", 4,
                   f"read {options.prompt!r} as the class {name}")


def _evaluate(cfg: CourseConfig, ddpm: ClassToImage, options) -> None:
    from helpers.cifar_judge import load_or_train_cifar_judge

    data = cifar_data(cfg, ddpm.image_size)
    if ddpm.extra.get("data") != data.source:
        print(f"note: trained on {ddpm.extra.get('data')}, measured against {data.source}")
    judge, _ = load_or_train_cifar_judge(cfg, data)
    colour = colour_baseline(data)
    real = real_reference(judge, data, baseline=colour)
    print(judge_line(real["class_accuracy"], real["n"], f"held-out images ({data.source})", colour.name,
                     real["baseline_accuracy"]) + f", chance {1 / len(CIFAR10_CLASSES):.0%}")
    print(f"real training images against held-out ones: FID (judge features) {real['fid_own']:.2f}")
    # quick: 20 samples per class with the 20-step solver, well under a minute on a CPU, judged on the judge's
    # features; full: the 10,000 samples the papers' FID wants (biased upwards at small N), which a GPU draws in
    # seconds
    result = evaluate_ddpm(ddpm, judge, data, per_class=20 if cfg.quick else cfg.samples(1000),
                           guidance=options.guidance, steps=options.steps, sampler=options.sampler, seed=options.seed,
                           inception=not cfg.quick, baseline=colour)
    print(f"{result['sampler']}, guidance {result['guidance']:g}: judged class accuracy "
          f"{format_accuracy(result['class_accuracy'], result['n'])} (the {colour.name} reads "
          f"{result['baseline_accuracy']:.1%} of them), FID (judge features) {result['fid_own']:.2f}, "
          f"KID {result['kid_own'][0]:.4f} ± {result['kid_own'][1]:.4f}, {result['ms_per_image']:.0f} ms/image")
    print("per class: " + " ".join(f"{c}:{v:.0%}" for c, v in result["per_class"].items()))
    if cfg.quick:
        print("standard FID skipped: quick mode reports FID on the judge's features; full mode adds the papers' FID")
    elif result.get("fid_inception") is None:
        print(f"standard FID skipped: {result.get('fid_inception_skipped')}")
    else:
        print(f"standard FID (the papers' FID-Inception network, {result['fid_inception_n']} samples): "
              f"{result['fid_inception']:.2f}")


def _measure(cfg: CourseConfig, ddpm: ClassToImage, n: int, seed: int) -> dict:
    from helpers.cifar_judge import load_or_train_cifar_judge

    data = cifar_data(cfg, ddpm.image_size)
    judge, judge_accuracy = load_or_train_cifar_judge(cfg, data)
    colour = colour_baseline(data)
    result = evaluate_ddpm(ddpm, judge, data, per_class=n, seed=seed, baseline=colour)
    return {"metric": f"judged class accuracy ({result['sampler']}, w={result['guidance']:g})",
            "value": result["class_accuracy"], "n": result["n"], "baseline": result["baseline_accuracy"],
            "baseline_name": colour.name, "judge": judge_accuracy, "judge_n": len(data.test_labels),
            "ms_per_sample": result["ms_per_image"]}


# Training settings of each model in each mode (`cfg.recipe(name)` reads them; see helpers.config.Recipe).
RECIPES: dict[str, dict[str, Recipe]] = {
    # Notebook 05: the class-conditional DDPM (width = channels of the UNet's first level; the rest of its
    # settings are helpers.cifar.SETTINGS), trained to a time budget: 120 s on the CPU, 15 min on a GPU.
    "cifar-ddpm": {
        "quick": Recipe(epochs=2, batch_size=32, lr=2e-3, width=24, latent_dim=0, time_budget=120),
        "full": Recipe(epochs=100, batch_size=128, lr=1e-3, width=64, latent_dim=0, gif_every=2, time_budget=15 * 60),
    },
}


KINDS = (ModelKind(KIND, "05", "a class-conditional DDPM of CIFAR-10 (v-prediction, min-SNR, DPM-Solver++)",
                   train=_cli_train, load=lambda cfg, run: ClassToImage.from_checkpoint(run, cfg.device),
                   example="a photo of a cat", read_prompt=lambda text: check_prompt(
                       text, f'name one CIFAR-10 class, e.g. "a photo of a cat" ({", ".join(CIFAR10_CLASSES)})'),
                   generate=_generate, evaluate=_evaluate, domain="cifar",
                   draw=lambda ddpm, prompts, seed: torch.cat([ddpm(p, n=1, seed=seed)[0] for p in prompts]).add(1).div(2),
                   measure=_measure, writes_gif=True, budgeted=True),)
