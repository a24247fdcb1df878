"""CIFAR-10: 32x32 colour photos of ten classes, for notebook 05 (DDPM) and the judge that grades its samples.

Every source returns the same thing, an `ImageSplits`: uint8 images (N, 3, S, S), int64 labels (N,) that
index `CIFAR10_CLASSES`, a training split and a held-out split, and a `source` string saying where they
came from. Images stay uint8 in memory (a quarter of float32) and become floats in [-1, 1] only when a
dataset item is read.

Sources, first match wins for `source="auto"`; the loader prints one line saying which it is and why:
1. "local": `COURSE_DATA` holding `cifar10_train_jpeg.tar.gz`, the 50,000 CIFAR-10 *training* photos as
   JPEG files `train/<class>/<n>.jpg`. There is no test set in it, so the last 500 photos (by file number)
   of every class are held out: 45,000 train + 5,000 held-out. Decoded once (about 6 s), then cached.
   `COURSE_DATA` holding torchvision's own `cifar-10-batches-py` folder counts as local too.
2. "torchvision": `torchvision.datasets.CIFAR10` downloads the real archive (cifar-10-python.tar.gz from
   www.cs.toronto.edu, 163 MiB, all 60,000 images) once into `cfg.data_root`, after printing its size and an
   estimated time; torchvision shows the progress bar, and a later run of either mode reads it there (offline
   too). Full mode uses all of it, the official test set held out. Quick mode keeps the first 1,000 training
   photos of each class (10,000) and holds out the first 200 of each class of the test set (2,000). Offline
   (COURSE_OFFLINE=1 or HF_HUB_OFFLINE=1) nothing is tried; online, a TCP check of the host answers within 3 s
   before any download, so a laptop without network does not wait for retries.
3. "synthetic" (quick mode when that download cannot happen: offline, the host out of reach, a failed transfer;
   full mode stops with a one-line error instead): `synthetic_cifar`, procedural cartoon icons, one motif
   per class (a plane, a car, a frog, ...) jittered in position, size and mirroring, on a two-tone background
   and in paints that every class draws from the same palettes: colour says nothing about the class, only shape
   does (on the 4x4 mean colours a nearest-class-mean classifier reads 17% of held-out icons and a logistic
   regression 26%, chance being 10%). Same schema, no download.

`limit_per_class=k` keeps the first k training images of every class (the held-out split is untouched), and
`image_size` other than 32 resizes every image once (bilinear, antialiased when shrinking).
"""
from __future__ import annotations

import gzip
import io
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from helpers.config import CourseConfig
from helpers.data.celeba import to_float
from helpers.data.splits import (Splits, Uint8Images, announce, choose_source, download_notice,
                                 host_reachable, real_or_stand_in)
from helpers.errors import CourseError, Unavailable
from helpers.files import save_npz_atomic

CIFAR10_CLASSES: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                    "ship", "truck")
SOURCES = ("auto", "local", "torchvision", "synthetic")
NATIVE_SIZE = 32
LOCAL_TAR = "cifar10_train_jpeg.tar.gz"
TORCHVISION_FOLDER = "cifar-10-batches-py"  # what torchvision.datasets.CIFAR10 unpacks into its root
LOCAL_HELDOUT_PER_CLASS = 500  # the last 500 photos of each class in the tar: 5,000 held out, 45,000 to train
SYNTHETIC_SIZES = {"quick": (1_000, 200), "full": (5_000, 1_000)}  # (train, held-out) icons per class
QUICK_PER_CLASS = 1_000  # quick mode's real CIFAR-10: the first 1,000 training photos of each class ...
QUICK_HELDOUT_PER_CLASS = 200  # ... and the first 200 of each class of the official test set
DOWNLOAD_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # torchvision.datasets.CIFAR10.url
DOWNLOAD_BYTES = 170_498_071  # what torchvision downloads from there (163 MiB)
SYNTHETIC_TEST_OFFSET = 1_000_000  # held-out icons are numbered from here: never the same as a training icon
CACHE_VERSION = 1  # bump when decoding changes: older caches are then rebuilt
ICONS_VERSION = 3  # bump when the procedural icons change: models trained on older ones are then not reused


# ------------------------------------------------------------------------------------------ containers
class ImageDataset(Uint8Images):
    """(image float (3, S, S) in [-1, 1], label int64) pairs; the images stay uint8 until an item is read."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_float(self.images[index]), self.rows[index]


@dataclass(repr=False)
class ImageSplits(Splits):
    """uint8 images (N, 3, S, S) and int64 labels (N,) for training, and the same for held-out tests."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str
    classes: tuple[str, ...] = CIFAR10_CLASSES
    dataset = ImageDataset

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])


# ------------------------------------------------------------------------------------------ array helpers
def interleave_classes(labels: np.ndarray) -> np.ndarray:
    """An order that deals the images out class by class (0, 1, ..., 9, 0, 1, ...), each class keeping its own
    order: any prefix of the result is as balanced as it can be, so `images[:20]` shows every class twice."""
    rank = np.zeros(len(labels), dtype=np.int64)  # position of each image within its class
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members] = np.arange(len(members))
    return np.lexsort((labels, rank))  # sort by rank first, then by class


def first_per_class(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (in the original order) of the first `k` images of every class."""
    keep = torch.zeros(len(labels), dtype=torch.bool)
    for label in labels.unique():
        keep[torch.nonzero(labels == label).flatten()[:k]] = True
    return torch.nonzero(keep).flatten()


def resize_images(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> uint8 (N, 3, size, size), bilinear; antialiased so that shrinking does not alias."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    # torch resizes uint8 directly (the kernel torchvision uses): 10x faster than through float32, same
    # pixels to within one rounding step, and no 2.5 GB float copy of 50,000 images at 64x64.
    return torch.cat([F.interpolate(images[start:start + chunk], size=(size, size), mode="bilinear",
                                    align_corners=False, antialias=True)
                      for start in range(0, len(images), chunk)])


# ------------------------------------------------------------------------------------------ 1. local tar
def read_cifar_tar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode every `train/<class>/<n>.jpg` of the tar -> (uint8 (N, 3, 32, 32), int64 labels), sorted by
    class, then by file number (the tar itself lists the files in no particular order)."""
    try:
        raw = gzip.decompress(path.read_bytes())  # one pass in memory (77 MB): faster than streaming members
        found = []
        with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
            for member in archive:
                parts = Path(member.name).parts
                if member.isfile() and len(parts) >= 2 and parts[-2] in CIFAR10_CLASSES:
                    found.append((CIFAR10_CLASSES.index(parts[-2]), Path(parts[-1]).stem,
                                  archive.extractfile(member).read()))
    except (OSError, EOFError, tarfile.TarError, gzip.BadGzipFile) as error:
        raise CourseError(f"cannot read {path} ({error}); delete it or point COURSE_DATA elsewhere") from None
    if not found:
        raise CourseError(f"{path} holds no train/<class>/<n>.jpg files; is it the CIFAR-10 JPEG archive?")
    found.sort(key=lambda item: (item[0], int(item[1]) if item[1].isdigit() else item[1]))
    images = np.empty((len(found), NATIVE_SIZE, NATIVE_SIZE, 3), dtype=np.uint8)
    for index, (_, name, data) in enumerate(found):
        image = Image.open(io.BytesIO(data))
        if image.size != (NATIVE_SIZE, NATIVE_SIZE):
            raise CourseError(f"{path}: {name}.jpg is {image.size[0]}x{image.size[1]}, not 32x32; "
                              "use the original CIFAR-10 archive")
        images[index] = np.asarray(image.convert("RGB"))
    labels = np.array([label for label, _, _ in found], dtype=np.int64)
    return images.transpose(0, 3, 1, 2).copy(), labels


def _decoded_tar(cfg: CourseConfig, tar_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """`read_cifar_tar` once; later calls read the npz cache (150 MB, well under a second)."""
    cache = cfg.data_root / "cache" / "cifar10_local_32.npz"
    signature = f"v{CACHE_VERSION} {tar_path.stat().st_size} {int(tar_path.stat().st_mtime)}"
    if cache.exists():
        try:
            with np.load(cache) as stored:
                if str(stored["signature"]) == signature:
                    return stored["images"], stored["labels"]
        except (OSError, ValueError, KeyError, EOFError):
            pass  # an unreadable or older cache is rebuilt, never trusted
    images, labels = read_cifar_tar(tar_path)
    try:
        save_npz_atomic(cache, images=images, labels=labels, signature=np.array(signature))
    except OSError as error:
        warnings.warn(f"could not cache the decoded CIFAR-10 images in {cache} ({error}); they will be decoded again")
    return images, labels


def _load_local_tar(cfg: CourseConfig, tar_path: Path) -> tuple[tuple, tuple]:
    images, labels = _decoded_tar(cfg, tar_path)
    held_out = np.zeros(len(labels), dtype=bool)
    for label in range(len(CIFAR10_CLASSES)):  # sorted by file number: the last 500 of each class
        members = np.flatnonzero(labels == label)
        held_out[members[-LOCAL_HELDOUT_PER_CLASS:]] = True
    train, test = np.flatnonzero(~held_out), np.flatnonzero(held_out)
    train, test = train[interleave_classes(labels[train])], test[interleave_classes(labels[test])]
    return (images[train], labels[train]), (images[test], labels[test])


# ------------------------------------------------------------------------------------------ 2. torchvision
def _torchvision_split(root: Path, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets import CIFAR10

    dataset = CIFAR10(root=str(root), train=train, download=download)
    return dataset.data.transpose(0, 3, 1, 2).copy(), np.asarray(dataset.targets, dtype=np.int64)


def _quick_subset(train: tuple, test: tuple) -> tuple[tuple, tuple]:
    """Quick mode's share of the official splits: the first QUICK_PER_CLASS training images and the first
    QUICK_HELDOUT_PER_CLASS test images of every class, dealt out class by class."""
    def first(split: tuple, k: int) -> tuple:
        images, labels = split
        keep = first_per_class(torch.as_tensor(labels), k).numpy()
        keep = keep[interleave_classes(labels[keep])]
        return images[keep], labels[keep]

    return first(train, QUICK_PER_CLASS), first(test, QUICK_HELDOUT_PER_CLASS)


def _load_torchvision(cfg: CourseConfig, root: Path | None = None) -> tuple[tuple, tuple, str]:
    """The official 50,000 + 10,000 images from `root` (no download) or from cfg.data_root, downloaded there first
    (once) when need be; from the download, quick mode keeps `_quick_subset`. Unavailable (one line) when the download
    cannot happen: offline, the host out of reach (answered in seconds), or a failed transfer."""
    if root is not None:
        try:
            train, test = _torchvision_split(root, True, False), _torchvision_split(root, False, False)
        except Exception as error:  # torchvision checks the files' md5 sums: a damaged copy lands here
            raise CourseError(f"cannot read CIFAR-10 from {root / TORCHVISION_FOLDER} ({type(error).__name__}); "
                              "delete that folder or point COURSE_DATA elsewhere") from None
        where = f"torchvision:{root}"
    else:
        root = cfg.data_root
        fix = f"set COURSE_DATA=<folder holding {LOCAL_TAR}> or COURSE_QUICK=1 (procedural images, no download)"
        there = (root / TORCHVISION_FOLDER).exists()
        if not there:
            if cfg.offline:
                raise Unavailable(f"offline (HF_HUB_OFFLINE/COURSE_OFFLINE is set) and no CIFAR-10 in {root}",
                                  f"go online once to let torchvision download it ({DOWNLOAD_BYTES / 2**20:.0f} MiB), "
                                  f"or {fix}")
            host = urlparse(DOWNLOAD_URL).hostname
            if not host_reachable(DOWNLOAD_URL):
                raise Unavailable(f"CIFAR-10 could not be downloaded into {root} ({host} cannot be reached)",
                                  f"check your connection, or {fix}")
            print(download_notice(f"CIFAR-10 from {host} (torchvision; the real archive, all 60,000 images)",
                                  DOWNLOAD_BYTES, root))
        try:
            train = _torchvision_split(root, True, not cfg.offline)  # torchvision fetches only what is missing
            test = _torchvision_split(root, False, not cfg.offline)
        except Exception as error:  # no network, proxy, a broken half-download: all end in the same advice
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise Unavailable(f"CIFAR-10 could not be downloaded into {root} ({first_line})",
                              f"check your connection, or {fix}") from None
        where = f"torchvision:{root}"
        if cfg.quick:
            train, test = _quick_subset(train, test)
            where += f" (first {QUICK_PER_CLASS}/class; test set's first {QUICK_HELDOUT_PER_CLASS}/class held out)"
    return train, test, where


# ------------------------------------------------------------------------------------------ 3. synthetic
Painter = Callable[["_Sketch", np.random.Generator, tuple, tuple], None]


class _Sketch:
    """A square PIL canvas with an object placed by (centre, scale): shapes are given in object coordinates,
    where (0, 0) is the object's centre and 1 is the object's size, so every motif is drawn the same way
    wherever the jitter put it."""

    def __init__(self, size: int, cx: float, cy: float, scale: float):
        self.image = Image.new("RGB", (size, size))
        self.draw = ImageDraw.Draw(self.image)
        self.size, self.cx, self.cy, self.scale = size, cx, cy, scale

    def xy(self, *coords: float) -> list[float]:
        return [(self.cx + self.scale * v if i % 2 == 0 else self.cy + self.scale * v) * self.size
                for i, v in enumerate(coords)]

    def background(self, top: tuple, bottom: tuple, horizon: float) -> None:
        """Two flat areas (sky / ground, wall / road ...) split at `horizon` (fraction of the height)."""
        self.draw.rectangle([0, 0, self.size, self.size], fill=top)
        self.draw.rectangle([0, horizon * self.size, self.size, self.size], fill=bottom)

    def ellipse(self, x0, y0, x1, y1, fill) -> None:
        self.draw.ellipse(self.xy(x0, y0, x1, y1), fill=fill)

    def rect(self, x0, y0, x1, y1, fill) -> None:
        self.draw.rectangle(self.xy(x0, y0, x1, y1), fill=fill)

    def poly(self, points: list[float], fill) -> None:
        self.draw.polygon(self.xy(*points), fill=fill)

    def line(self, points: list[float], fill, width: float) -> None:
        self.draw.line(self.xy(*points), fill=fill, width=max(1, round(width * self.scale * self.size)))


def _jitter(colour: tuple, rng: np.random.Generator, amount: int = 20) -> tuple:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


DARK, LIGHT, GLASS = (25, 25, 30), (240, 240, 240), (150, 200, 230)
# Every class draws its background and its main colours from the same palettes, so colour says nothing about the
# class: only shape does (a classifier on the 4x4 mean colours reads a quarter of them at most; see
# tests/test_cifar_data.py).
SCENES: tuple[tuple[tuple, tuple], ...] = (  # (upper, lower) areas: sky over grass, wall over floor, ...
    ((120, 170, 230), (90, 150, 70)), ((170, 205, 235), (30, 80, 150)), ((160, 195, 230), (110, 110, 110)),
    ((230, 200, 170), (150, 110, 80)), ((50, 90, 50), (110, 150, 60)), ((200, 170, 200), (200, 180, 110)),
    ((40, 70, 80), (60, 100, 60)), ((210, 210, 200), (80, 80, 85)),
)
PAINTS: tuple[tuple, ...] = ((200, 30, 30), (30, 70, 190), (230, 200, 40), (240, 240, 240), (30, 30, 30),
                             (230, 140, 50), (120, 120, 125), (80, 190, 60), (150, 100, 50), (230, 120, 170))


def _paints(rng: np.random.Generator, scene: tuple[tuple, tuple], k: int = 2) -> list[tuple]:
    """`k` different jittered colours of PAINTS, each far enough from both background areas to stand out."""
    far = [paint for paint in PAINTS if min(sum(abs(a - b) for a, b in zip(paint, area)) for area in scene) > 120]
    return [_jitter(far[i], rng) for i in rng.choice(len(far), size=k, replace=False)]


def _airplane(s: _Sketch, rng, body: tuple, other: tuple) -> None:
    s.poly([-0.05, 0.0, 0.12, -0.38, 0.2, -0.38, 0.12, 0.0], body)  # swept wings
    s.poly([-0.05, 0.0, 0.12, 0.38, 0.2, 0.38, 0.12, 0.0], body)
    s.ellipse(-0.45, -0.07, 0.45, 0.07, body)  # fuselage
    s.poly([-0.45, 0.0, -0.42, -0.22, -0.3, -0.22, -0.3, 0.0], other)  # tail fin
    s.ellipse(0.28, -0.04, 0.4, 0.0, GLASS)  # cockpit


def _automobile(s: _Sketch, rng, paint: tuple, other: tuple) -> None:
    s.rect(-0.45, -0.02, 0.45, 0.18, paint)  # body
    s.poly([-0.25, -0.02, -0.15, -0.2, 0.18, -0.2, 0.28, -0.02], paint)  # cabin
    s.poly([-0.19, -0.04, -0.12, -0.16, 0.15, -0.16, 0.22, -0.04], GLASS)  # windows
    for x in (-0.27, 0.27):
        s.ellipse(x - 0.1, 0.08, x + 0.1, 0.28, DARK)
        s.ellipse(x - 0.04, 0.14, x + 0.04, 0.22, (170, 170, 170))


def _bird(s: _Sketch, rng, feathers: tuple, other: tuple) -> None:
    s.poly([-0.15, 0.0, -0.45, -0.05, -0.45, 0.12], feathers)  # tail
    s.ellipse(-0.25, -0.15, 0.15, 0.15, feathers)  # body
    s.ellipse(0.05, -0.3, 0.3, -0.05, feathers)  # head
    s.poly([0.28, -0.2, 0.42, -0.15, 0.28, -0.11], other)  # beak
    s.ellipse(0.17, -0.22, 0.22, -0.17, DARK)  # eye
    s.ellipse(-0.18, -0.08, 0.08, 0.08, _jitter(tuple(c // 2 for c in feathers), rng, 5))  # wing
    s.line([-0.05, 0.14, -0.08, 0.3, 0.05, 0.14, 0.08, 0.3], other, 0.03)  # legs


def _cat(s: _Sketch, rng, fur: tuple, other: tuple) -> None:
    s.poly([-0.32, -0.1, -0.3, -0.45, -0.08, -0.25], fur)  # pointed ears
    s.poly([0.32, -0.1, 0.3, -0.45, 0.08, -0.25], fur)
    s.ellipse(-0.35, -0.3, 0.35, 0.3, fur)  # head
    for x in (-0.14, 0.14):
        s.ellipse(x - 0.07, -0.1, x + 0.07, 0.0, other)  # eyes with slit pupils
        s.rect(x - 0.015, -0.1, x + 0.015, 0.0, DARK)
    s.poly([-0.04, 0.06, 0.04, 0.06, 0.0, 0.11], other)  # nose
    for y in (0.08, 0.14):
        s.line([0.08, 0.1, 0.42, y], LIGHT, 0.012)
        s.line([-0.08, 0.1, -0.42, y], LIGHT, 0.012)


def _deer(s: _Sketch, rng, coat: tuple, antler: tuple) -> None:
    s.ellipse(-0.3, -0.1, 0.2, 0.12, coat)  # body
    for x in (-0.25, -0.15, 0.07, 0.15):
        s.line([x, 0.05, x, 0.4], coat, 0.05)  # thin legs
    s.poly([0.1, -0.05, 0.2, -0.3, 0.28, -0.28, 0.2, 0.0], coat)  # neck
    s.ellipse(0.17, -0.38, 0.35, -0.24, coat)  # head
    s.line([0.22, -0.37, 0.15, -0.5, 0.1, -0.55], antler, 0.025)
    s.line([0.29, -0.37, 0.34, -0.5, 0.4, -0.55], antler, 0.025)
    s.line([0.17, -0.47, 0.22, -0.52], antler, 0.02)


def _dog(s: _Sketch, rng, fur: tuple, muzzle: tuple) -> None:
    ears = _jitter(tuple(int(c * 0.6) for c in fur), rng, 10)
    s.ellipse(-0.3, -0.32, 0.3, 0.28, fur)  # round head
    s.ellipse(-0.45, -0.3, -0.2, 0.2, ears)  # long floppy ears hang down the sides
    s.ellipse(0.2, -0.3, 0.45, 0.2, ears)
    s.ellipse(-0.15, 0.0, 0.15, 0.3, muzzle)  # muzzle
    s.ellipse(-0.07, 0.02, 0.07, 0.12, DARK)  # big black nose
    s.ellipse(-0.05, 0.2, 0.05, 0.36, (230, 90, 110))  # tongue
    for x in (-0.13, 0.13):
        s.ellipse(x - 0.05, -0.16, x + 0.05, -0.06, DARK)


def _frog(s: _Sketch, rng, skin: tuple, other: tuple) -> None:
    s.ellipse(-0.45, 0.1, -0.15, 0.3, skin)  # hind legs
    s.ellipse(0.15, 0.1, 0.45, 0.3, skin)
    s.ellipse(-0.4, -0.15, 0.4, 0.25, skin)  # wide flat body
    for x in (-0.2, 0.2):
        s.ellipse(x - 0.12, -0.3, x + 0.12, -0.06, skin)  # bulging eyes on top
        s.ellipse(x - 0.07, -0.24, x + 0.07, -0.1, other)
        s.ellipse(x - 0.03, -0.2, x + 0.03, -0.14, DARK)
    s.line([-0.2, 0.08, 0.2, 0.08], DARK, 0.025)  # mouth


def _horse(s: _Sketch, rng, coat: tuple, hair: tuple) -> None:
    s.ellipse(-0.38, -0.12, 0.25, 0.14, coat)  # long body
    for x in (-0.3, -0.2, 0.1, 0.18):
        s.line([x, 0.05, x, 0.45], coat, 0.07)  # long legs
    s.poly([0.12, -0.05, 0.25, -0.38, 0.36, -0.35, 0.25, 0.02], coat)  # neck
    s.poly([0.25, -0.4, 0.48, -0.22, 0.44, -0.16, 0.26, -0.27], coat)  # long head
    s.line([0.22, -0.38, 0.1, -0.05], hair, 0.05)  # mane
    s.line([-0.38, -0.08, -0.48, 0.2], hair, 0.05)  # tail


def _ship(s: _Sketch, rng, hull: tuple, deck: tuple) -> None:
    s.poly([-0.48, 0.0, 0.48, 0.0, 0.36, 0.18, -0.38, 0.18], hull)  # hull
    s.rect(-0.28, -0.14, 0.18, 0.0, deck)  # superstructure
    s.rect(-0.2, -0.26, 0.05, -0.14, deck)
    s.rect(0.06, -0.36, 0.14, -0.14, DARK)  # funnel
    s.rect(-0.22, -0.1, 0.14, -0.06, (70, 90, 120))  # a row of windows


def _truck(s: _Sketch, rng, cargo: tuple, cab: tuple) -> None:
    s.rect(-0.48, -0.35, 0.2, 0.15, cargo)  # tall box
    s.rect(0.22, -0.15, 0.48, 0.15, cab)  # cab in front
    s.rect(0.3, -0.1, 0.45, 0.0, GLASS)  # windscreen
    for x in (-0.35, -0.12, 0.35):
        s.ellipse(x - 0.09, 0.08, x + 0.09, 0.26, DARK)


PAINTERS: tuple[Painter, ...] = (_airplane, _automobile, _bird, _cat, _deer, _dog, _frog, _horse, _ship, _truck)


def synthetic_icon(label: int, number: int, seed: int = 0, image_size: int = 32) -> np.ndarray:
    """Icon `number` of class `label`: uint8 (3, S, S), a pure function of (label, number, seed, size)."""
    rng = np.random.default_rng([seed, label, number])
    canvas = 2 * image_size  # drawn at twice the size, then halved: cheap antialiasing
    cx, cy = 0.5 + rng.uniform(-0.22, 0.22, size=2)  # wide enough that where the mass sits says little
    sketch = _Sketch(canvas, cx, cy, rng.uniform(0.55, 1.0))
    upper, lower = SCENES[rng.integers(len(SCENES))]
    scene = (_jitter(upper, rng, 25), _jitter(lower, rng, 25))
    sketch.background(*scene, rng.uniform(0.45, 0.8))
    PAINTERS[label](sketch, rng, *_paints(rng, scene))
    pixels = np.asarray(sketch.image.reduce(2), dtype=np.int16)
    if rng.random() < 0.5:  # mirrored: a plane flies left as often as right
        pixels = pixels[:, ::-1]
    grain = rng.integers(-8, 9, size=pixels.shape[:2], dtype=np.int16)[..., None]  # sensor-like noise
    return np.clip(pixels + grain, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def synthetic_cifar(n_per_class: int, seed: int = 0, image_size: int = 32, *, start: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """`n_per_class` procedural icons of each of the 10 classes: (uint8 (N, 3, S, S), int64 (N,)), classes dealt
    out in turn (labels 0, 1, ..., 9, 0, 1, ...). Icon i of a class never depends on n_per_class; `start`
    numbers the icons from there (the held-out split starts at SYNTHETIC_TEST_OFFSET)."""
    if n_per_class < 0 or image_size < 8:
        raise ValueError(f"need n_per_class >= 0 and image_size >= 8, got {n_per_class}, {image_size}")
    classes = len(CIFAR10_CLASSES)
    images = np.empty((n_per_class * classes, 3, image_size, image_size), dtype=np.uint8)
    labels = np.tile(np.arange(classes, dtype=np.int64), n_per_class)
    for index, label in enumerate(labels):
        images[index] = synthetic_icon(int(label), start + index // classes, seed, image_size)
    return torch.from_numpy(images), torch.from_numpy(labels)


def _load_synthetic(cfg: CourseConfig, image_size: int, limit: int | None) -> tuple[tuple, tuple, str]:
    n_train, n_test = SYNTHETIC_SIZES[cfg.mode]
    n_train = min(n_train, limit) if limit else n_train  # draw only what is kept: icons are independent
    train = synthetic_cifar(n_train, cfg.seed, image_size)
    test = synthetic_cifar(n_test, cfg.seed, image_size, start=SYNTHETIC_TEST_OFFSET)
    return train, test, f"synthetic (seed {cfg.seed}, icons v{ICONS_VERSION})"


# ------------------------------------------------------------------------------------------ entry point
def _local_source(cfg: CourseConfig) -> tuple[str, Path] | None:
    if cfg.local_data is None:
        return None
    if (cfg.local_data / LOCAL_TAR).exists():
        return "tar", cfg.local_data / LOCAL_TAR
    if (cfg.local_data / TORCHVISION_FOLDER).exists():
        return "torchvision", cfg.local_data
    return None


def _check_arguments(source: str, image_size: int, limit_per_class: int | None) -> None:
    if source not in SOURCES:
        raise CourseError(f"unknown CIFAR-10 source {source!r}; choose one of {', '.join(SOURCES)}")
    if not isinstance(image_size, int) or image_size < 8:
        raise CourseError(f"image_size={image_size!r} is too small; use 32 (CIFAR-10's own size) or more, at least 8")
    if limit_per_class is not None and limit_per_class < 1:
        raise CourseError(f"limit_per_class={limit_per_class} keeps no training image; pass None or a positive number")


def load_cifar10(cfg: CourseConfig, source: str = "auto", image_size: int = 32,
                 limit_per_class: int | None = None) -> ImageSplits:
    """The CIFAR-10 images for this run mode (see the module docstring for the sources); prints one line saying
    which they are and why.

    `source`: "auto" (local copy > torchvision download, quick mode's share of it, or the procedural icons when it
    cannot be had in quick mode), or force "local", "torchvision", "synthetic". `limit_per_class` keeps the first k
    training images of each class. Raises CourseError (one line, saying what to do) for bad arguments or a forced
    source that cannot be reached.
    """
    _check_arguments(source, image_size, limit_per_class)
    local = _local_source(cfg)
    asked, why_not = source, ""
    source = choose_source(cfg, source, bool(local), "torchvision",
                           needs=f"{LOCAL_TAR} (or torchvision's {TORCHVISION_FOLDER}/)")
    if source == "local":
        kind, path = local
        if kind == "tar":
            train, test = _load_local_tar(cfg, path)
            where = f"local:{LOCAL_TAR} (last {LOCAL_HELDOUT_PER_CLASS}/class held out)"
        else:
            train, test, where = _load_torchvision(cfg, path)
        origin = f"COURSE_DATA's {LOCAL_TAR if kind == 'tar' else TORCHVISION_FOLDER}"
    elif source == "torchvision":
        root = local[1] if local and local[0] == "torchvision" else None
        (train, test, where), why_not = real_or_stand_in(
            cfg, asked, lambda: _load_torchvision(cfg, root),
            lambda: _load_synthetic(cfg, image_size, limit_per_class))
        origin = "torchvision"
    else:
        train, test, where = _load_synthetic(cfg, image_size, limit_per_class)
        origin = "source='synthetic'"
    data = _as_splits(train, test, where, image_size, limit_per_class)
    per_class = f", {len(data.train_images) // len(CIFAR10_CLASSES):,} per class"  # every source is balanced
    announce(data, "procedural icons" if where.startswith("synthetic") else "real CIFAR-10", origin + per_class,
             why_not)
    return data


def _as_splits(train: tuple, test: tuple, source: str, image_size: int, limit: int | None) -> ImageSplits:
    train_images, train_labels, test_images, test_labels = (torch.as_tensor(a) for a in (*train, *test))
    if limit is not None:
        keep = first_per_class(train_labels, limit)
        train_images, train_labels = train_images[keep], train_labels[keep]
    # resize after limiting: upscaling 45,000 images to 64x64 only to drop most of them would waste seconds
    return ImageSplits(resize_images(train_images, image_size), train_labels.long(),
                       resize_images(test_images, image_size), test_labels.long(), source)
