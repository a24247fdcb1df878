"""What the image datasets of the course share: uint8 images in memory, a float copy made one item at a time,
and a train / held-out pair of them (faces, CIFAR-10 and sketches each add their own per-image rows); and the one
rule that picks their source.

`source="auto"`: COURSE_DATA's local copy > a download (the full dataset in full mode, a small real subset in quick
mode, fetched once and cached under cfg.data_root) > in quick mode only, the procedural stand-in, when the download
cannot happen (offline: COURSE_OFFLINE=1 or HF_HUB_OFFLINE=1; the host out of reach, checked in seconds by
`host_reachable`; a failed transfer). Each loader prints one line saying which it is and why (`announce`), and a
download prints its size and estimated time before it starts (`download_notice`)."""
from __future__ import annotations

from typing import Callable, TypeVar

import torch
from torch.utils.data import Dataset

T = TypeVar("T")


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
    one, else `download`: the full dataset in full mode, a small real subset in quick mode (which falls back to the
    procedural stand-in when it cannot be had: `real_or_stand_in`). Asking for "local" without a local copy is a
    one-line CourseError saying what COURSE_DATA must hold (`needs`)."""
    from helpers.errors import CourseError

    if source == "auto":
        source = "local" if have_local else download
    if source == "local" and not have_local:
        raise CourseError(f"source='local' needs {needs} in COURSE_DATA (now {cfg.local_data or 'unset'}); "
                          f"set COURSE_DATA=<the folder holding it>")
    return source


def real_or_stand_in(cfg, asked: str, fetch: Callable[[], T], stand_in: Callable[[], T]) -> tuple[T, str]:
    """(`fetch()`, "") for a download or its cached copy. For `asked` == "auto" in quick mode, a download that
    cannot happen (`Unavailable`: offline, host out of reach, transfer failed) gives (`stand_in()`, why not)
    instead; anywhere else its one-line error stands."""
    from helpers.errors import Unavailable

    if asked != "auto" or not cfg.quick:
        return fetch(), ""
    try:
        return fetch(), ""
    except Unavailable as error:
        return stand_in(), error.reason


def announce(data: Splits, what: str, origin: str, why_not_real: str = "") -> None:
    """The one line a loader prints: which data it is and why, e.g. "real CIFAR-10 (torchvision download: 10,000 to
    train, 2,000 held out)", or "offline (...): procedural icons (...), set COURSE_DATA for real ones"."""
    counts = f"{len(data.train_images):,} to train, {len(data.test_images):,} held out"
    if why_not_real:
        print(f"{why_not_real}: {what} ({counts}), set COURSE_DATA for real ones")
    else:
        print(f"{what} ({origin}: {counts})")


def host_reachable(url: str, timeout: float = 3.0) -> bool:
    """Can a TCP connection to `url`'s host be opened within `timeout` seconds? Download clients retry for
    minutes without a network; this answers in at most `timeout` seconds (at once when the name does not resolve),
    so an offline laptop falls back to the stand-in in seconds."""
    import socket
    from urllib.parse import urlparse

    parts = urlparse(url)
    try:
        socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


def download_notice(what: str, size_bytes: int, where) -> str:
    """The line printed before a download starts: what, how big, how long at two typical speeds, and where to."""
    mib = size_bytes / 2**20

    def duration(mib_per_s: float) -> str:
        seconds = mib / mib_per_s
        return f"{max(1, round(seconds))} s" if seconds < 90 else f"{round(seconds / 60)} min"

    size = f"{mib:,.0f}" if mib >= 10 else f"{mib:.1f}"
    return (f"downloading {what}: {size} MiB, about {duration(10)} at 10 MiB/s ({duration(1)} at 1 MiB/s); "
            f"once, into {where}")
