"""What the image datasets of the course share: uint8 images in memory, a float copy made one item at a time,
and a train / held-out pair of them (faces, CIFAR-10 and sketches each add their own per-image rows)."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset


class Uint8Images(Dataset):
    """Images kept as uint8 (N, C, S, S) beside one row per image (labels or attributes); a subclass's
    `__getitem__` says what one item is."""

    def __init__(self, images: torch.Tensor, rows: torch.Tensor):
        if len(images) != len(rows):
            raise ValueError(f"{len(images)} images but {len(rows)} rows of labels or attributes")
        self.images, self.rows = images, rows

    def __len__(self) -> int:
        return len(self.images)


class Splits:
    """Mixin of the splits dataclasses: `train_set()` / `test_set()` wrap `train_<rows>` / `test_<rows>` in the
    class's `dataset`, and the repr says sizes and the source (declare the dataclass with repr=False)."""

    dataset: type[Uint8Images]
    rows = "labels"  # the per-image field beside the images: train_labels / test_labels, or "attrs"

    def train_set(self) -> Uint8Images:
        return self.dataset(self.train_images, getattr(self, f"train_{self.rows}"))

    def test_set(self) -> Uint8Images:
        return self.dataset(self.test_images, getattr(self, f"test_{self.rows}"))

    def __repr__(self) -> str:
        classes = f", classes={len(self.classes)}" if hasattr(self, "classes") else ""
        return (f"{type(self).__name__}(train={len(self.train_images)}, test={len(self.test_images)}, "
                f"size={self.image_size}{classes}, source={self.source})")


def choose_source(cfg, source: str, have_local: bool, download: str, needs: str) -> str:
    """Where a dataset comes from: `source` as asked, or for "auto" the local copy (COURSE_DATA) when there is
    one, else the procedural stand-in in quick mode, else `download` (the full dataset). Asking for "local"
    without a local copy is a one-line CourseError saying what COURSE_DATA must hold (`needs`)."""
    from helpers.errors import CourseError

    if source == "auto":
        source = "local" if have_local else ("synthetic" if cfg.quick else download)
    if source == "local" and not have_local:
        raise CourseError(f"source='local' needs {needs} in COURSE_DATA (now {cfg.local_data or 'unset'}); "
                          f"set COURSE_DATA=<the folder holding it>")
    return source
