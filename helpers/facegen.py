"""The face track of notebook 04, above the models and the training loop: training and judging generators.

Dataset-agnostic: every function takes a dataset that yields `(image (3, S, S) in [-1, 1], attrs (40,) 0/1,
index)` and, for the generators, a `condition_fn(trainer, batch) -> c (B, cond_dim)` that decides what
the condition is (attribute vectors, CLIP text embeddings of captions, ...).

- `train_face_cvae`, `train_face_gan`, `train_attribute_judge`: model + Trainer + callbacks for one run.
- Attribute metrics: `balanced_accuracy`, `judge_attribute_accuracy`, `prompted_attribute_accuracy`.
- Distribution metrics on image features from any encoder: `frechet_distance` (FID when the features are
  Inception's), `kernel_inception_distance` (KID), `diversity`; `standard_fid` is the FID of the papers
  (torchmetrics, FID-Inception weights) when those weights can be downloaded.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from helpers.errors import CourseError
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


def attribute_condition_fn(drop_fraction: float = 0.25) -> ConditionFn:
    """A `condition_fn` for the trainers: the batch's attributes as +-1 with `drop_fraction` zeroed."""

    def condition_fn(trainer: Trainer, batch: tuple) -> torch.Tensor:
        return attribute_conditions(batch[1], drop_fraction)

    return condition_fn


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
def balanced_accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per column of (N, A) booleans: (true-positive rate + true-negative rate) / 2, shape (A,).

    Unlike plain accuracy it is 0.5 for a judge that always answers "no" to a rare attribute. A column
    where the targets hold only one class has no balanced accuracy: it is NaN (use torch.nanmean)."""
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"expected two (N, A) tensors of the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    pred, target = pred.bool(), target.bool()
    positives, negatives = target.sum(0).double(), (~target).sum(0).double()
    tpr = (pred & target).sum(0).double() / positives  # 0/0 = nan when a class is absent
    tnr = (~pred & ~target).sum(0).double() / negatives
    return ((tpr + tnr) / 2).float()


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


# --------------------------------------------------------------------------------- distribution metrics
def _as_float64(features: torch.Tensor, name: str) -> torch.Tensor:
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"{name} must be (N, D) features with N >= 2, got {tuple(features.shape)}")
    return features.detach().to("cpu", torch.float64)


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) and (M, D) (FID on Inception features).

        |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))

    tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of the *symmetric* matrix
    S_a^(1/2) S_b S_a^(1/2) (same eigenvalues as S_a S_b), in float64: no complex parts, no sqrtm iterations.
    """
    a, b = _as_float64(feats_a, "feats_a"), _as_float64(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)  # (D, D), unbiased like numpy.cov
    values, vectors = torch.linalg.eigh(cov_a)
    sqrt_a = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    middle = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    distance = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return max(float(distance), 0.0)


def kernel_inception_distance(feats_a: torch.Tensor, feats_b: torch.Tensor, subsets: int = 10,
                              subset_size: int | None = None, seed: int = 0) -> tuple[float, float]:
    """KID: unbiased squared MMD with the kernel k(x, y) = (x.y / D + 1)^3, mean and std over random subsets.

    Unbiased means it is ~0 (and can be slightly negative) for two samples of the same distribution, even
    from few images, which is why it suits small evaluation sets better than FID. `subset_size` defaults
    to min(1000, N, M)."""
    a, b = _as_float64(feats_a, "feats_a"), _as_float64(feats_b, "feats_b")
    dim = a.shape[1]
    m = min(subset_size or 1000, len(a), len(b))
    if m < 2:
        raise ValueError("subset_size must be at least 2")
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=generator)[:m]]
        y = b[torch.randperm(len(b), generator=generator)[:m]]
        k_xx, k_yy, k_xy = [(p @ q.T / dim + 1) ** 3 for p, q in ((x, x), (y, y), (x, y))]
        off_diagonal = m * (m - 1)
        mmd = ((k_xx.sum() - k_xx.trace()) / off_diagonal + (k_yy.sum() - k_yy.trace()) / off_diagonal
               - 2 * k_xy.mean())
        scores.append(float(mmd))
    values = torch.tensor(scores, dtype=torch.float64)
    return float(values.mean()), float(values.std()) if subsets > 1 else 0.0


def diversity(feats: torch.Tensor) -> float:
    """Mean cosine distance (1 - cos) over all pairs of different images: 0 when every image looks the same.

    Uses sum_{i != j} cos_ij = |sum_i u_i|^2 - N for unit vectors u_i, so it needs no (N, N) matrix."""
    units = F.normalize(_as_float64(feats, "feats"), dim=1)
    n = len(units)
    mean_cosine = (units.sum(0).pow(2).sum() - n) / (n * (n - 1))
    return float(1 - mean_cosine)


# ------------------------------------------------------------------------------------ the papers' FID
INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's FID-Inception, in torch.hub


@torch.no_grad()
def standard_fid(fake: torch.Tensor, real: torch.Tensor, device: torch.device | str, batch_size: int = 100) -> float:
    """FID as papers report it: torchmetrics' FrechetInceptionDistance on the 2048-d pool features of the
    FID-Inception network (TF-Inception's weights, through torch-fidelity), images resized to 299 without
    antialiasing as the original code does. `fake` and `real` in [-1, 1] (N, 3, S, S).

    The weights are downloaded once (~100 MB into torch.hub's cache). Offline without them, or when the download
    fails, raises a one-line CourseError; our own-feature FID (`frechet_distance` on CLIP or judge features) needs
    no download. Use 10,000 samples or more for numbers comparable with papers (FID is biased upwards at small N).
    """
    from helpers.config import get_config

    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS
    if get_config().offline and not cached.exists():
        raise CourseError("the FID-Inception weights are not downloaded and HF_HUB_OFFLINE/COURSE_OFFLINE is set; "
                          "the standard FID needs them once (unset it and rerun), our own-feature FID does not")
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        metric = FrechetInceptionDistance(feature=2048, normalize=True, antialias=False).to(device)
    except ImportError:
        raise CourseError("the standard FID needs torchmetrics and torch-fidelity: "
                          "pip install 'torchmetrics[image]'") from None
    except Exception as error:  # no network, proxy, a broken download: urllib, OSError, RuntimeError ...
        first_line = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise CourseError(f"cannot download the FID-Inception weights ({first_line}); the standard FID needs them "
                          "once, our own-feature FID does not") from None
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            batch = ((images[start:start + batch_size].float() + 1) / 2).clamp(0, 1).to(device)
            metric.update(batch, real=is_real)
    return float(metric.compute())
