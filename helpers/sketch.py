"""Notebook 08's track: a CVAE that draws 128x128 sketches from text, conditioned on CLIP text embeddings.

    caption --text encoder (OpenAI's CLIP, or ours trained on the captions)--> c (cached once per caption)
    sketch, c --SketchCVAE--> z --(z, c)--> ink probabilities (1, 128, 128)
    prompt --same encoder--> c, z ~ N(0, I) --decoder--> sketch
    sketch --doodle judge (trained on real doodles)--> class: is "a sketch of a cat" a cat?

Text encoders (`text_encoder=`): "openai-clip" (pretrained, through transformers; refuses an offline placeholder
tokenizer), "ours" (notebook 03's CLIP architecture trained here on the sketch captions), "auto" (OpenAI's when
it loads, else ours, saying so). Every caption's embedding is computed once and cached on disk.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from helpers.checkpoint import (has_checkpoint, load_or_train, read_checkpoint, read_index, record_run,
                               recorded_run)
from helpers.clip import CaptionTokenizer, ClipTextEncoder
from helpers.config import CourseConfig, Recipe, seed_everything
from helpers.data.sketches import SketchSplits, class_caption, load_sketches
from helpers.errors import CourseError
from helpers.metrics import PooledPixelBaseline, diversity, format_accuracy, judge_line
from helpers.text.prompts import check_prompt
from helpers.models.clip import CLIPConfig, CLIPModel
from helpers.models.judge import DigitJudge, DigitJudgeConfig
from helpers.models.sketch import SketchCVAE, SketchCVAEConfig
from helpers.text.encoders import cached_embeddings, load_text_encoder
from helpers.registry import ModelKind, Samples, slug
from helpers.train import Callback, Checkpointing, Evaluate, GifFrames, KLAnnealing, ProgressBar, Trainer, TrainedModel, WallClock
from helpers.viz import labelled_grid

KIND, JUDGE, CLIP_KIND = "sketch-cvae", "doodle-judge", "clip-sketch"
TEXT_ENCODERS = ("auto", "openai-clip", "ours")
QUICK_LIMIT_PER_CLASS = 300  # quick mode: 1,800 of the 16,200 local training doodles
GIF_SEEDS = 4
JUDGE_SIZE = 28  # the judge reads sketches shrunk to 28x28 (Quick, Draw!'s own size)
# How far from the prompt's most typical sketch `generate` samples by default (`SketchCVAE.sample`): the fitted
# noise at 0.6 of its spread. Quick recipe (8 epochs), one run each, 600 samples judged by the judge of all training
# sketches (judged / within-prompt diversity; notebook 08 measures it again): real Quick, Draw! doodles 87.7% / 0.23
# at 0.6 against 75.2% / 0.39 at 1 (real doodles of one class: 0.53); procedural sketches 100% / 0.50 at 0.6,
# 99.8% / 0.61 at 1 (real: 0.80). Lower is more faithful to the prompt and less varied, as a diffusion model's
# guidance is.
SAMPLING_TEMPERATURE = 0.6

_DATA_CACHE: dict = {}


def sketch_data(cfg: CourseConfig) -> SketchSplits:
    key = (cfg.mode, str(cfg.local_data), str(cfg.data_root), cfg.seed)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_sketches(cfg, limit_per_class=QUICK_LIMIT_PER_CLASS if cfg.quick else None)
    return _DATA_CACHE[key]


def check_sketch_prompt(prompt: str) -> str:
    return check_prompt(prompt, 'describe a sketch, e.g. "a sketch of a cat"')


# ------------------------------------------------------------------------------------------ text encoders
def _clip_images(images: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Sketches in [0, 1] (B, 1, S, S) -> what the CLIP image tower takes: (B, 3, 64, 64) in [-1, 1]."""
    return F.interpolate(images, size=(size, size), mode="area").mul(2).sub(1).expand(-1, 3, -1, -1)


def train_sketch_clip(cfg: CourseConfig, data: SketchSplits, out: str | Path | None = None, *,
                      epochs: int | None = None, progress: bool = False) -> ClipTextEncoder:
    """Notebook 03's CLIP, trained on sketches and their captions (when OpenAI's cannot be had)."""
    recipe = cfg.recipe(CLIP_KIND, epochs=epochs)
    out = Path(out or cfg.run_dir(CLIP_KIND))
    seed_everything(cfg.seed)
    corpus = list(data.train_captions) + [class_caption(c, random.Random(i)) for i, c in enumerate(data.classes * 20)]
    tokenizer = CaptionTokenizer.train(corpus, vocab_size=500)
    config = CLIPConfig(vocab_size=tokenizer.vocab_size, image_size=64, image_width=recipe.width,
                        text_width=4 * recipe.width, embed_dim=recipe.latent_dim)
    captions = data.train_captions

    def loss_fn(trainer: Trainer, batch) -> dict[str, torch.Tensor]:
        images, index, _ = batch
        texts = [captions[i] for i in index.tolist()]
        ids, mask = tokenizer(texts, config.max_tokens)
        same = torch.tensor([[a == b for b in texts] for a in texts], device=images.device)
        return trainer.model(_clip_images(images), ids.to(images.device), mask.to(images.device), same_caption=same)

    callbacks = [Checkpointing(out, "clip", extra={"mode": cfg.mode, "recipe": asdict(recipe), "data": data.source,
                                                   "tokenizer": tokenizer.to_str()})]
    if progress:
        callbacks.append(ProgressBar(("loss", "batch_accuracy")))
    Trainer(CLIPModel(config), loss_fn, data.train_set(), epochs=recipe.epochs, batch_size=recipe.batch_size,
            lr=recipe.lr, device=cfg.device, callbacks=callbacks, seed=cfg.seed, weight_decay=0.05).fit()
    return ClipTextEncoder.from_checkpoint(out, cfg.device)


def load_sketch_encoder(cfg: CourseConfig, name: str, data: SketchSplits, progress: bool = False):
    """(encoder, recorded): the text encoder `name` and what a checkpoint must record to find it again."""
    if name not in TEXT_ENCODERS:
        raise CourseError(f"unknown text encoder {name!r}; choose one of {', '.join(TEXT_ENCODERS)}")
    if name == "openai-clip" or (name == "auto" and not cfg.offline):
        try:
            return load_text_encoder("openai-clip"), {"text_encoder": "openai-clip"}
        except CourseError as error:
            if name == "openai-clip":
                raise
            print(f"OpenAI's CLIP is not available ({error}); using our CLIP trained on the sketch captions")
    elif name == "auto":
        print("offline: using our CLIP trained on the sketch captions instead of OpenAI's")
    run_dir = cfg.run_dir(CLIP_KIND)
    encoder = load_or_train_sketch_clip(cfg, data, progress)
    return encoder, {"text_encoder": "ours", **record_run(run_dir, "clip", "clip")}


def load_or_train_sketch_clip(cfg: CourseConfig, data: SketchSplits, progress: bool = False) -> ClipTextEncoder:
    """Our CLIP trained on these sketches' captions (runs/clip-sketch), trained now if this mode has none."""
    run_dir = cfg.run_dir(CLIP_KIND)

    def train() -> ClipTextEncoder:
        print(f"training our CLIP on the sketch captions into {run_dir}")
        return train_sketch_clip(cfg, data, run_dir, progress=progress)

    return load_or_train(run_dir, "clip", mode=cfg.mode, source=data.source, train=train,
                         load=lambda folder: ClipTextEncoder.from_checkpoint(folder, cfg.device))


def condition_bank(encoder, captions: Sequence[str], cache_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed every distinct caption once (cached on disk): (embeddings (U, D), index of each caption (N,))."""
    unique = sorted(set(captions))
    position = {text: i for i, text in enumerate(unique)}
    return cached_embeddings(encoder, unique, cache_dir), torch.tensor([position[c] for c in captions])


# ------------------------------------------------------------------------------------------ generator
class TextToSketch(TrainedModel):
    """A trained sketch CVAE with its text encoder: prompts -> sketches (ink probabilities in [0, 1])."""

    def __init__(self, model: SketchCVAE, encoder, history: list[dict] | None = None, extra: dict | None = None):
        self.model, self.encoder = model.eval(), encoder
        self.history, self.extra = history or [], extra or {}

    def condition(self, prompts: Sequence[str]) -> torch.Tensor:
        texts = [check_sketch_prompt(p) for p in prompts]
        unique = sorted(set(texts))
        vectors = self.encoder.encode(unique)
        return vectors[torch.tensor([unique.index(t) for t in texts])].to(self.device)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], seed: int = 0, fitted: bool = True,
                 temperature: float | None = None) -> torch.Tensor:
        """One sketch per prompt, (N, 1, S, S) in [0, 1] (1 = ink) on the CPU; the same seed, the same sketches.
        `fitted=False`: the prior's unit-variance noise instead of the noise fitted to the training codes;
        `temperature`: how far from the prompt's most typical sketch to sample (`SketchCVAE.sample`), by default
        `SAMPLING_TEMPERATURE`."""
        if isinstance(prompts, str) or len(prompts) == 0:
            raise CourseError("pass a non-empty list of prompts")
        self.model.eval()
        fitted = fitted and self.model.config.prior == "learned"
        temperature = SAMPLING_TEMPERATURE if temperature is None else temperature
        return self.model.sample(self.condition(prompts), torch.Generator().manual_seed(seed), fitted=fitted,
                                 temperature=temperature).cpu()

    def __call__(self, prompt: str, n: int = 8, seed: int = 0, temperature: float | None = None) -> torch.Tensor:
        if not 1 <= n <= 1024:
            raise CourseError(f"n must be between 1 and 1024, got {n}")
        return self.generate([check_sketch_prompt(prompt)] * n, seed, temperature=temperature)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """uint8 sketches (ink = 255) + their captions -> reconstructions in [0, 1]."""
        self.model.eval()
        return self.model.reconstruct((images.float() / 255).to(self.device), self.condition(captions)).cpu()

    @classmethod
    def from_checkpoint(cls, run_dir: str | Path, cfg: CourseConfig) -> "TextToSketch":
        run_dir = Path(run_dir)
        hint = f"python -m helpers train {KIND} --out {run_dir}"
        checkpoint = read_checkpoint(run_dir, KIND, train_hint=hint)
        extra = checkpoint.index["extra"]
        model = checkpoint.rebuild(SketchCVAE).to(cfg.device)
        if extra["text_encoder"] == "openai-clip":
            encoder = load_text_encoder("openai-clip")
        else:
            encoder = ClipTextEncoder.from_checkpoint(recorded_run(extra, "clip", "clip", hint), cfg.device)
        return cls(model, encoder, extra.get("history", []), extra)


# ------------------------------------------------------------------------------------------ training
def class_prompts(classes: Sequence[str]) -> list[str]:
    return [class_caption(name) for name in classes]


def showcase_prompts(data: SketchSplits, k: int = 6) -> list[str]:
    """The prompts the notebook, the GIF and the grids draw: each class's canonical prompt or, for a dataset
    without classes (zoheb/sketch-scene's captioned scenes), the first `k` distinct held-out captions."""
    return class_prompts(data.classes) if data.classes else list(dict.fromkeys(data.test_captions))[:k]


def _gif_render(encoder, prompts: Sequence[str]):
    cond = encoder.encode(sorted(set(prompts)))
    order = torch.tensor([sorted(set(prompts)).index(p) for p in prompts]).repeat_interleave(GIF_SEEDS)

    def render(model: SketchCVAE) -> torch.Tensor:
        device = next(model.parameters()).device
        images = model.sample(cond[order].to(device), torch.Generator().manual_seed(1234)).cpu()
        return labelled_grid(1 - images.expand(-1, 3, -1, -1), list(prompts), ncol=GIF_SEEDS, scale=1)

    return render


def sketch_loss_fn(bank: torch.Tensor, caption_index: torch.Tensor, beta: float):
    on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # copied once, looked up where the batch is

    def loss_fn(trainer: Trainer, batch) -> dict[str, torch.Tensor]:
        images, index, _ = batch
        if images.device not in on_device:
            on_device[images.device] = (bank.to(images.device), caption_index.to(images.device))
        embeddings, captions = on_device[images.device]
        return trainer.model.loss(images, embeddings[captions[index]], beta * trainer.kl_weight)

    return loss_fn


HELDOUT_BCE_IMAGES = 512
NOISE_FIT_IMAGES = 2048  # training sketches whose codes fit the sampling noise


class FitSamplingNoise(Callback):
    """After every epoch (before the GIF frame and the checkpoint), fit the learned prior's sampling noise to the
    codes of up to `NOISE_FIT_IMAGES` training sketches (`SketchCVAE.fit_noise`)."""

    order = 15

    def __init__(self, images: torch.Tensor, cond: torch.Tensor):
        every = max(1, len(images) // NOISE_FIT_IMAGES)  # spread over the set: it may be sorted by class
        self.images, self.cond = images[::every][:NOISE_FIT_IMAGES], cond[::every][:NOISE_FIT_IMAGES]

    def after_epoch(self, trainer: Trainer) -> None:
        model, device = trainer.model, trainer.device
        model.eval()
        model.fit_noise(torch.cat([model.residuals(self.images[i:i + 256].float().div(255).to(device),
                                                   self.cond[i:i + 256].to(device))
                                   for i in range(0, len(self.images), 256)]))


def heldout_bce(model: SketchCVAE, images: torch.Tensor, cond: torch.Tensor) -> float:
    """Reconstruction BCE (summed over pixels, mean per image) of uint8 sketches through the mean of z."""
    device = next(model.parameters()).device
    images, cond = images.float().div(255).to(device), cond.to(device)
    with torch.no_grad():
        logits = model.decode(model.encode(images, cond)[0], cond)
        return float(F.binary_cross_entropy_with_logits(logits, images, reduction="sum") / len(images))


def train_sketch_cvae(cfg: CourseConfig, out: str | Path | None = None, *, epochs: int | None = None,
                      time_budget: float | str | None = None,
                      resume: bool = False, progress: bool = True, gif_path: str | Path | None = None,
                      data: SketchSplits | None = None, text_encoder: str = "auto", encoder=None,
                      recorded: dict | None = None, num_workers: int = 0, persistent_workers: bool = False,
                      pin_memory: bool | None = None, amp: bool = True, grad_clip: float | None = 1.0,
                      beta: float | None = None, prior: str = "learned", callbacks: Sequence = (),
                      **recipe_overrides) -> TextToSketch:
    """Train the text-to-sketch CVAE into `out` (default runs/sketch-cvae).

    The training features notebook 08 measures are arguments: `num_workers`, `persistent_workers`, `pin_memory`
    (default: on CUDA), `amp` (mixed precision, CUDA only) and `grad_clip`.
    """
    recipe = cfg.recipe(KIND, epochs=epochs, **recipe_overrides)
    beta = recipe.beta if beta is None else beta
    out = Path(out or cfg.run_dir(KIND))
    data = data or sketch_data(cfg)
    if encoder is None:
        encoder, recorded = load_sketch_encoder(cfg, text_encoder, data, progress)
    recorded = recorded or {"text_encoder": "given"}
    cache = cfg.data_root / "cache" / "text"
    bank, index = condition_bank(encoder, data.train_captions, cache)
    test_bank, test_index = condition_bank(encoder, data.test_captions, cache)
    if resume and has_checkpoint(out):
        before = read_index(out, KIND)["extra"]
        if before.get("data") != data.source or before.get("encoder_name") != encoder.name:
            raise CourseError(f"{out} was trained on other data or another text encoder; train anew without --resume")
    seed_everything(cfg.seed)
    model = SketchCVAE(SketchCVAEConfig(cond_dim=bank.shape[1], image_size=data.image_size,
                                        latent_dim=recipe.latent_dim, width=recipe.width, prior=prior))
    model.set_text_statistics(bank[index])
    extra = {"mode": cfg.mode, "recipe": asdict(recipe), "data": data.source, "encoder_name": encoder.name,
             "beta": beta, **recorded}
    prompts = showcase_prompts(data)
    gif_path = Path(gif_path) if gif_path else out / "training.gif"
    all_callbacks = [WallClock(), KLAnnealing(recipe.kl_warmup_epochs) if recipe.kl_warmup_epochs else None,
                     FitSamplingNoise(data.train_images, bank[index]) if prior == "learned" else None,
                     Evaluate(lambda m: {"heldout_bce": heldout_bce(m, data.test_images[:HELDOUT_BCE_IMAGES],
                                                                    test_bank[test_index[:HELDOUT_BCE_IMAGES]])}),
                     GifFrames(_gif_render(encoder, prompts), out / "frames", gif_path, every=recipe.gif_every),
                     Checkpointing(out, KIND, resume=resume, extra=extra), *callbacks]
    if progress:
        all_callbacks.append(ProgressBar(("loss", "bce", "kl")))
    trainer = Trainer(model, sketch_loss_fn(bank, index, beta), data.train_set(), epochs=recipe.epochs,
                      batch_size=recipe.batch_size, lr=recipe.lr, device=cfg.device,
                      callbacks=[c for c in all_callbacks if c is not None], seed=cfg.seed,
                      time_budget=time_budget, grad_clip=grad_clip,
                      num_workers=num_workers, persistent_workers=persistent_workers, pin_memory=pin_memory, amp=amp)
    trainer.fit()
    return TextToSketch(trainer.model, encoder, trainer.history, extra)


# ------------------------------------------------------------------------------------------ judge
def judge_view(images: torch.Tensor) -> torch.Tensor:
    """uint8 (ink 255) or [0, 1] sketches (B, 1, S, S) -> (B, 1, 28, 28) in [0, 1], what the judge reads."""
    images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    return F.interpolate(images, size=(JUDGE_SIZE, JUDGE_SIZE), mode="area")


@torch.no_grad()
def judge_classes(judge: DigitJudge, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    device = next(judge.parameters()).device
    judge.eval()
    return torch.cat([judge(judge_view(images[i:i + batch_size]).to(device)).argmax(1).cpu()
                      for i in range(0, len(images), batch_size)])


def train_doodle_judge(cfg: CourseConfig, data: SketchSplits | None = None, out: str | Path | None = None, *,
                       epochs: int | None = None, progress: bool = False) -> tuple[DigitJudge, float]:
    """A small CNN trained on the real doodles' classes; returns it and its held-out accuracy.
    It learns from `doodle_judge_data`: every training doodle there is, not only quick mode's share."""
    data = doodle_judge_data(cfg, data or sketch_data(cfg))
    if not data.classes:
        raise CourseError(f"{data.source} has no classes to judge; use the Quick, Draw! doodles (COURSE_DATA) or "
                          "quick mode")
    recipe = cfg.recipe(JUDGE, epochs=epochs)
    out = Path(out or cfg.run_dir(JUDGE))
    seed_everything(cfg.seed)
    model = DigitJudge(DigitJudgeConfig(width=recipe.width, num_classes=len(data.classes), image_size=JUDGE_SIZE))
    train = torch.utils.data.TensorDataset(judge_view(data.train_images), data.train_labels)

    def loss_fn(trainer: Trainer, batch) -> dict[str, torch.Tensor]:
        images, labels = batch
        shift = torch.randint(-2, 3, (2,)).tolist()  # generated sketches are not centred like the real ones
        return {"loss": F.cross_entropy(trainer.model(torch.roll(images, shifts=shift, dims=(2, 3))), labels)}

    def accuracy(model) -> dict[str, float]:
        return {"heldout_accuracy": float((judge_classes(model, data.test_images) == data.test_labels).float().mean())}

    callbacks = [Evaluate(accuracy), Checkpointing(out, JUDGE, extra={"mode": cfg.mode, "data": data.source,
                                                                      "classes": list(data.classes),
                                                                      "train_images": len(data.train_labels)})]
    if progress:
        callbacks.append(ProgressBar())
    trainer = Trainer(model, loss_fn, train, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                      device=cfg.device, callbacks=callbacks, seed=cfg.seed)
    history = trainer.fit()
    return model.eval(), history[-1]["heldout_accuracy"]


def doodle_judge_data(cfg: CourseConfig, data: SketchSplits) -> SketchSplits:
    """What the doodle judge learns from: in quick mode, every training sketch of the classed source (a local
    Quick, Draw! copy's 16,200 doodles, or 2,400 procedural sketches), not only quick mode's share, with the same
    held-out sketches (a few seconds more: the judge reads 28x28 images). Trained on quick mode's 1,800 real
    doodles it read 83.7% of the 1,800 held-out ones, on all 16,200 93.7%; on 1,800 procedural sketches it read
    98.3% of the held-out ones yet only 79-90% of one model's samples, which the judge of 2,400 read at 99-100%."""
    if not (cfg.quick and data.classes):
        return data
    key = ("judge", str(cfg.local_data), str(cfg.data_root), cfg.seed, data.image_size)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_sketches(cfg, image_size=data.image_size)
    return _DATA_CACHE[key]


def load_or_train_doodle_judge(cfg: CourseConfig, data: SketchSplits | None = None,
                               out: str | Path | None = None) -> tuple[DigitJudge, float]:
    data = data or sketch_data(cfg)
    wanted = len(doodle_judge_data(cfg, data).train_labels)
    out = Path(out or cfg.run_dir(JUDGE))

    def load(folder: Path) -> tuple[DigitJudge, float]:
        checkpoint = read_checkpoint(folder, JUDGE)
        judge = checkpoint.rebuild(DigitJudge).to(cfg.device)
        return judge, checkpoint.index["extra"]["history"][-1]["heldout_accuracy"]

    return load_or_train(out, JUDGE, mode=cfg.mode, source=data.source, load=load,
                         train=lambda: train_doodle_judge(cfg, data, out),
                         accept=lambda extra: extra.get("train_images", 0) >= wanted)


def pixel_baseline(data: SketchSplits) -> PooledPixelBaseline:
    """The trivial baseline printed beside the doodle judge: a classifier on a sketch's 4x4 mean ink (16 numbers),
    fitted on the training sketches."""
    return PooledPixelBaseline(data.train_images, data.train_labels)


def judge_report(judge_accuracy: float, data: SketchSplits, baseline: PooledPixelBaseline) -> str:
    """"judge reads 97.0% (n=600, 95% CI ...) of held-out real doodles; a 4x4 mean-pixel classifier reads 55.0%"."""
    kind = "procedural sketches" if data.source.startswith("synthetic") else "real doodles"
    return judge_line(judge_accuracy, len(data.test_labels), f"held-out {kind}", baseline.name,
                      baseline.accuracy(data.test_images, data.test_labels))


def prompt_diversity(images: torch.Tensor, labels: torch.Tensor) -> float:
    """Within-prompt diversity: `metrics.diversity` (mean cosine distance of every pair) of the pixels of the
    sketches of each label, averaged over the labels. 0 for copies of one drawing; two sketches whose strokes
    never overlap are 1 apart. Cosine, not Euclidean: a faint blurry copy of a drawing stays close to it, so what
    counts is where the ink is, not how much of it there is."""
    images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    values = [diversity(images[labels == label].flatten(1)) for label in labels.unique().tolist()
              if int((labels == label).sum()) >= 2]
    if not values:
        raise CourseError("prompt diversity needs at least two sketches of one prompt")
    return max(0.0, sum(values) / len(values))  # copies of one drawing: 0, not a rounding error's -0.00


def evaluate_sketches(sketch: TextToSketch, judge: DigitJudge, data: SketchSplits, *, per_class: int = 50,
                      seed: int = 0, baseline: PooledPixelBaseline | None = None, fitted: bool = True,
                      temperature: float | None = None) -> dict:
    """Judged class accuracy of `per_class` sketches drawn from each class's canonical prompt, per class and
    overall, and their count; their within-prompt diversity next to that of `per_class` held-out real sketches of
    each class; with a `baseline` (`pixel_baseline`), the share of them it reads as their class; held-out
    reconstruction BCE; sampling time. `fitted=False` samples with the prior's unit-variance noise."""
    prompts = class_prompts(data.classes)
    texts = [p for p in prompts for _ in range(per_class)]
    labels = torch.arange(len(prompts)).repeat_interleave(per_class)
    start = time.perf_counter()
    images = sketch.generate(texts, seed=seed, fitted=fitted, temperature=temperature)
    ms = 1000 * (time.perf_counter() - start) / len(texts)
    hits = judge_classes(judge, images) == labels
    per = {name: float(hits[labels == i].float().mean()) for i, name in enumerate(data.classes)}
    real = torch.cat([torch.nonzero(data.test_labels == i).flatten()[:per_class] for i in range(len(prompts))])
    result = {"class_accuracy": float(hits.float().mean()), "per_class": per, "n": len(texts),
              "diversity": prompt_diversity(images, labels),
              "real_diversity": prompt_diversity(data.test_images[real], data.test_labels[real]),
              **_reconstruction(sketch, data), "ms_per_sketch": ms, "images": images}
    if baseline is not None:
        result["baseline_accuracy"] = baseline.accuracy(images, labels)
    return result


def class_accuracy_line(result: dict, data: SketchSplits, baseline: PooledPixelBaseline) -> str:
    """"judged class accuracy of generated sketches: 90.0% (n=120, 95% CI ...) (chance 17%; the 4x4 mean-pixel
    classifier reads 40.0% of them)"."""
    return (f"judged class accuracy of generated sketches: {format_accuracy(result['class_accuracy'], result['n'])} "
            f"(chance {1 / len(data.classes):.0%}; the {baseline.name} reads {result['baseline_accuracy']:.1%} "
            "of them)")


def retrieval_line(result: dict) -> str:
    """R@1 of generated and real sketches among the same captions, each with its count and interval, and chance."""
    return (f"retrieval judge (our CLIP on the sketch captions), R@1 among {result['n']} held-out captions: "
            f"generated {format_accuracy(result['retrieval_r1'], result['n'])}, real sketches "
            f"{format_accuracy(result['real_r1'], result['n'])}, chance {result['chance']:.1%}")


def _reconstruction(sketch: TextToSketch, data: SketchSplits) -> dict[str, float]:
    """Held-out reconstruction BCE per sketch and per pixel."""
    bce = heldout_bce(sketch.model, data.test_images[:HELDOUT_BCE_IMAGES],
                      sketch.condition(data.test_captions[:HELDOUT_BCE_IMAGES]))
    return {"heldout_bce": bce, "bce_per_pixel": bce / data.test_images[0].numel()}


@torch.no_grad()
def evaluate_retrieval(sketch: TextToSketch, clip: ClipTextEncoder, data: SketchSplits, *, n: int = 100,
                       seed: int = 0) -> dict:
    """Prompt-following for sketches without classes (zoheb/sketch-scene), judged by retrieval.

    One sketch is drawn for each of `n` distinct held-out captions; our CLIP trained on the sketch captions ranks
    the `n` captions for each sketch, and R@1 is the share whose own caption comes first (chance: 1/n). The same
    ranking of the real held-out sketch of each caption is the judge's own accuracy (`real_r1`), the ceiling.
    """
    first = {}
    for i, text in enumerate(data.test_captions):
        first.setdefault(text, i)
    captions = list(first)[:n]
    if len(captions) < 2:
        raise CourseError(f"{data.source} has {len(captions)} distinct held-out caption(s); retrieval needs two")
    real = data.test_images[[first[c] for c in captions]].float() / 255
    start = time.perf_counter()
    images = sketch.generate(captions, seed=seed)
    ms = 1000 * (time.perf_counter() - start) / len(captions)
    texts = clip.encode(captions).to(clip.device)
    target = torch.arange(len(captions))

    def recall_at_1(ink: torch.Tensor) -> float:
        vectors = clip.model.encode_image(_clip_images(ink.to(clip.device)))
        return float(((vectors @ texts.T).argmax(1).cpu() == target).float().mean())

    return {"retrieval_r1": recall_at_1(images), "real_r1": recall_at_1(real), "chance": 1 / len(captions),
            "n": len(captions), **_reconstruction(sketch, data), "ms_per_sketch": ms, "images": images,
            "captions": captions}


# ------------------------------------------------------------------------------------------ the registry's entries
def _cli_train(cfg: CourseConfig, out: Path, options) -> None:
    sketch = train_sketch_cvae(cfg, out, epochs=options.epochs, resume=options.resume, gif_path=options.gif,
                               text_encoder=options.text_encoder, num_workers=options.workers,
                               persistent_workers=options.workers > 0)
    print(f"trained for {sketch.train_seconds:.0f} s with {sketch.extra['text_encoder']} text embeddings; held-out "
          f"reconstruction BCE {sketch.history[-1]['heldout_bce']:.1f} per sketch; draw with `python -m helpers "
          f"generate --model sketch-cvae --prompt \"a sketch of a cat\"`")


def _evaluate(cfg: CourseConfig, sketch: TextToSketch, options) -> None:
    data = sketch_data(cfg)
    if not data.classes:  # captioned scenes (zoheb/sketch-scene): judged by retrieval with our sketch CLIP
        result = evaluate_retrieval(sketch, load_or_train_sketch_clip(cfg, data), data, seed=options.seed)
        print(retrieval_line(result))
    else:
        judge, judge_accuracy = load_or_train_doodle_judge(cfg, data)
        baseline = pixel_baseline(data)
        result = evaluate_sketches(sketch, judge, data, seed=options.seed, baseline=baseline,
                                   temperature=getattr(options, "temperature", None))
        print(judge_report(judge_accuracy, data, baseline))
        print(class_accuracy_line(result, data, baseline))
        print("per class: " + ", ".join(f"{c} {v:.0%}" for c, v in result["per_class"].items()))
        print(f"within-prompt diversity (pixel cosine distance): {result['diversity']:.2f}, real sketches of the "
              f"same classes {result['real_diversity']:.2f}")
    print(f"held-out reconstruction BCE: {result['heldout_bce']:.1f} per sketch "
          f"({result['bce_per_pixel']:.4f} per pixel)")


def _reconstruct(cfg: CourseConfig, sketch: TextToSketch, options) -> str:
    from helpers.viz import image_grid, save_image

    data = sketch_data(cfg)
    originals = data.test_images[: options.n]
    recon = sketch.reconstruct(originals, data.test_captions[: options.n])
    path = save_image(image_grid(1 - torch.cat([originals.float() / 255, recon]), nrow=options.n, scale=1),
                      Path(options.out or cfg.outputs_dir) / "sketch_reconstructions.png")
    return f"top row: held-out sketches ({data.source}), bottom row: reconstructions -> {path}"


def _measure(cfg: CourseConfig, sketch: TextToSketch, n: int, seed: int) -> dict:
    data = sketch_data(cfg)
    if not data.classes:  # captioned scenes (zoheb/sketch-scene): judged by retrieval with our sketch CLIP
        result = evaluate_retrieval(sketch, load_or_train_sketch_clip(cfg, data), data, n=6 * n, seed=seed)
        return {"metric": f"CLIP retrieval R@1 among {result['n']} held-out captions", "value": result["retrieval_r1"],
                "n": result["n"], "baseline": result["chance"], "baseline_name": "chance",
                "judge": result["real_r1"], "judge_n": result["n"], "ms_per_sample": result["ms_per_sketch"]}
    judge, judge_accuracy = load_or_train_doodle_judge(cfg, data)
    baseline = pixel_baseline(data)
    result = evaluate_sketches(sketch, judge, data, per_class=n, seed=seed, baseline=baseline)
    return {"metric": "judged class accuracy of class prompts", "value": result["class_accuracy"], "n": result["n"],
            "baseline": result["baseline_accuracy"], "baseline_name": baseline.name,
            "judge": judge_accuracy, "judge_n": len(data.test_labels), "ms_per_sample": result["ms_per_sketch"]}


def _cli_train_judge(cfg: CourseConfig, out: Path, options) -> None:
    data = sketch_data(cfg)
    _, accuracy = train_doodle_judge(cfg, data, out=out, epochs=options.epochs, progress=True)
    print(judge_report(accuracy, data, pixel_baseline(data)))


# Training settings of each model in each mode (`cfg.recipe(name)` reads them; see helpers.config.Recipe).
RECIPES: dict[str, dict[str, Recipe]] = {
    # Notebook 08: the text-to-sketch CVAE at 128x128 (width = first conv's channels, latent_dim = z),
    # the CLIP trained on the sketch captions when OpenAI's is not available, and the doodle judge.
    "sketch-cvae": {
        "quick": Recipe(epochs=8, batch_size=32, lr=2e-3, width=8, latent_dim=16, beta=1.0),
        "full": Recipe(epochs=40, batch_size=128, lr=1e-3, width=32, latent_dim=16, beta=2.0, gif_every=2),
    },
    "clip-sketch": {
        "quick": Recipe(epochs=3, batch_size=64, lr=5e-4, width=16, latent_dim=64),
        "full": Recipe(epochs=20, batch_size=256, lr=5e-4, width=32, latent_dim=128),
    },
    "doodle-judge": {
        "quick": Recipe(epochs=3, batch_size=128, lr=2e-3, width=32, latent_dim=0),
        "full": Recipe(epochs=6, batch_size=128, lr=2e-3, width=32, latent_dim=0),
    },
}


KINDS = (
    ModelKind(KIND, "08", "a text-to-sketch CVAE at 128x128 (OpenAI's CLIP or ours as the text encoder)",
              train=_cli_train, load=lambda cfg, run: TextToSketch.from_checkpoint(run, cfg), example="a sketch of a cat",
              read_prompt=check_sketch_prompt,
              generate=lambda sketch, o: Samples(1 - sketch(o.prompt, n=o.n, seed=o.seed,
                                                            temperature=getattr(o, "temperature", None)),
                                                 f"sketch_{slug(o.prompt)}_seed{o.seed}", 1),
              evaluate=_evaluate, reconstruct=_reconstruct, domain="sketches",
              draw=lambda sketch, prompts, seed: 1 - sketch.generate(prompts, seed=seed), measure=_measure,
              writes_gif=True),
    ModelKind(JUDGE, "08", "the doodle classifier that judges generated sketches", train=_cli_train_judge),
)
