"""The face track of notebook 04, above the models and the training loop: training and judging generators.

Dataset-agnostic: every function takes a dataset that yields `(image (3, S, S) in [-1, 1], attrs (40,) 0/1,
index)` and, for the generators, a `condition_fn(trainer, batch) -> c (B, cond_dim)` that decides what
the condition is (attribute vectors, CLIP text embeddings of captions, ...).

- `train_face_cvae`, `train_face_gan`, `train_attribute_judge`: model + Trainer + callbacks for one run.
- What the attribute judge says: `judge_attribute_accuracy`, `prompted_attribute_accuracy` (the metrics
  themselves, shared by every track, are in `helpers.metrics`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from helpers.metrics import balanced_accuracy
from helpers.models.faces import HINGE, AttributeJudge, FaceCVAE, FaceGAN, gan_loss_fn
from helpers.train import Callback, Checkpointing, Evaluate, KLAnnealing, ProgressBar, Trainer

GAN_BETAS = (0.5, 0.999)  # Adam's usual GAN momentum (DCGAN): a high beta1 makes the two-player game oscillate
ConditionFn = Callable[[Trainer, tuple], torch.Tensor]


# ------------------------------------------------------------------------------------------- conditions
def attribute_conditions(attrs: torch.Tensor, drop_fraction: float | torch.Tensor = 0.0,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """0/1 attributes (B, 40) -> conditions in {-1, +1}, with a random `drop_fraction` of entries set to 0.

    Zeroed entries teach the model that 0 means "unspecified", so at sampling time a prompt can fix a few
    attributes (+1 / -1) and leave the rest at 0. `drop_fraction` may be a (B, 1) tensor: one rate per face."""
    cond = attrs.float() * 2 - 1
    if isinstance(drop_fraction, torch.Tensor) or drop_fraction > 0:
        keep = torch.rand(cond.shape, generator=generator) >= torch.as_tensor(drop_fraction).cpu()
        cond = cond * keep.to(cond.device)
    return cond


# --------------------------------------------------------------------------------------------- training
def _fit(model: torch.nn.Module, loss_fn: Callable, dataset: Dataset, *, epochs: int, batch_size: int, lr: float,
         device: torch.device | str, run_dir: str | Path | None, kind: str, callbacks: Iterable[Callback],
         progress: bool, progress_keys: tuple[str, ...], resume: bool, seed: int, extra: dict | None,
         betas: tuple[float, float] | None = None, extra_tensors: dict[str, torch.Tensor] | None = None,
         ) -> tuple[torch.nn.Module, list[dict], float]:
    """Shared by the three trainers: seed, build the Trainer, add checkpoints / progress, fit, time it."""
    torch.manual_seed(seed)  # the loss's own randomness (z, noise, dropped attributes); resume restores it
    callbacks = list(callbacks)
    if run_dir is not None:
        settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
        callbacks.append(Checkpointing(run_dir, kind, resume=resume, extra={**settings, **(extra or {})},
                                       extra_tensors=extra_tensors))
    if progress:
        callbacks.append(ProgressBar(progress_keys))
    trainer = Trainer(model, loss_fn, dataset, epochs=epochs, batch_size=batch_size, lr=lr, device=device,
                      callbacks=callbacks, seed=seed)
    if betas is not None:
        for group in trainer.optimizer.param_groups:
            group["betas"] = betas
    start = time.perf_counter()
    history = trainer.fit()
    return model.eval(), history, time.perf_counter() - start


def train_face_cvae(model: FaceCVAE, dataset: Dataset, *, epochs: int, batch_size: int, lr: float,
                    device: torch.device | str, run_dir: str | Path | None, kind: str, condition_fn: ConditionFn,
                    kl_warmup_epochs: float, callbacks: Iterable[Callback] = (), progress: bool = False,
                    resume: bool = False, seed: int = 0, extra: dict | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> tuple[FaceCVAE, list[dict], float]:
    """Train a FaceCVAE (negative ELBO, KL weight warmed up from 0 to 1); returns (model, history, seconds).

    `run_dir=None` trains without checkpoints; `extra` is stored in the checkpoint's JSON, `extra_tensors`
    in its state file."""

    def loss_fn(trainer: Trainer, batch: tuple) -> dict[str, torch.Tensor]:
        return trainer.model.loss(batch[0], condition_fn(trainer, batch), trainer.kl_weight)

    callbacks = [KLAnnealing(kl_warmup_epochs), *callbacks]
    return _fit(model, loss_fn, dataset, epochs=epochs, batch_size=batch_size, lr=lr, device=device, run_dir=run_dir,
                kind=kind, callbacks=callbacks, progress=progress, progress_keys=("loss", "recon", "kl"),
                resume=resume, seed=seed, extra=extra, extra_tensors=extra_tensors)


def train_face_gan(model: FaceGAN, dataset: Dataset, *, epochs: int, batch_size: int, lr: float,
                   device: torch.device | str, run_dir: str | Path | None, kind: str, condition_fn: ConditionFn,
                   callbacks: Iterable[Callback] = (), progress: bool = False, resume: bool = False, seed: int = 0,
                   loss: str = HINGE, mismatch_weight: float = 0.5, extra: dict | None = None,
                   extra_tensors: dict[str, torch.Tensor] | None = None) -> tuple[FaceGAN, list[dict], float]:
    """Train a FaceGAN with the course's Trainer: one AdamW (betas GAN_BETAS) over both nets, one backward
    pass per step whose loss is d_loss + g_loss (see `helpers.models.faces.gan_losses`)."""
    loss_fn = gan_loss_fn(condition_fn, loss=loss, mismatch_weight=mismatch_weight)
    extra = {"gan_loss": loss, "mismatch_weight": mismatch_weight, **(extra or {})}
    return _fit(model, loss_fn, dataset, epochs=epochs, batch_size=batch_size, lr=lr, device=device, run_dir=run_dir,
                kind=kind, callbacks=callbacks, progress=progress, progress_keys=("d_loss", "g_loss", "d_real", "d_fake"),
                resume=resume, seed=seed, extra=extra, betas=GAN_BETAS, extra_tensors=extra_tensors)


def attribute_rates(dataset: Dataset, max_items: int = 2048) -> torch.Tensor:
    """Fraction of faces showing each attribute (40,), from up to `max_items` evenly spaced items."""
    step = max(1, len(dataset) // max_items)
    attrs = torch.stack([torch.as_tensor(dataset[i][1]).float() for i in range(0, len(dataset), step)])
    return (attrs > 0).float().mean(0)


def train_attribute_judge(model: AttributeJudge, dataset: Dataset, *, epochs: int, batch_size: int, lr: float,
                          device: torch.device | str, run_dir: str | Path | None, kind: str = "attribute-judge",
                          heldout: tuple[torch.Tensor, torch.Tensor] | None = None,
                          callbacks: Iterable[Callback] = (), progress: bool = False, resume: bool = False,
                          seed: int = 0, extra: dict | None = None) -> tuple[AttributeJudge, list[dict], float]:
    """Train the attribute judge on real faces; returns (model, history, seconds).

    Rare attributes (bald: ~2% of faces) would be ignored by a plain cross-entropy, so each attribute's
    positives are weighted by negatives/positives: the loss then cares about both classes equally, which
    is what balanced accuracy measures. Random horizontal flips: no attribute depends on left/right.
    With `heldout=(images, attrs)` every epoch's record gets `heldout_balanced_accuracy` (mean over attributes).
    """
    rates = attribute_rates(dataset).clamp(0.01, 0.99)
    pos_weight = (1 - rates) / rates  # (40,)

    def loss_fn(trainer: Trainer, batch: tuple) -> dict[str, torch.Tensor]:
        images, attrs = batch[0], batch[1]
        flip = torch.rand(images.shape[0]) < 0.5
        images = torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)
        logits = trainer.model(images)
        targets = (attrs > 0).float()
        return {"loss": F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight.to(logits.device))}

    callbacks = list(callbacks)
    if heldout is not None:
        callbacks.append(Evaluate(lambda m: {"heldout_balanced_accuracy":
                                             float(judge_attribute_accuracy(m, *heldout).nanmean())}))
    return _fit(model, loss_fn, dataset, epochs=epochs, batch_size=batch_size, lr=lr, device=device, run_dir=run_dir,
                kind=kind, callbacks=callbacks, progress=progress, progress_keys=("loss",), resume=resume, seed=seed,
                extra=extra)


# ------------------------------------------------------------------------------------ attribute metrics
@torch.no_grad()
def judge_predictions(judge: AttributeJudge, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The judge's yes/no for every attribute of every image: (N, 3, S, S) -> (N, A) bool."""
    device = next(judge.parameters()).device
    judge.eval()
    return torch.cat([judge(images[i:i + batch_size].to(device)).cpu() > 0 for i in range(0, len(images), batch_size)])


def judge_attribute_accuracy(judge: AttributeJudge, images: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
    """Per-attribute balanced accuracy (A,) of the judge on labelled images; attrs 0/1 (or -1/+1)."""
    return balanced_accuracy(judge_predictions(judge, images), attrs.cpu() > 0)


def prompted_attribute_accuracy(judge: AttributeJudge, images: torch.Tensor,
                                wanted: Sequence[Mapping[int, bool] | Iterable[tuple[int, bool]]]) -> float:
    """Fraction of (image, prompted attribute) pairs where the judge sees what the prompt asked for.

    `wanted[i]` lists what image i was asked to show: {attribute_index: True/False} or (index, value) pairs,
    e.g. {31: True, 15: False} for "smiling, no eyeglasses". NaN when no attribute was prompted."""
    if len(wanted) != len(images):
        raise ValueError(f"got {len(images)} images but {len(wanted)} prompt specifications")
    predictions = judge_predictions(judge, images)  # (N, A)
    agree, total = 0, 0
    for row, spec in enumerate(wanted):
        for attribute, value in (spec.items() if isinstance(spec, Mapping) else spec):
            agree += int(bool(predictions[row, int(attribute)]) == bool(value))
            total += 1
    return agree / total if total else float("nan")
