"""Notebook 07's track: latent diffusion on faces, prompted through our own CLIP (notebook 03).

    stage 1  face (3, 64, 64) --Autoencoder.encode--> latent z0 (4, 16, 16)   (trained first, then frozen)
    stage 2  prompt --our CLIP's text tower--> token states (T, D), mask, pooled vector
             z_t, t, text --UNet with cross-attention--> eps_hat      (trained on the cached latents)
    sample   noise (4, 16, 16) --DDIM/DDPM + classifier-free guidance--> z0_hat --decode--> face

- The dataset is encoded once (both orientations, for flips) and the UNet trains on those latents:
  each step then costs a 16x16 UNet pass instead of a 64x64 one plus an encoder pass.
- Latents are scaled to unit variance (`latent_scale`, measured on the training set) so the noise
  schedule means the same as it does for images in [-1, 1].
- Every step draws a fresh caption per face (helpers.data.captions, as CLIP training does) and drops it
  with probability `p_uncond`: the UNet then sees only its learnt null token, which is the unconditional
  model classifier-free guidance subtracts.
- Judging (the same judge as notebook 04): single-attribute prompts ("a photo of a smiling person") ->
  samples -> the attribute classifier trained on real faces says whether each shows the attribute.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from helpers.checkpoint import has_checkpoint, read_checkpoint, read_index, record_run, recorded_run
from helpers.clip import ClipTextEncoder, face_data, load_or_train_clip
from helpers.config import CourseConfig, Recipe, seed_everything
from helpers.data.captions import FACE_EXAMPLE, caption, captions_for
from helpers.data.celeba import FaceSplits, to_float
from helpers.diffusion import NoiseSchedule, guided, sample, training_loss
from helpers.errors import CourseError
from helpers.text.prompts import check_prompt
from helpers.faces import (GRID_PROMPTS, measure_single_attributes, prompted_accuracy, single_attribute_accuracy,
                           single_attribute_prompts)
from helpers.models.autoencoder import Autoencoder, AutoencoderConfig, psnr
from helpers.models.unet import UNet, UNetConfig
from helpers.registry import ModelKind, Samples, sampling_tag, slug
from helpers.train import EMA, Checkpointing, Evaluate, GifFrames, ProgressBar, Trainer, TrainedModel, WallClock
from helpers.viz import labelled_grid

AE_KIND, KIND = "ldm-autoencoder", "ldm"
GIF_SEEDS = 4


@dataclass(frozen=True)
class LDMSettings:
    """What notebook 07 needs beyond its two Recipes (epochs, batch size, lr and width live there)."""

    ae_mults: tuple[int, ...]  # autoencoder levels: (1, 2, 4) = two halvings, 64 -> 16
    latent_channels: int
    kl_weight: float  # "light": the KL only keeps the latent's scale in check
    unet_mults: tuple[int, ...]
    unet_blocks: int | tuple[int, ...]
    attention_levels: tuple[int, ...]  # self- and cross-attention at these UNet levels (and the middle)
    dropout: float
    ema_decay: float
    pooled: bool = True  # also add the pooled sentence vector to the time embedding
    train_limit: int | None = None  # train the UNet on the first N faces only (None: all)
    p_uncond: float = 0.1
    schedule: str = "cosine"
    diffusion_steps: int = 1000
    prediction: str = "v"  # notebook 05's recipe (benchmarks/bench_ddpm.py measured it): v, min-SNR-5, cosine
    min_snr_gamma: float | None = 5.0
    shift: float = 1.0
    lr_schedule: str = "cosine"
    sampler: str = "dpm++2m"
    sample_steps: int = 20


SETTINGS = {
    # quick: a 1.3M-parameter UNet on the 16x16x4 latents of every training face, 130 s on 2 CPU cores
    "quick": LDMSettings(ae_mults=(1, 2, 4), latent_channels=4, kl_weight=1e-4, unet_mults=(1, 2, 2), unet_blocks=1,
                         attention_levels=(1, 2), dropout=0.0, ema_decay=0.995),
    # full: the UNet on the 200k CelebA faces' latents for 15 minutes (a larger --time-budget trains longer)
    "full": LDMSettings(ae_mults=(1, 2, 4), latent_channels=4, kl_weight=1e-4, unet_mults=(1, 2, 3),
                        unet_blocks=2, attention_levels=(1, 2), dropout=0.1, ema_decay=0.9995),
}


# ------------------------------------------------------------------------------------------ stage 1
def _flip_loss(kl_weight: float):
    def loss_fn(trainer: Trainer, batch) -> dict[str, torch.Tensor]:
        images = batch[0]
        flip = torch.rand(len(images), device=images.device) < 0.5  # faces are (nearly) symmetric
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
        return trainer.model.loss(images, kl_weight)

    return loss_fn


@torch.no_grad()
def reconstruction_psnr(autoencoder: Autoencoder, images: torch.Tensor, batch_size: int = 256) -> float:
    """Mean PSNR (dB) of encode -> decode over uint8 or [-1, 1] images."""
    device, scores = next(autoencoder.parameters()).device, []
    autoencoder.eval()
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        batch = (to_float(batch) if batch.dtype == torch.uint8 else batch).to(device)
        scores.append(psnr(autoencoder.reconstruct(batch), batch) * len(batch))
    return sum(scores) / len(images)


def train_autoencoder(cfg: CourseConfig, out: str | Path | None = None, *, epochs: int | None = None,
                      time_budget: float | str | None = None,
                      resume: bool = False, progress: bool = True, data: FaceSplits | None = None,
                      settings: LDMSettings | None = None) -> tuple[Autoencoder, list[dict]]:
    """Stage 1: the face autoencoder into `out` (default runs/ldm-autoencoder); held-out PSNR every epoch."""
    recipe = cfg.recipe(AE_KIND, epochs=epochs, time_budget=time_budget)
    settings = settings or SETTINGS[cfg.mode]
    out = Path(out or cfg.run_dir(AE_KIND))
    data = data or face_data(cfg)
    heldout = data.test_images[:256]
    seed_everything(cfg.seed)
    model = Autoencoder(AutoencoderConfig(image_size=data.image_size, latent_channels=settings.latent_channels,
                                          width=recipe.width, mults=settings.ae_mults))
    extra = {"mode": cfg.mode, "recipe": asdict(recipe), "data": data.source, "kl_weight": settings.kl_weight}
    callbacks = [WallClock(), Evaluate(lambda m: {"heldout_psnr": reconstruction_psnr(m, heldout)}),
                 Checkpointing(out, AE_KIND, resume=resume, extra=extra)]
    if progress:
        callbacks.append(ProgressBar(("loss", "psnr")))
    trainer = Trainer(model, _flip_loss(settings.kl_weight), data.train_set(), epochs=recipe.epochs,
                      batch_size=recipe.batch_size, lr=recipe.lr, device=cfg.device, callbacks=callbacks,
                      seed=cfg.seed, time_budget=recipe.time_budget, channels_last=True)
    trainer.fit()
    return trainer.model.eval(), trainer.history


def load_autoencoder(run_dir: str | Path, device: torch.device | str = "cpu") -> Autoencoder:
    checkpoint = read_checkpoint(run_dir, AE_KIND)
    return checkpoint.rebuild(Autoencoder).to(device)


def load_or_train_autoencoder(cfg: CourseConfig, run_dir: str | Path | None = None, data: FaceSplits | None = None,
                              progress: bool = False) -> Autoencoder:
    """The stage-1 autoencoder of this mode and these faces if it was trained, else train it now."""
    run_dir = Path(run_dir or cfg.run_dir(AE_KIND))
    data = data or face_data(cfg)
    if has_checkpoint(run_dir):
        extra = read_index(run_dir, AE_KIND)["extra"]
        if extra.get("mode") == cfg.mode and extra.get("data") == data.source:
            return load_autoencoder(run_dir, cfg.device)
    print(f"no {cfg.mode}-mode autoencoder trained on these faces in {run_dir}: training one "
          f"(`python -m helpers train {AE_KIND}`)")
    return train_autoencoder(cfg, run_dir, data=data, progress=progress)[0]


@torch.no_grad()
def encode_images(autoencoder: Autoencoder, images: torch.Tensor, flip: bool = False,
                  batch_size: int = 256) -> torch.Tensor:
    """uint8 faces (N, 3, S, S) -> latent means (N, C, S/f, S/f) on the CPU (mirrored first if `flip`)."""
    device, chunks = next(autoencoder.parameters()).device, []
    autoencoder.eval()
    for start in range(0, len(images), batch_size):
        batch = to_float(images[start:start + batch_size]).to(device).contiguous(memory_format=torch.channels_last)
        chunks.append(autoencoder.encode(batch.flip(3) if flip else batch)[0].contiguous().cpu())
    return torch.cat(chunks)


def latent_scale(latents: torch.Tensor) -> float:
    """1 / standard deviation of the latents: scaled by it they have unit variance, like the noise."""
    return float(1.0 / latents.float().std().clamp(min=1e-6))


# ------------------------------------------------------------------------------------------ stage 2
def null_like(condition: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The "no text" condition of the same shapes: every token masked out (only the UNet's null token is left)
    and a zero pooled vector."""
    return tuple(torch.zeros_like(part) for part in condition)


def ldm_loss_fn(schedule: NoiseSchedule, clip: ClipTextEncoder, scale: float, p_uncond: float, pooled: bool,
                min_snr_gamma: float | None = None):
    def loss_fn(trainer: Trainer, batch) -> dict[str, torch.Tensor]:
        latents, flipped, attrs = batch
        flip = torch.rand(len(latents), device=latents.device) < 0.5
        z0 = torch.where(flip[:, None, None, None], flipped, latents) * scale
        rng = random.Random(trainer.seed * 1_000_003 + trainer.step)  # captions are a function of the step
        states, mask, vector = clip.condition([caption(row, rng) for row in attrs.round().long().tolist()])
        keep = (torch.rand(len(z0), device=z0.device) >= p_uncond).to(states.dtype)  # dropped = no text at all
        mask = mask * keep[:, None].long()
        vector = vector * keep[:, None] if pooled else None

        def eps_fn(x, t):
            return trainer.model(x, t, context=states, context_mask=mask, pooled=vector)

        return {"loss": training_loss(schedule, eps_fn, z0, min_snr_gamma=min_snr_gamma)}

    return loss_fn


class TextToFace(TrainedModel):
    """A trained latent diffusion model with its autoencoder and CLIP: prompts -> faces in [-1, 1]."""

    def __init__(self, unet: UNet, autoencoder: Autoencoder, clip: ClipTextEncoder, schedule: NoiseSchedule,
                 scale: float, history: list[dict] | None = None, extra: dict | None = None):
        self.model, self.autoencoder, self.clip = unet.eval(), autoencoder.eval(), clip
        self.schedule, self.scale = schedule, scale
        self.history, self.extra = history or [], extra or {}

    @property
    def unet(self) -> UNet:
        return self.model

    def check(self, prompts: Sequence[str]) -> None:
        if isinstance(prompts, str):
            raise CourseError("pass a list of prompts (or call the model with one prompt)")
        if len(prompts) == 0:
            raise CourseError("no prompts to draw: pass at least one, e.g. \"a smiling woman\"")
        for prompt in set(prompts):
            check_prompt(prompt, FACE_EXAMPLE)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], *, guidance: float = 3.0, steps: int = 20, sampler: str = "dpm++2m",
                 seed: int = 0, batch_size: int = 128, progress: bool = False, keep=None,
                 spacing: str = "trailing") -> torch.Tensor:
        """One face per prompt, (N, 3, S, S) in [-1, 1] on the CPU; the same seed gives the same faces.

        guidance 0 = unconditional, 1 = plain conditional, > 1 = classifier-free guidance towards the prompt.
        """
        self.check(prompts)
        if guidance < 0:
            raise CourseError(f"guidance must be >= 0 (0 = unconditional, 1 = no guidance), got {guidance}")
        for prompt in sorted(set(prompts)):
            self.clip.check_prompt(prompt)  # warns about words our CLIP never saw in its captions
        generator, out = torch.Generator().manual_seed(seed), []
        pooled = self.unet.config.pooled_dim > 0
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            condition = self.clip.condition(chunk)
            condition = condition if pooled else condition[:2]

            def eps_fn(x, t, cond):
                return self.unet(x, t, context=cond[0], context_mask=cond[1], pooled=cond[2] if pooled else None)

            eps = (guided(eps_fn, condition, null_like(condition), guidance) if guidance > 0
                   else lambda x, t, null=null_like(condition): eps_fn(x, t, null))
            z = sample(eps, (len(chunk), *self.autoencoder.config.latent_shape), self.schedule, sampler=sampler,
                       steps=steps, generator=generator, device=self.device, progress=progress, clip=False, keep=keep,
                       spacing=spacing)
            out.append(self.autoencoder.decode(z / self.scale).clamp(-1, 1).cpu())
        return torch.cat(out)

    def __call__(self, prompt: str, n: int = 8, **kwargs) -> torch.Tensor:
        """(n, 3, S, S) faces in [-1, 1] for one prompt."""
        if not 1 <= n <= 1024:
            raise CourseError(f"n must be between 1 and 1024, got {n}")
        self.check([prompt])
        return self.generate([prompt] * n, **kwargs)

    @classmethod
    def from_checkpoint(cls, run_dir: str | Path, cfg: CourseConfig, use_ema: bool = True) -> "TextToFace":
        """Load the UNet and the autoencoder and CLIP it was trained on (refusing changed ones)."""
        run_dir = Path(run_dir)
        hint = f"python -m helpers train {KIND} --out {run_dir}"
        checkpoint = read_checkpoint(run_dir, KIND, train_hint=hint)
        extra = checkpoint.index["extra"]
        unet = checkpoint.rebuild(UNet, ema=use_ema, train_hint=hint)
        autoencoder = load_autoencoder(recorded_run(extra, "autoencoder", AE_KIND, hint), cfg.device)
        clip = ClipTextEncoder.from_checkpoint(recorded_run(extra, "clip", "clip", hint), cfg.device)
        schedule = NoiseSchedule.from_settings(extra.get("settings", {}))
        return cls(unet.to(cfg.device), autoencoder, clip, schedule, extra["latent_scale"], extra.get("history", []),
                   extra)


def _gif_render(autoencoder: Autoencoder, clip: ClipTextEncoder, schedule: NoiseSchedule, scale: float,
                steps: int, sampler: str, guidance: float = 3.0):
    prompts = [p for p in GRID_PROMPTS for _ in range(GIF_SEEDS)]  # one row per prompt, the same seeds every epoch
    labels = [p.replace("a ", "", 1) for p in GRID_PROMPTS]

    def render(unet: UNet) -> torch.Tensor:
        images = TextToFace(unet, autoencoder, clip, schedule, scale).generate(prompts, guidance=guidance,
                                                                               steps=steps, sampler=sampler, seed=1234)
        return labelled_grid((images + 1) / 2, labels, ncol=GIF_SEEDS, scale=2)

    return render


def build_unet(width: int, settings: LDMSettings, clip: ClipTextEncoder) -> UNet:
    return UNet(UNetConfig(in_channels=settings.latent_channels, out_channels=settings.latent_channels, width=width,
                           mults=settings.unet_mults, blocks=settings.unet_blocks,
                           attention_levels=settings.attention_levels, context_dim=clip.token_dim,
                           pooled_dim=clip.dim if settings.pooled else 0, dropout=settings.dropout))


def train_ldm(cfg: CourseConfig, out: str | Path | None = None, *, epochs: int | None = None, resume: bool = False,
              progress: bool = True, gif_path: str | Path | None = None, data: FaceSplits | None = None,
              autoencoder_dir: str | Path | None = None, clip_dir: str | Path | None = None,
              settings: LDMSettings | None = None, callbacks: Sequence = (), time_budget: float | str | None = None,
              **recipe_overrides) -> TextToFace:
    """Stage 2: the text-conditioned latent UNet into `out` (default runs/ldm).

    Uses the autoencoder in `autoencoder_dir` (default runs/ldm-autoencoder) and our CLIP in `clip_dir`
    (default runs/clip); each is trained first if this mode has none for these faces. `time_budget` (seconds or
    "20m"; default: the mode's) trains the UNet for that long; `epochs` without a budget trains that many epochs.
    """
    recipe = cfg.recipe(KIND, epochs=epochs, time_budget=time_budget, **recipe_overrides)
    settings = settings or SETTINGS[cfg.mode]
    out = Path(out or cfg.run_dir(KIND))
    data = data or face_data(cfg)
    autoencoder_dir = Path(autoencoder_dir or cfg.run_dir(AE_KIND))
    clip_dir = Path(clip_dir or cfg.run_dir("clip"))
    autoencoder = load_or_train_autoencoder(cfg, autoencoder_dir, data, progress=progress)
    clip = load_or_train_clip(cfg, clip_dir, progress=progress, data=data)
    clip.model.requires_grad_(False)
    recorded = {**record_run(autoencoder_dir, "autoencoder", AE_KIND), **record_run(clip_dir, "clip", "clip")}
    if resume and has_checkpoint(out):
        before = read_index(out, KIND)["extra"]
        changed = [role for role in ("autoencoder", "clip") if before.get(f"{role}_sha256") != recorded[f"{role}_sha256"]]
        if changed or before.get("data") != data.source:
            raise CourseError(f"{out} was trained on another {' and '.join(changed) or 'dataset'}; "
                              f"train anew without --resume")

    start = time.perf_counter()
    images, attrs = data.train_images[:settings.train_limit], data.train_attrs[:settings.train_limit]
    latents = encode_images(autoencoder, images)
    flipped = encode_images(autoencoder, images, flip=True)
    scale = latent_scale(latents)
    encode_seconds = time.perf_counter() - start
    dataset = torch.utils.data.TensorDataset(latents, flipped, attrs)
    schedule = NoiseSchedule.from_settings(asdict(settings))
    seed_everything(cfg.seed)
    unet = build_unet(recipe.width, settings, clip)
    extra = {"mode": cfg.mode, "recipe": asdict(recipe), "settings": asdict(settings), "data": data.source,
             "latent_scale": scale, "encode_seconds": round(encode_seconds, 2), "schedule": settings.schedule,
             "diffusion_steps": settings.diffusion_steps, **recorded}
    gif_path = Path(gif_path) if gif_path else out / "training.gif"
    callbacks = [EMA(settings.ema_decay), WallClock(),
                 GifFrames(_gif_render(autoencoder, clip, schedule, scale, settings.sample_steps, settings.sampler),
                           out / "frames", gif_path, every=recipe.gif_every),
                 Checkpointing(out, KIND, resume=resume, extra=extra), *callbacks]
    if progress:
        callbacks.append(ProgressBar())
    trainer = Trainer(unet, ldm_loss_fn(schedule, clip, scale, settings.p_uncond, settings.pooled,
                                        settings.min_snr_gamma), dataset,
                      epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, device=cfg.device,
                      callbacks=callbacks, seed=cfg.seed, grad_clip=1.0, lr_schedule=settings.lr_schedule,
                      time_budget=recipe.time_budget)
    trainer.fit()
    return TextToFace(trainer.ema_model, autoencoder, clip, schedule, scale, trainer.history, extra)


# ------------------------------------------------------------------------------------------ measuring
def attribute_accuracy(ldm: TextToFace, judge, judged: Sequence[str], *, per_prompt: int = 16,
                       guidance: float = 3.0, steps: int = 20, sampler: str = "dpm++2m", seed: int = 0) -> dict:
    """`single_attribute_accuracy` of the latent diffusion model at one guidance scale, sampler and step count."""
    result = single_attribute_accuracy(
        lambda texts: ldm.generate(texts, guidance=guidance, steps=steps, sampler=sampler, seed=seed),
        judge, judged, per_prompt=per_prompt)
    return {**result, "guidance": guidance, "sampler": f"{sampler}-{steps}"}


def real_attribute_rates(judge, judged: Sequence[str], data: FaceSplits) -> dict[str, float]:
    """How often the judge sees each single-attribute prompt's attribute on real held-out faces: what an
    unconditional generator would score, the floor that prompting must beat."""
    real = to_float(data.test_images)
    return {prompt: prompted_accuracy(judge, real, [spec] * len(real), judged)[0]
            for prompt, spec in single_attribute_prompts(judged).items()}


def sample_fid(ldm: TextToFace, clip: ClipTextEncoder, data: FaceSplits, *, n: int = 500, guidance: float = 3.0,
               steps: int = 20, sampler: str = "dpm++2m", seed: int = 0) -> dict[str, float]:
    """FID/KID of faces drawn from held-out captions vs the held-out faces, on our CLIP's image features."""
    from helpers.metrics import frechet_distance, kernel_inception_distance

    n = min(n, len(data.test_images))
    captions = captions_for(data.test_attrs[:n], seed=seed + 7919)
    fake = ldm.generate(captions, guidance=guidance, steps=steps, sampler=sampler, seed=seed)
    fake_features = clip.image_features(fake)
    real_features = clip.image_features(data.test_images[:n])
    return {"fid_clip": frechet_distance(fake_features, real_features),
            "kid_clip": kernel_inception_distance(fake_features, real_features)[0], "n": n}


def guidance_grid(ldm: TextToFace, prompts: Sequence[str], scales: Sequence[float], steps: int = 20,
                  seed: int = 0) -> torch.Tensor:
    """A row per guidance scale, a column per prompt, the same starting noise everywhere."""
    rows = [ldm.generate(list(prompts), guidance=s, steps=steps, seed=seed) for s in scales]
    return labelled_grid((torch.cat(rows) + 1) / 2, [f"w = {s:g}" for s in scales], ncol=len(prompts), scale=2,
                         label_width=50)


def prompt_rows(ldm: TextToFace, prompts: Sequence[str], n: int = 6, **kwargs) -> torch.Tensor:
    """A labelled row of `n` faces per prompt (seeds 0..n-1 in every row)."""
    images = torch.cat([ldm(prompt, n=n, **kwargs) for prompt in prompts])
    return labelled_grid((images + 1) / 2, list(prompts), ncol=n, scale=2)


def reconstruction_grid(autoencoder: Autoencoder, images: torch.Tensor) -> torch.Tensor:
    """Top row: faces (uint8); bottom row: what comes back through the 16x16x4 latent."""
    device = next(autoencoder.parameters()).device
    real = to_float(images).to(device)
    recon = autoencoder.reconstruct(real)
    return labelled_grid((torch.cat([real, recon]).cpu() + 1) / 2, ["faces", "decoded"], ncol=len(images), scale=2,
                         label_width=60)


# ------------------------------------------------------------------------------------------ the registry's entries
def _cli_train_autoencoder(cfg: CourseConfig, out: Path, options) -> None:
    _, history = train_autoencoder(cfg, out, epochs=options.epochs, resume=options.resume)
    if history:
        print(f"held-out reconstruction PSNR: {history[-1]['heldout_psnr']:.2f} dB; next: `python -m helpers train ldm`")


def _reconstruct_faces(cfg: CourseConfig, autoencoder: Autoencoder, options) -> str:
    from helpers.viz import save_image

    faces = face_data(cfg)
    path = save_image(reconstruction_grid(autoencoder, faces.test_images[: options.n]),
                      Path(options.out or cfg.outputs_dir) / "ldm_autoencoder_reconstructions.png")
    return (f"held-out PSNR {reconstruction_psnr(autoencoder, faces.test_images):.2f} dB over "
            f"{len(faces.test_images)} faces ({faces.source}); top row faces, bottom row decoded -> {path}")


def _cli_train_ldm(cfg: CourseConfig, out: Path, options) -> None:
    model = train_ldm(cfg, out, epochs=options.epochs, resume=options.resume, gif_path=options.gif,
                      time_budget=options.budget)
    print(f"trained {model.parameters / 1e6:.1f}M-parameter latent UNet for {model.train_seconds:.0f} s; draw with "
          f"`python -m helpers generate --model ldm \"a smiling woman\"`, measure with "
          f"`python -m helpers evaluate --model ldm`")


def _generate_ldm(model: TextToFace, options) -> Samples:
    options.sampler = options.sampler or "dpm++2m"
    images = model(options.prompt, n=options.n, guidance=options.guidance, steps=options.steps,
                   sampler=options.sampler, seed=options.seed, progress=True)
    return Samples((images + 1) / 2, f"ldm_{slug(options.prompt)}_{sampling_tag(options)}", 2)


def _evaluate_ldm(cfg: CourseConfig, model: TextToFace, options) -> None:
    from helpers.faces import judge_report, load_or_train_face_judge, reliable
    from helpers.metrics import format_accuracy

    options.sampler = options.sampler or "dpm++2m"
    data = face_data(cfg)
    judge, accuracy = load_or_train_face_judge(cfg, data)
    judged = reliable(accuracy)
    print(judge_report(judge, accuracy, data))
    real = real_attribute_rates(judge, judged, data)
    print(f"real held-out faces show the single-attribute prompts' attributes "
          f"{sum(real.values()) / max(len(real), 1):.1%} of the time (unprompted rate: the baseline to beat)")
    for guidance in sorted({1.0, options.guidance}):
        result = attribute_accuracy(model, judge, judged, guidance=guidance, steps=options.steps,
                                    sampler=options.sampler, seed=options.seed)
        print(f"{result['sampler']}, guidance {guidance:g}: prompted-attribute accuracy "
              f"{format_accuracy(result['attribute_accuracy'], result['n'])}, {result['ms_per_image']:.0f} ms/face; "
              + ", ".join(f"{p.replace('a photo of ', '')} {v:.0%}" for p, v in result["per_prompt"].items()))
    fid = sample_fid(model, model.clip, data, guidance=options.guidance, steps=options.steps, sampler=options.sampler,
                     seed=options.seed)
    print(f"FID on our CLIP's image features ({fid['n']} faces from held-out captions): {fid['fid_clip']:.2f}")


# Training settings of each model in each mode (`cfg.recipe(name)` reads them; see helpers.config.Recipe).
RECIPES: dict[str, dict[str, Recipe]] = {
    # Notebook 07, stage 1: the face autoencoder (width = channels at 64x64; settings in helpers.ldm.SETTINGS).
    # Full mode: 4 minutes, so that notebook 07 trains in under 20 minutes on one GPU with the UNet's 15.
    "ldm-autoencoder": {
        "quick": Recipe(epochs=2, batch_size=32, lr=2e-3, width=16, latent_dim=4),
        "full": Recipe(epochs=20, batch_size=128, lr=5e-4, width=64, latent_dim=4, time_budget=4 * 60),
    },
    # Notebook 07, stage 2: the text-conditioned UNet on 16x16x4 latents (width = its first level's channels),
    # trained to a time budget: 130 s on the CPU, 15 min on a GPU.
    "ldm": {
        "quick": Recipe(epochs=3, batch_size=32, lr=2e-3, width=32, latent_dim=0, time_budget=130),
        "full": Recipe(epochs=100, batch_size=256, lr=5e-4, width=128, latent_dim=0, gif_every=5,
                       time_budget=15 * 60),
    },
}


KINDS = (
    ModelKind(AE_KIND, "07", "the face autoencoder whose latents the diffusion model learns",
              train=_cli_train_autoencoder, load=lambda cfg, run: load_autoencoder(run, cfg.device),
              reconstruct=_reconstruct_faces),
    ModelKind(KIND, "07", "latent diffusion: a text-conditioned UNet (our CLIP, cross-attention) on face latents",
              train=_cli_train_ldm, load=lambda cfg, run: TextToFace.from_checkpoint(run, cfg),
              example="a smiling woman with blond hair", read_prompt=lambda text: check_prompt(text, FACE_EXAMPLE),
              generate=_generate_ldm, evaluate=_evaluate_ldm, domain="faces",
              draw=lambda model, prompts, seed: model.generate(prompts, seed=seed).add(1).div(2),
              measure=lambda cfg, model, n, seed: measure_single_attributes(
                  cfg, lambda texts: model.generate(texts, seed=seed), n),
              writes_gif=True, budgeted=True),
)
