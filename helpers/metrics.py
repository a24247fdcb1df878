"""The measurements every track shares: attribute accuracy that a rare class cannot fool, and distances between
sets of image features.

- `balanced_accuracy`: per attribute, (true-positive rate + true-negative rate) / 2 (CLIP's zero-shot attributes in
  notebook 03, the face judge in 04-05).
- Distribution metrics on image features from any encoder: `frechet_distance` (FID when the features are
  Inception's), `kernel_inception_distance` (KID), `diversity`; `standard_fid` is the FID of the papers
  (torchmetrics, FID-Inception weights) when those weights can be downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from helpers.errors import CourseError


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
