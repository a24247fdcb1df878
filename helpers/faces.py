"""Faces from prompts (notebook 04): what conditions a generator, training one from its recipe, judging it.

    prompt --read_prompt--> wanted attributes {name: present?}
           --condition----> c (1, cond_dim): the 40 attributes (+1 / -1, 0 = unspecified)
                                             or our CLIP's embedding of the prompt
           --FaceCVAE / FaceGAN--> faces (n, 3, 64, 64) in [-1, 1]
    faces --AttributeJudge--> which attributes they show --> prompted-attribute accuracy

The networks are in helpers/models/faces.py, the training and metric functions in helpers/facegen.py; this
module ties them to the course's config, data, CLIP, checkpoints and CLI.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Mapping, Sequence

import torch

from helpers.checkpoint import has_checkpoint, load_or_train, read_checkpoint, record_run, recorded_run
from helpers.clip import ClipTextEncoder, face_data, load_or_train_clip
from helpers.config import CourseConfig, Recipe, seed_everything
from helpers.data.captions import FACE_EXAMPLE, captions_for, describe_vocabulary, parse_prompt, prompt_for
from helpers.data.celeba import ATTRIBUTES, FaceSplits, to_float
from helpers.errors import CourseError
from helpers.text.prompts import check_prompt
from helpers.facegen import (ConditionFn, attribute_conditions, judge_attribute_accuracy, judge_predictions,
                             prompted_attribute_accuracy, train_attribute_judge, train_face_cvae, train_face_gan)
from helpers.metrics import (diversity, format_accuracy, frechet_distance, frequency_baseline,
                             kernel_inception_distance, majority_accuracy, standard_fid)
from helpers.models.faces import AttributeJudge, AttributeJudgeConfig, FaceCVAE, FaceCVAEConfig, FaceGAN, FaceGANConfig
from helpers.registry import ModelKind, Samples, slug
from helpers.train import GifFrames, TrainedModel, WallClock
from helpers.viz import labelled_grid

MODELS = ("celeba-cvae", "celeba-gan")
CONDITIONS = ("attributes", "clip")
JUDGE = "face-judge"
CAPTIONS_PER_FACE = 4  # CLIP-conditioned training: each face gets one of this many pre-encoded captions
JUDGE_MIN = 0.8  # prompted-attribute accuracy only counts attributes the judge itself gets this right on real faces
# The same prompts for every model: the grids, the GIFs and the per-prompt accuracies.
GRID_PROMPTS = (
    "a smiling woman with blond hair",
    "a man with eyeglasses",
    "a man with black hair and a beard",
    "a woman with black hair, not smiling",
    "an older man with gray hair",
    "a person wearing a hat",
)
GIF_SEEDS = 4


def run_name(model: str, condition: str = "attributes") -> str:
    """Run folder name: runs/celeba-cvae (attribute-conditioned), runs/celeba-cvae-clip (CLIP-conditioned)."""
    if model not in MODELS:
        raise CourseError(f"unknown face model {model!r}; choose one of {', '.join(MODELS)}")
    if condition not in CONDITIONS:
        raise CourseError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    return model if condition == "attributes" else f"{model}-clip"


def figures_dir(cfg: CourseConfig, data: FaceSplits) -> Path:
    """Where figures of this data go (see CourseConfig.figures_for): never the repo for COURSE_DATA's sample."""
    return cfg.figures_for(data.source)


# ------------------------------------------------------------------------------------------ prompts
def read_prompt(prompt: str) -> dict[str, bool]:
    """The attributes a prompt asks for, or a one-line CourseError saying what to write instead."""
    check_prompt(prompt, FACE_EXAMPLE)
    wanted = parse_prompt(prompt)  # ContradictoryPrompt ("a man who is a woman") is a CourseError
    if not wanted:
        raise CourseError(f"{prompt.strip()!r} names no face attribute these models know; {describe_vocabulary()}")
    return wanted


# ------------------------------------------------------------------------------------------ conditions
class AttributeCondition:
    """c = the 40 attributes as +1 (present) and -1 (absent): a complete description of a face.

    A CVAE whose condition leaves attributes out learns to carry them in z instead, and then reads z, not c
    (we tried: training with a random half of the attributes blanked gave faces that ignore the prompt).
    So training shows full attribute vectors (with `DROP` of the entries blanked to 0, for robustness), and
    a prompt that names two attributes is *completed* from the data: the other 38 are copied from a random
    training face that has the two asked for — a draw from p(other attributes | prompt) that needs no model.
    """

    name = "attributes"
    dim = len(ATTRIBUTES)
    DROP = 0.1

    def __init__(self, bank: torch.Tensor | None = None):
        self.bank = bank  # (M, 40) uint8 0/1: attribute rows of training faces, for completing prompts

    def training_fn(self, data: FaceSplits, seed: int) -> ConditionFn:
        self.bank = data.train_attrs.to(torch.uint8).clone()

        def condition_fn(trainer, batch) -> torch.Tensor:
            return attribute_conditions(batch[1], self.DROP)  # (B, 40) in {-1, +1}, a few 0

        return condition_fn

    def complete(self, spec: Mapping[str, bool], generator: torch.Generator) -> torch.Tensor:
        """One full (40,) condition: a random training face's attributes among those that agree with the most
        of `spec` (all of it, unless no face has that combination), then `spec` itself on top."""
        if self.bank is None:
            raise CourseError("this attribute condition has no attribute table to complete prompts from; train it first")
        columns = [ATTRIBUTES.index(name) for name in spec]
        values = torch.tensor([bool(v) for v in spec.values()], dtype=torch.bool)
        agree = (self.bank[:, columns].bool() == values).sum(1)  # (M,)
        candidates = torch.nonzero(agree == agree.max()).squeeze(1)
        row = self.bank[candidates[torch.randint(len(candidates), (1,), generator=generator)]][0].float() * 2 - 1
        row[columns] = values.float() * 2 - 1
        return row

    def from_wanted(self, wanted: Sequence[Mapping[str, bool]], seed: int = 0) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.stack([self.complete(spec, generator) for spec in wanted]) if wanted else torch.zeros(0, self.dim)

    def from_prompts(self, prompts: Sequence[str], seed: int = 0) -> torch.Tensor:
        return self.from_wanted([parse_prompt(p) for p in prompts], seed)

    def state(self) -> dict[str, torch.Tensor]:
        return {"attribute_bank": self.bank}


class ClipCondition:
    """c = our CLIP's embedding of a caption, centred on the captions' mean and scaled to unit variance per
    dimension (a unit vector in 128-d has entries of about 0.09: too small for the conditioning layers).

    Training pairs each face with one of `CAPTIONS_PER_FACE` random captions encoded once up front: the
    frozen CLIP would give the same vectors every epoch, so encoding them per step would only cost time."""

    name = "clip"

    def __init__(self, encoder: ClipTextEncoder, mean: torch.Tensor | None = None):
        self.encoder, self.mean = encoder, mean
        self.dim = encoder.dim

    def _scale(self, embeddings: torch.Tensor) -> torch.Tensor:
        return (embeddings - self.mean) * math.sqrt(self.dim)

    def training_fn(self, data: FaceSplits, seed: int) -> ConditionFn:
        texts = captions_for(data.train_attrs, seed, per_image=CAPTIONS_PER_FACE)  # N lists of K captions
        flat = self.encoder.encode([text for row in texts for text in row])  # (N*K, D) unit vectors
        self.mean = flat.mean(0)
        bank = self._scale(flat).view(len(texts), CAPTIONS_PER_FACE, self.dim)  # (N, K, D)

        def condition_fn(trainer, batch) -> torch.Tensor:
            index = batch[2].cpu()
            pick = torch.randint(CAPTIONS_PER_FACE, (len(index),))
            return bank[index, pick].to(batch[0].device)  # (B, D)

        return condition_fn

    def from_prompts(self, prompts: Sequence[str], seed: int = 0) -> torch.Tensor:
        unique = list(dict.fromkeys(prompts))  # n samples of one prompt: encode it once
        vectors = self._scale(self.encoder.encode(unique))
        return vectors[[unique.index(p) for p in prompts]] if prompts else vectors

    def from_wanted(self, wanted: Sequence[Mapping[str, bool]], seed: int = 0) -> torch.Tensor:
        return self.from_prompts([prompt_for(dict(spec)) for spec in wanted])

    def state(self) -> dict[str, torch.Tensor]:
        return {"clip_mean": self.mean}


# ------------------------------------------------------------------------------------------ generator
class PromptToFace(TrainedModel):
    """A trained face generator and its condition: prompt -> faces."""

    def __init__(self, model: FaceCVAE | FaceGAN, condition: AttributeCondition | ClipCondition, name: str,
                 history: list[dict] | None = None):
        self.model, self.condition, self.name = model.eval(), condition, name
        self.history = history or []

    def read(self, prompt: str) -> dict[str, bool]:
        wanted = read_prompt(prompt)
        if isinstance(self.condition, ClipCondition):
            self.condition.encoder.check_prompt(prompt)  # warns about words the CLIP never saw
        return wanted

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
        """One face per condition row, (B, 3, S, S) in [-1, 1] on the CPU; the same seed gives the same faces."""
        generator = torch.Generator().manual_seed(seed)
        device = next(self.model.parameters()).device
        self.model.eval()
        return torch.cat([self.model.sample(cond[i:i + batch_size].to(device), generator=generator).cpu()
                          for i in range(0, len(cond), batch_size)])

    def __call__(self, prompt: str, n: int = 8, seed: int = 0) -> tuple[torch.Tensor, dict[str, bool]]:
        """(n, 3, S, S) faces in [-1, 1] for `prompt`, and the attributes it was read as."""
        if not 1 <= n <= 1024:
            raise CourseError(f"n must be between 1 and 1024, got {n}")
        wanted = self.read(prompt)
        return self.sample(self.condition.from_prompts([prompt] * n, seed), seed), wanted

    def for_wanted(self, wanted: Mapping[str, bool], n: int = 8, seed: int = 0) -> torch.Tensor:
        """Faces for attributes chosen directly (the widget's toggles) instead of a prompt."""
        if not wanted:
            raise CourseError("no attribute chosen: set at least one toggle to yes or no, or type a prompt")
        return self.sample(self.condition.from_wanted([dict(wanted)] * n, seed), seed)

    @classmethod
    def from_checkpoint(cls, run_dir: str | Path, cfg: CourseConfig, clip: ClipTextEncoder | None = None) -> "PromptToFace":
        """Load a trained generator; a CLIP-conditioned one also needs the CLIP it was trained with."""
        run_dir = Path(run_dir)
        if not has_checkpoint(run_dir):
            raise CourseError(f"no checkpoint in {run_dir}: train one first with "
                              f"`python -m helpers train celeba-cvae|celeba-gan [--condition clip] --out {run_dir}`")
        checkpoint = read_checkpoint(run_dir)
        if checkpoint.kind not in MODELS:
            raise CourseError(f"{run_dir} holds a '{checkpoint.kind}' checkpoint, not a face generator "
                              f"({', '.join(MODELS)})")
        extra = checkpoint.index["extra"]
        model = checkpoint.rebuild(FaceCVAE if checkpoint.kind == "celeba-cvae" else FaceGAN).to(cfg.device)
        key = "clip_mean" if extra.get("condition") == "clip" else "attribute_bank"
        if key not in checkpoint.state:
            raise CourseError(f"{run_dir} lacks the condition's {key} (written by an older version); retrain it with "
                              f"`python -m helpers train {checkpoint.kind} --out {run_dir}`")
        if key == "clip_mean":
            condition = ClipCondition(clip or _recorded_clip(extra, cfg), checkpoint.state[key])
        else:
            condition = AttributeCondition(checkpoint.state[key])
        return cls(model, condition, run_name(checkpoint.kind, condition.name), extra.get("history", []))


def _recorded_clip(extra: dict, cfg: CourseConfig) -> ClipTextEncoder:
    """The CLIP a generator was trained with, refusing a different one (its embeddings would mean nothing)."""
    clip_dir = recorded_run(extra, "clip", "clip", "python -m helpers train celeba-cvae --condition clip")
    return ClipTextEncoder.from_checkpoint(clip_dir, cfg.device)


# ------------------------------------------------------------------------------------------ training
def _gif_render(condition):
    prompts = [p for p in GRID_PROMPTS for _ in range(GIF_SEEDS)]  # prompt-major: one row per prompt
    cond = condition.from_prompts(prompts)
    labels = [p.replace("a ", "", 1) for p in GRID_PROMPTS]

    def render(model) -> torch.Tensor:
        device = next(model.parameters()).device
        images = model.sample(cond.to(device), generator=torch.Generator().manual_seed(1234)).cpu()
        return labelled_grid((images + 1) / 2, labels, ncol=GIF_SEEDS, scale=2)

    return render


def train_faces(cfg: CourseConfig, model: str = "celeba-cvae", condition: str = "attributes",
                out: str | Path | None = None, *, epochs: int | None = None, resume: bool = False,
                progress: bool = True, gif_path: str | Path | None = None, data: FaceSplits | None = None,
                clip: ClipTextEncoder | None = None, clip_dir: str | Path | None = None) -> PromptToFace:
    """Train a face generator of notebook 04 into `out` (default runs/<run_name>) with its mode's recipe.

    Both generators get the same recipe's epochs and batch size (the same data and budget); the GIF shows
    `GRID_PROMPTS` x `GIF_SEEDS` faces after every epoch. A CLIP-conditioned model uses `clip` (default:
    the CLIP of notebook 03 in runs/clip, trained now if missing) and records which one in its checkpoint.
    """
    name = run_name(model, condition)
    recipe = cfg.recipe(model, epochs=epochs)
    out = Path(out or cfg.run_dir(name))
    data = data or face_data(cfg)
    extra = {"mode": cfg.mode, "recipe": asdict(recipe), "data": data.source, "condition": condition}
    if condition == "clip":
        clip_dir = Path(clip_dir or cfg.run_dir("clip"))
        clip = clip or load_or_train_clip(cfg, clip_dir)
        if not has_checkpoint(clip_dir):
            raise CourseError(f"the CLIP passed in is not saved in {clip_dir}; pass clip_dir= where it was saved")
        extra.update(record_run(clip_dir, "clip", "clip"))
        cond = ClipCondition(clip)
    else:
        cond = AttributeCondition()
    seed_everything(cfg.seed)
    condition_fn = cond.training_fn(data, cfg.seed)  # sets what `cond.state()` saves with the weights
    if model == "celeba-cvae":
        net = FaceCVAE(FaceCVAEConfig(image_size=data.image_size, cond_dim=cond.dim, latent_dim=recipe.latent_dim,
                                      width=recipe.width))
    else:
        net = FaceGAN(FaceGANConfig(image_size=data.image_size, cond_dim=cond.dim, noise_dim=recipe.latent_dim,
                                    width=recipe.width))
    gif_path = Path(gif_path) if gif_path else out / "training.gif"
    callbacks = [WallClock(), GifFrames(_gif_render(cond), out / "frames", gif_path, every=recipe.gif_every)]
    common = dict(epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, device=cfg.device, run_dir=out,
                  kind=model, condition_fn=condition_fn, callbacks=callbacks, progress=progress, resume=resume,
                  seed=cfg.seed, extra=extra, extra_tensors=cond.state())
    if model == "celeba-cvae":
        net, history, _ = train_face_cvae(net, data.train_set(), kl_warmup_epochs=recipe.kl_warmup_epochs, **common)
    else:
        net, history, _ = train_face_gan(net, data.train_set(), **common)
    return PromptToFace(net, cond, name, history)


# ------------------------------------------------------------------------------------------ judge
def train_face_judge(cfg: CourseConfig, out: str | Path | None = None, *, epochs: int | None = None,
                     data: FaceSplits | None = None, progress: bool = False) -> tuple[AttributeJudge, dict[str, float]]:
    """Train the attribute judge on real faces; returns it and its held-out balanced accuracy per attribute."""
    recipe = cfg.recipe(JUDGE, epochs=epochs)
    out = Path(out or cfg.run_dir(JUDGE))
    data = data or face_data(cfg)
    heldout = to_float(data.test_images), data.test_attrs
    seed_everything(cfg.seed)
    judge = AttributeJudge(AttributeJudgeConfig(image_size=data.image_size, width=recipe.width))
    judge, history, _ = train_attribute_judge(
        judge, data.train_set(), epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, device=cfg.device,
        run_dir=out, kind=JUDGE, heldout=heldout, progress=progress, seed=cfg.seed,
        extra={"mode": cfg.mode, "recipe": asdict(recipe), "data": data.source})
    accuracy = judge_attribute_accuracy(judge, *heldout)
    return judge, dict(zip(ATTRIBUTES, accuracy.tolist()))


def load_or_train_face_judge(cfg: CourseConfig, data: FaceSplits | None = None, run_dir: str | Path | None = None,
                             progress: bool = False) -> tuple[AttributeJudge, dict[str, float]]:
    """The judge trained on this mode's faces if there is one, else train it now (quick mode: ~15 s)."""
    run_dir = Path(run_dir or cfg.run_dir(JUDGE))
    data = data or face_data(cfg)

    def load(folder: Path) -> tuple[AttributeJudge, dict[str, float]]:
        checkpoint = read_checkpoint(folder, JUDGE)
        judge = checkpoint.rebuild(AttributeJudge).to(cfg.device)
        accuracy = judge_attribute_accuracy(judge, to_float(data.test_images), data.test_attrs)
        return judge, dict(zip(ATTRIBUTES, accuracy.tolist()))

    return load_or_train(run_dir, JUDGE, mode=cfg.mode, source=data.source, load=load,
                         train=lambda: train_face_judge(cfg, run_dir, data=data, progress=progress))


def reliable(judge_accuracy: Mapping[str, float], threshold: float = JUDGE_MIN) -> list[str]:
    """Attributes the judge recognises on real held-out faces with balanced accuracy >= threshold."""
    return [name for name in ATTRIBUTES if judge_accuracy.get(name, 0.0) >= threshold]


def judge_report(judge: AttributeJudge, judge_accuracy: Mapping[str, float], data: FaceSplits) -> str:
    """The judge's line with its trivial baseline: its plain and balanced accuracy on the attributes it is trusted
    on, over the held-out faces, beside always answering each attribute's commoner value (the attribute
    frequencies of the training faces: high plain accuracy for rare attributes, balanced accuracy 0.5)."""
    trusted = reliable(judge_accuracy)
    if not trusted:
        return (f"judge: no attribute reaches balanced accuracy {JUDGE_MIN} on the {len(data.test_attrs):,} "
                "held-out faces")
    index = [ATTRIBUTES.index(name) for name in trusted]
    truth = data.test_attrs[:, index] > 0  # (N, T)
    plain = float((judge_predictions(judge, to_float(data.test_images))[:, index] == truth).float().mean())
    majority = float(majority_accuracy(data.train_attrs[:, index], data.test_attrs[:, index]).mean())
    balanced = sum(judge_accuracy[name] for name in trusted) / len(trusted)
    return (f"judge on {len(truth):,} held-out faces, the {len(trusted)} attributes it is trusted on: "
            f"plain accuracy {plain:.1%}, balanced {balanced:.3f}; always answering each attribute's commoner value "
            f"(the attribute frequencies): plain {majority:.1%}, balanced 0.500")


def attribute_specs(prompts: Sequence[str] | Sequence[Mapping[str, bool]], judged: Sequence[str]
                    ) -> list[dict[int, bool]]:
    """Prompts (or parsed prompts) -> {attribute index: asked value} over the `judged` attributes."""
    parsed = [parse_prompt(p) if isinstance(p, str) else p for p in prompts]
    return [{ATTRIBUTES.index(name): value for name, value in spec.items() if name in judged} for spec in parsed]


def prompted_accuracy(judge: AttributeJudge, images: torch.Tensor, wanted: Sequence[Mapping[str, bool]],
                      judged: Sequence[str]) -> tuple[float, int]:
    """Share of (face, asked-for attribute) pairs where the judge sees what was asked, counting only the
    `judged` attributes; returns (accuracy, number of pairs). NaN when nothing judgeable was asked."""
    specs = attribute_specs(wanted, judged)
    return prompted_attribute_accuracy(judge, images, specs), sum(len(spec) for spec in specs)


# ------------------------------------------------------------------------------------------ single-attribute prompts
# Attributes a single-attribute prompt asks for (those a 64x64 face shows; the judge must also read them
# reliably on real faces for a prompt to count, see `reliable`). Every face generator (04, 07) is measured on them.
SINGLE_ATTRIBUTES = ("Smiling", "Eyeglasses", "Blond_Hair", "Black_Hair", "Gray_Hair", "Wearing_Hat", "Bald",
                     "Mustache", "Wearing_Lipstick", "Bangs")


def single_attribute_prompts(judged: Sequence[str]) -> dict[str, dict[str, bool]]:
    """"a photo of a smiling person" -> {Smiling: True}, one per attribute the judge reads reliably,
    plus "a photo of a man" / "a photo of a woman" when it reads Male."""
    wanted = [{name: True} for name in SINGLE_ATTRIBUTES if name in judged]
    if "Male" in judged:
        wanted = [{"Male": True}, {"Male": False}] + wanted
    return {prompt_for(spec): spec for spec in wanted}


def single_attribute_accuracy(draw, judge, judged: Sequence[str], *, per_prompt: int = 16) -> dict:
    """Prompted-attribute accuracy on single-attribute prompts for any face generator: `draw(texts)` returns one
    face in [-1, 1] per prompt; the result is the share of faces the judge reads as showing what the prompt asked
    for (per prompt and the mean over prompts), and the drawing time."""
    prompts = single_attribute_prompts(judged)
    if not prompts:
        raise CourseError("the judge reads none of the prompted attributes reliably; train it longer "
                          "(`python -m helpers train face-judge`)")
    texts = [p for p in prompts for _ in range(per_prompt)]
    start = time.perf_counter()
    images = draw(texts)
    seconds = time.perf_counter() - start
    per = {}
    for i, (prompt, spec) in enumerate(prompts.items()):
        per[prompt] = prompted_accuracy(judge, images[i * per_prompt:(i + 1) * per_prompt], [spec] * per_prompt,
                                        judged)[0]
    return {"attribute_accuracy": sum(per.values()) / len(per), "per_prompt": per, "n": len(texts),
            "ms_per_image": 1000 * seconds / len(texts), "images": images}


# ------------------------------------------------------------------------------------------ comparison
def heldout_captions(data: FaceSplits, seed: int = 0, limit: int | None = None) -> list[str]:
    """One random caption per held-out face: the prompts of the comparison (they say 2-5 attributes each)."""
    attrs = data.test_attrs[:limit] if limit else data.test_attrs
    return captions_for(attrs, seed=seed + 7919)


def real_reference(judge: AttributeJudge, judge_accuracy: Mapping[str, float], clip: ClipTextEncoder,
                   data: FaceSplits, seed: int = 0, limit: int | None = None) -> dict:
    """The same measurements on real faces: what a perfect generator would score."""
    captions = heldout_captions(data, seed, limit)
    real = to_float(data.test_images[: len(captions)])
    accuracy, pairs = prompted_accuracy(judge, real, [parse_prompt(c) for c in captions], reliable(judge_accuracy))
    test_features = clip.image_features(real)
    train_features = clip.image_features(data.train_images[: len(captions)])
    return {"prompted_accuracy": accuracy, "judged_pairs": pairs,
            "fid_clip": frechet_distance(train_features, test_features),
            "kid_clip": kernel_inception_distance(train_features, test_features)[0],
            "diversity": diversity(test_features)}


PROMPT_IGNORED = "prompt ignored (attribute frequencies)"


def frequency_reference(data: FaceSplits, judge_accuracy: Mapping[str, float], seed: int = 0,
                        limit: int | None = None) -> dict:
    """The trivial baseline row of the table: what a generator that ignores the prompt and draws faces as often
    blond, smiling ... as the training faces are would score on the same held-out captions and grid prompts (the
    attribute frequencies, read without a judge)."""
    judged = reliable(judge_accuracy)
    return {"prompted_accuracy": frequency_baseline(data.train_attrs, attribute_specs(
                heldout_captions(data, seed, limit), judged)),
            "grid_accuracy": frequency_baseline(data.train_attrs, attribute_specs(GRID_PROMPTS, judged))}


def evaluate_faces(face: PromptToFace, judge: AttributeJudge, judge_accuracy: Mapping[str, float],
                   clip: ClipTextEncoder, data: FaceSplits, *, seed: int = 0, limit: int | None = None,
                   per_prompt: int = 16, inception: bool = False) -> dict:
    """Every number of notebook 04's table for one generator.

    - prompted_accuracy: faces generated from held-out captions, judged on the attributes each caption asks
      for (only attributes the judge itself recognises on real faces, see `reliable`);
    - grid_accuracy / within_prompt_diversity: the same on `GRID_PROMPTS` x `per_prompt` faces;
    - fid_clip, kid_clip: generated vs real held-out faces in our CLIP's image-feature space;
    - diversity: mean cosine distance between generated faces (real faces: see `real_reference`);
    - inception_fid when `inception` and the FID-Inception network can be had (else the reason it was skipped);
    - train_seconds, parameters, sample_ms (per face, batch of 256).
    """
    judged = reliable(judge_accuracy)
    captions = heldout_captions(data, seed, limit)
    cond = face.condition.from_prompts(captions, seed)
    start = time.perf_counter()
    fake = face.sample(cond, seed)
    sample_ms = 1000 * (time.perf_counter() - start) / len(fake)
    accuracy, pairs = prompted_accuracy(judge, fake, [parse_prompt(c) for c in captions], judged)
    fake_features = clip.image_features(fake)
    real = to_float(data.test_images[: len(captions)])
    real_features = clip.image_features(real)
    grid_prompts = [p for p in GRID_PROMPTS for _ in range(per_prompt)]
    grid = face.sample(face.condition.from_prompts(grid_prompts, seed + 1), seed + 1)
    grid_accuracy, grid_pairs = prompted_accuracy(judge, grid, [parse_prompt(p) for p in grid_prompts], judged)
    grid_features = clip.image_features(grid).view(len(GRID_PROMPTS), per_prompt, -1)
    result = {
        "prompted_accuracy": accuracy, "judged_pairs": pairs, "grid_accuracy": grid_accuracy, "grid_pairs": grid_pairs,
        "fid_clip": frechet_distance(fake_features, real_features),
        "kid_clip": kernel_inception_distance(fake_features, real_features)[0],
        "diversity": diversity(fake_features),
        "within_prompt_diversity": sum(diversity(f) for f in grid_features) / len(GRID_PROMPTS),
        "train_seconds": face.train_seconds, "parameters": face.parameters, "sample_ms": sample_ms,
    }
    if inception:
        try:
            result["inception_fid"] = standard_fid(fake, real, judge_device(judge))
            result["inception_n"] = len(fake)
        except CourseError as error:
            result["inception_fid"] = float("nan")
            result["inception_skipped"] = str(error)
    return result


def judge_device(judge: AttributeJudge) -> torch.device:
    return next(judge.parameters()).device


# The judged accuracies among the columns, and the count of (face, attribute) pairs each was measured on: a row
# with the count shows it and the 95% interval (`format_accuracy`); a row without (the frequency baseline) does not.
ACCURACY_COUNTS = {"prompted_accuracy": "judged_pairs", "grid_accuracy": "grid_pairs"}
TABLE_COLUMNS = (("prompted_accuracy", "prompted attr. acc.", "{:.1%}"), ("grid_accuracy", "grid prompts acc.", "{:.1%}"),
                 ("fid_clip", "FID (our CLIP)", "{:.2f}"), ("kid_clip", "KID (our CLIP)", "{:.4f}"),
                 ("diversity", "diversity", "{:.3f}"), ("within_prompt_diversity", "within-prompt div.", "{:.3f}"),
                 ("train_seconds", "train s", "{:.0f}"), ("parameters", "params", "{:,}"))


def comparison_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table, one row per model (a value a row lacks shows as "–")."""
    header = "| model | " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |"
    lines = [header, "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
    for name, row in rows.items():
        cells = []
        for key, _, fmt in TABLE_COLUMNS:
            value, count = row.get(key), row.get(ACCURACY_COUNTS.get(key, ""))
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("–")
            else:
                cells.append(format_accuracy(value, count) if count is not None else fmt.format(value))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def prompt_grid(faces: Mapping[str, PromptToFace], prompts: Sequence[str] = GRID_PROMPTS, n: int = 6,
                seed: int = 0) -> torch.Tensor:
    """One labelled block per model, the same prompts and seeds for all: a (3, H, W) image in [0, 1]."""
    blocks = []
    for name, face in faces.items():
        images = torch.cat([face(prompt, n=n, seed=seed)[0] for prompt in prompts])
        blocks.append(labelled_grid((images + 1) / 2, [f"{name}: {p}" for p in prompts], ncol=n, scale=2))
    width = max(b.shape[2] for b in blocks)
    return torch.cat([torch.nn.functional.pad(b, (0, width - b.shape[2]), value=1.0) for b in blocks], dim=1)


# ------------------------------------------------------------------------------------------ the registry's entries
def _cli_train_face(model: str):
    def train(cfg: CourseConfig, out: Path, options) -> None:
        face = train_faces(cfg, model, options.condition, out, epochs=options.epochs, resume=options.resume,
                           gif_path=options.gif)
        print(f"trained {face.name} for {face.train_seconds:.0f} s; measure it with "
              f"`python -m helpers evaluate --model {model} --condition {options.condition}`")

    return train


def _generate_faces(face: PromptToFace, options) -> Samples:
    images, wanted = face(options.prompt, n=options.n, seed=options.seed)
    note = f"read {options.prompt!r} as: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in wanted.items())
    return Samples((images + 1) / 2, f"{face.name}_{slug(options.prompt)}_seed{options.seed}", 2, note)


def _evaluate_faces(cfg: CourseConfig, face: PromptToFace, options) -> None:
    from helpers.clip import load_clip

    data = face_data(cfg)
    clip = face.condition.encoder if face.condition.name == "clip" else load_clip(cfg)
    judge, accuracy = load_or_train_face_judge(cfg, data)
    print(f"judge trusted on the attributes it reads with held-out balanced accuracy >= {JUDGE_MIN}: "
          f"{', '.join(reliable(accuracy)) or 'none'}")
    print(judge_report(judge, accuracy, data))
    rows = {"real held-out faces": real_reference(judge, accuracy, clip, data, seed=cfg.seed),
            PROMPT_IGNORED: frequency_reference(data, accuracy, seed=cfg.seed),
            face.name: evaluate_faces(face, judge, accuracy, clip, data, seed=cfg.seed, inception=not cfg.quick)}
    print(comparison_table(rows))
    if cfg.quick:
        print("standard FID skipped: quick mode reports FID on CLIP's features; full mode adds the papers' FID")
    elif "inception_skipped" in rows[face.name]:
        print(f"standard FID skipped: {rows[face.name]['inception_skipped']}")
    else:
        print(f"standard FID (the papers' FID-Inception network, {rows[face.name]['inception_n']} faces): "
              f"{rows[face.name]['inception_fid']:.2f}")


def measure_single_attributes(cfg: CourseConfig, draw, n: int) -> dict:
    """Notebook 09's number for any face generator: prompted-attribute accuracy of single-attribute prompts.
    `draw(texts)` returns one face in [-1, 1] per prompt."""
    data = face_data(cfg)
    judge, accuracy = load_or_train_face_judge(cfg, data)
    judged = reliable(accuracy)
    result = single_attribute_accuracy(draw, judge, judged, per_prompt=n)
    ignored = frequency_baseline(data.train_attrs, attribute_specs(list(single_attribute_prompts(judged).values()),
                                                                    judged))
    return {"metric": "prompted-attribute accuracy, single-attribute prompts", "value": result["attribute_accuracy"],
            "n": result["n"], "baseline": ignored, "baseline_name": PROMPT_IGNORED,
            "judge": sum(accuracy[a] for a in judged) / len(judged), "ms_per_sample": result["ms_per_image"]}


def _face_kind(model: str, summary: str) -> ModelKind:
    return ModelKind(
        model, "04", summary, train=_cli_train_face(model),
        load=lambda cfg, run: PromptToFace.from_checkpoint(run, cfg), example="a smiling man with eyeglasses",
        read_prompt=read_prompt,
        generate=_generate_faces, evaluate=_evaluate_faces, domain="faces",
        draw=lambda face, prompts, seed: torch.cat([face(p, n=1, seed=seed)[0] for p in prompts]).add(1).div(2),
        measure=lambda cfg, face, n, seed: measure_single_attributes(
            cfg, lambda texts: face.sample(face.condition.from_prompts(texts, seed), seed), n),
        variants=((model, ""), (f"{model}-clip", " --condition clip")),
        run_name=lambda options: run_name(model, options.condition), writes_gif=True)


def _cli_train_face_judge(cfg: CourseConfig, out: Path, options) -> None:
    _, accuracy = train_face_judge(cfg, out, epochs=options.epochs, progress=True)
    print(f"held-out balanced accuracy, mean of 40 attributes: {sum(accuracy.values()) / len(accuracy):.3f}; "
          f"reliable (>= {JUDGE_MIN}): {', '.join(reliable(accuracy)) or 'none'}")


# Training settings of each model in each mode (`cfg.recipe(name)` reads them; see helpers.config.Recipe).
RECIPES: dict[str, dict[str, Recipe]] = {
    # Notebook 04: both face generators get the same epochs and batch size (same data, same budget);
    # width = channels of the first stage, latent_dim = z of the CVAE / noise of the GAN.
    "celeba-cvae": {
        "quick": Recipe(epochs=3, batch_size=64, lr=2e-3, width=16, latent_dim=16, kl_warmup_epochs=1),
        "full": Recipe(epochs=40, batch_size=128, lr=1e-3, width=32, latent_dim=32, kl_warmup_epochs=2, gif_every=2),
    },
    "celeba-gan": {
        "quick": Recipe(epochs=3, batch_size=64, lr=2e-4, width=16, latent_dim=100),
        "full": Recipe(epochs=40, batch_size=128, lr=2e-4, width=64, latent_dim=100, gif_every=2),
    },
    "face-judge": {  # the attribute classifier that grades generated faces
        "quick": Recipe(epochs=2, batch_size=64, lr=2e-3, width=16, latent_dim=0),
        "full": Recipe(epochs=5, batch_size=128, lr=1e-3, width=32, latent_dim=0),
    },
}


KINDS = (
    _face_kind("celeba-cvae", "a conditional VAE of faces, prompted by attributes or by our CLIP's text embedding"),
    _face_kind("celeba-gan", "a conditional GAN (hinge loss) of faces, prompted the same two ways"),
    ModelKind(JUDGE, "04", "the attribute classifier that judges generated faces", train=_cli_train_face_judge),
)
