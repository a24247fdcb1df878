"""Sketches with captions, for notebook 08 (text -> sketch CVAE) and the doodle judge that grades its samples.

Every source returns a `SketchSplits`: uint8 images (N, 1, S, S) with **ink = 255 on a 0 background** (what a
BCE loss wants: ink probability per pixel), one caption per image, an int64 class label per image (-1 where a
source has no classes), a held-out split, the class names and a `source` string.

Sources, first match wins for `source="auto"`; the loader prints one line saying which it is and why:
1. "local": `COURSE_DATA` holding `quickdraw_6class_28x28.npz`, 3,000 real Quick, Draw! doodles of each of six
   classes (apple, bicycle, cat, diamond, eye, fish) at 28x28; the last 300 of each class are held out. The
   caption is the class name in a template ("a sketch of a cat", "a doodle of a fish", ...).
2. "hub": the Hugging Face dataset `zoheb/sketch-scene` (FS-COCO scene sketches with sentence captions)
   (parquet, `helpers.data.hub`; `COURSE_HUB_SKETCHES` names another id or a local folder of them); rows hold
   an `image` and a `text` caption and no class (labels are -1), so the sketch track judges them by retrieval
   (`helpers.sketch.evaluate_retrieval`) rather than by a class judge. Full mode reads every row; quick mode
   the first 3,500 (3,000 to train, the last 500 held out) from the dataset's first parquet file, fetched once
   with its size and estimated time printed first and the hub's progress bar, then read from the cache (offline
   too). Full mode fails fast, in one line, when the hub cannot be reached.
3. "synthetic" (quick mode when the hub's rows cannot be had: offline, COURSE_OFFLINE=1 or HF_HUB_OFFLINE=1; the
   hub out of reach, answered within 3 s; a failed transfer): `synthetic_sketches`, procedural line drawings of
   the same six classes as the doodles, jittered in position, size, rotation and stroke, with the same captions.

Images are resized once to `image_size` (default 128) with antialiasing.
"""
from __future__ import annotations

import hashlib
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from helpers.config import CourseConfig
from helpers.data.hub import load_parquet, quick_shards, read_rows, source_of
from helpers.data.splits import Splits, Uint8Images, announce, real_or_stand_in
from helpers.errors import CourseError
from helpers.files import save_npz_atomic

SKETCH_CLASSES: tuple[str, ...] = ("apple", "bicycle", "cat", "diamond", "eye", "fish")
SOURCES = ("auto", "local", "hub", "synthetic")
LOCAL_FILE = "quickdraw_6class_28x28.npz"
LOCAL_HELDOUT_PER_CLASS = 300
HUB_DATASET = "zoheb/sketch-scene"
HUB_HELDOUT = 500  # the dataset's last 500 rows are held out (a tenth of a small copy)
HUB_ENV = "COURSE_HUB_SKETCHES"  # another hub id, or a folder holding its parquet shards
QUICK_ROWS = 3_500  # quick mode's real scene sketches: the first 3,500 rows, the last 500 of them held out
HUB_QUICK_SHARDS = 1  # ... read from its first parquet file (the hub lists the whole dataset as one file of ~139 MB)
SYNTHETIC_SIZES = {"quick": (400, 60), "full": (3_000, 300)}  # (train, held-out) drawings per class
TEMPLATES = ("a sketch of {}", "a drawing of {}", "a doodle of {}", "a simple line drawing of {}", "{}")


def class_caption(name: str, rng: random.Random | None = None) -> str:
    """"a sketch of a cat" / "a sketch of an apple" (rng=None: the canonical template) or a random template."""
    template = TEMPLATES[0] if rng is None else rng.choice(TEMPLATES)
    return template.format(("an " if name[0] in "aeiou" else "a ") + name)


# ------------------------------------------------------------------------------------------ containers
class SketchDataset(Uint8Images):
    """(sketch float (1, S, S) in [0, 1] (ink = 1), caption index int64, label int64)."""

    def __getitem__(self, index: int):
        return self.images[index].float() / 255.0, torch.tensor(index, dtype=torch.int64), self.rows[index]


@dataclass(repr=False)
class SketchSplits(Splits):
    train_images: torch.Tensor  # uint8 (N, 1, S, S), ink = 255
    train_captions: list[str]
    train_labels: torch.Tensor  # int64 (N,), -1 = no class
    test_images: torch.Tensor
    test_captions: list[str]
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    source: str
    dataset = SketchDataset

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 1, s, s) -> uint8 (N, 1, size, size), bilinear (antialiased when shrinking), in chunks."""
    if images.shape[-1] == size:
        return images
    out = torch.empty(len(images), 1, size, size, dtype=torch.uint8)
    for start in range(0, len(images), 2048):
        chunk = images[start:start + 2048].float()
        scaled = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False,
                               antialias=size < images.shape[-1])
        out[start:start + 2048] = scaled.round().clamp(0, 255).to(torch.uint8)
    return out


def _captions(labels: torch.Tensor, classes: tuple[str, ...], seed: int) -> list[str]:
    rng = random.Random(seed)
    return [class_caption(classes[int(label)], rng) for label in labels]


# ------------------------------------------------------------------------------------------ sources
def _load_local(path: Path, image_size: int, limit_per_class: int | None, seed: int) -> SketchSplits:
    arrays = np.load(path)
    missing = [name for name in SKETCH_CLASSES if name not in arrays]
    if missing:
        raise CourseError(f"{path} lacks the classes {missing}; expected {', '.join(SKETCH_CLASSES)}")
    train, test, train_labels, test_labels = [], [], [], []
    for label, name in enumerate(SKETCH_CLASSES):
        doodles = arrays[name]
        keep = doodles[:-LOCAL_HELDOUT_PER_CLASS]
        train.append(keep[:limit_per_class] if limit_per_class else keep)
        test.append(doodles[-LOCAL_HELDOUT_PER_CLASS:])
        train_labels += [label] * len(train[-1])
        test_labels += [label] * LOCAL_HELDOUT_PER_CLASS
    train_images = resize(torch.from_numpy(np.concatenate(train))[:, None], image_size)
    test_images = resize(torch.from_numpy(np.concatenate(test))[:, None], image_size)
    train_labels, test_labels = torch.tensor(train_labels), torch.tensor(test_labels)
    return SketchSplits(train_images, _captions(train_labels, SKETCH_CLASSES, seed), train_labels, test_images,
                        _captions(test_labels, SKETCH_CLASSES, seed + 1), test_labels, SKETCH_CLASSES,
                        f"local Quick, Draw! doodles {path} (last {LOCAL_HELDOUT_PER_CLASS}/class held out)")


def _hub_columns(features, source: str = HUB_DATASET) -> tuple[str, str]:
    image = next((name for name, f in features.items() if type(f).__name__ == "Image"), None)
    text = next((name for name, f in features.items() if getattr(f, "dtype", None) == "string"), None)
    if image is None or text is None:
        raise CourseError(f"{source} has columns {list(features)}: expected an image and a caption column")
    return image, text


def _to_ink(image: Image.Image, size: int) -> np.ndarray:
    """A dark-on-white sketch -> ink = 255 on 0, square-padded and resized."""
    gray = image.convert("L")
    side = max(gray.size)
    canvas = Image.new("L", (side, side), 255)
    canvas.paste(gray, ((side - gray.size[0]) // 2, (side - gray.size[1]) // 2))
    return 255 - np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def _hub_rows(cfg: CourseConfig, source: str, count: int | None, hint: str):
    """Full mode: every row of `source`. Quick mode: its first `count` rows (QUICK_ROWS when None), from its first
    HUB_QUICK_SHARDS parquet file(s), fetched once; Unavailable when they cannot be downloaded now."""
    if not cfg.quick:
        return load_parquet(cfg, source, hint)
    count = count or QUICK_ROWS
    shards = quick_shards(cfg, source, HUB_QUICK_SHARDS, f"quick mode's {count:,} real scene sketches", hint)
    return read_rows(shards, count, source, hint)


def _decoded_scenes(cfg: CourseConfig, rows, image_column: str, captions: list[str], size: int) -> np.ndarray:
    """The first len(captions) sketches of `rows` as ink, uint8 (N, 1, S, S): decoded once, then read from a cache
    under cfg.data_root / "cache" named by their count, size and captions."""
    digest = hashlib.sha1("\n".join(captions).encode()).hexdigest()[:12]
    cache = cfg.data_root / "cache" / f"sketch_scenes_{len(captions)}_{size}_{digest}.npz"
    if cache.exists():
        try:
            with np.load(cache) as stored:
                return stored["images"]
        except (OSError, ValueError, KeyError, EOFError):
            pass  # an unreadable cache is rebuilt, never trusted
    images = np.stack([_to_ink(rows[i][image_column], size) for i in range(len(captions))])[:, None]
    try:
        save_npz_atomic(cache, images=images)
    except OSError as error:
        warnings.warn(f"could not cache the decoded sketches in {cache} ({error}); they will be decoded again")
    return images


def _load_hub(cfg: CourseConfig, image_size: int, limit: int | None) -> SketchSplits:
    fallback = ("COURSE_OFFLINE=1 (procedural sketches)" if cfg.quick else
                "quick mode (COURSE_QUICK=1, procedural sketches)")
    hint = f"set COURSE_DATA to a folder holding {LOCAL_FILE} (Quick, Draw! doodles) or use {fallback}"
    source = source_of(HUB_ENV, HUB_DATASET)
    rows = _hub_rows(cfg, source, None if limit is None else limit + HUB_HELDOUT, hint)
    image_column, text_column = _hub_columns(rows.features, source)
    count = len(rows) if limit is None else min(len(rows), limit + HUB_HELDOUT)
    captions = [str(text).strip() for text in rows[text_column][:count]]
    images = torch.from_numpy(_decoded_scenes(cfg, rows, image_column, captions, image_size))
    labels = torch.full((count,), -1, dtype=torch.int64)
    cut = count - (HUB_HELDOUT if count > 2 * HUB_HELDOUT else max(1, count // 10))
    return SketchSplits(images[:cut], captions[:cut], labels[:cut], images[cut:], captions[cut:], labels[cut:], (),
                        f"hub {source}")


def _stroke(draw: ImageDraw.ImageDraw, points, width: int) -> None:
    draw.line(points, fill=255, width=width, joint="curve")


def _ellipse(cx, cy, rx, ry, turn: float, n: int = 28):
    return [(cx + rx * math.cos(a) * math.cos(turn) - ry * math.sin(a) * math.sin(turn),
             cy + rx * math.cos(a) * math.sin(turn) + ry * math.sin(a) * math.cos(turn))
            for a in np.linspace(0, 2 * math.pi, n)]


def synthetic_sketch(label: int, index: int, seed: int = 0, size: int = 128) -> np.ndarray:
    """Drawing `index` of class `label`: (size, size) uint8, ink = 255. Deterministic in (label, index, seed)."""
    rng = random.Random((seed * 1_000_003 + label) * 1_000_003 + index)
    big = 256
    image = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(image)
    s = rng.uniform(0.75, 1.1) * big / 2.6  # the drawing's radius
    cx, cy = big / 2 + rng.uniform(-0.1, 0.1) * big, big / 2 + rng.uniform(-0.1, 0.1) * big
    turn = rng.uniform(-0.25, 0.25)
    width = rng.randint(5, 9)
    wobble = lambda pts: [(x + rng.uniform(-3, 3), y + rng.uniform(-3, 3)) for x, y in pts]  # noqa: E731
    name = SKETCH_CLASSES[label]
    if name == "apple":
        _stroke(draw, wobble(_ellipse(cx, cy + 0.1 * s, 0.8 * s, 0.75 * s, turn)), width)
        _stroke(draw, [(cx, cy - 0.6 * s), (cx + 0.1 * s, cy - 1.0 * s)], width)
        _stroke(draw, wobble(_ellipse(cx + 0.3 * s, cy - 0.85 * s, 0.25 * s, 0.1 * s, turn - 0.5, 14)), width)
    elif name == "bicycle":
        r = 0.45 * s
        left, right = (cx - 0.6 * s, cy + 0.3 * s), (cx + 0.6 * s, cy + 0.3 * s)
        for x, y in (left, right):
            _stroke(draw, wobble(_ellipse(x, y, r, r, 0)), width)
        seat, bar = (cx - 0.2 * s, cy - 0.35 * s), (cx + 0.45 * s, cy - 0.4 * s)
        _stroke(draw, [left, seat, (cx + 0.1 * s, cy + 0.3 * s), left], width)
        _stroke(draw, [(cx + 0.1 * s, cy + 0.3 * s), bar, right], width)
        _stroke(draw, [seat, bar], width)
        _stroke(draw, [(bar[0] - 0.1 * s, bar[1] - 0.15 * s), (bar[0] + 0.15 * s, bar[1] - 0.15 * s)], width)
    elif name == "cat":
        _stroke(draw, wobble(_ellipse(cx, cy, 0.75 * s, 0.65 * s, turn)), width)
        for side in (-1, 1):
            _stroke(draw, [(cx + side * 0.6 * s, cy - 0.35 * s), (cx + side * 0.55 * s, cy - 1.0 * s),
                           (cx + side * 0.15 * s, cy - 0.62 * s)], width)
            draw.ellipse([cx + side * 0.3 * s - 6, cy - 0.15 * s - 6, cx + side * 0.3 * s + 6, cy - 0.15 * s + 6],
                         fill=255)
            for dy in (-0.05, 0.1):
                _stroke(draw, [(cx + side * 0.2 * s, cy + 0.2 * s), (cx + side * 0.95 * s, cy + (0.1 + dy) * s)],
                        max(2, width // 2))
    elif name == "diamond":
        top, bottom = (cx, cy - 0.95 * s), (cx, cy + 0.95 * s)
        left, right = (cx - 0.75 * s, cy - 0.25 * s), (cx + 0.75 * s, cy - 0.25 * s)
        _stroke(draw, wobble([top, right, bottom, left, top]), width)
        _stroke(draw, [left, right], width)
    elif name == "eye":
        upper = [(cx + 0.95 * s * math.cos(a), cy - 0.5 * s * math.sin(a)) for a in np.linspace(0, math.pi, 16)]
        lower = [(cx - 0.95 * s * math.cos(a), cy + 0.5 * s * math.sin(a)) for a in np.linspace(0, math.pi, 16)]
        _stroke(draw, wobble(upper + lower), width)
        _stroke(draw, wobble(_ellipse(cx, cy, 0.3 * s, 0.3 * s, 0)), width)
        draw.ellipse([cx - 0.12 * s, cy - 0.12 * s, cx + 0.12 * s, cy + 0.12 * s], fill=255)
    else:  # fish
        direction = rng.choice((-1, 1))
        _stroke(draw, wobble(_ellipse(cx - direction * 0.15 * s, cy, 0.7 * s, 0.4 * s, turn)), width)
        tail = cx + direction * 0.5 * s
        _stroke(draw, wobble([(tail, cy), (tail + direction * 0.5 * s, cy - 0.4 * s),
                              (tail + direction * 0.5 * s, cy + 0.4 * s), (tail, cy)]), width)
        eye = cx - direction * 0.55 * s
        draw.ellipse([eye - 6, cy - 0.12 * s - 6, eye + 6, cy - 0.12 * s + 6], fill=255)
    return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def synthetic_sketches(n_per_class: int, seed: int = 0, image_size: int = 128, start: int = 0
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 (N, 1, S, S), int64 (N,)) procedural drawings, classes dealt out in turn."""
    labels = np.tile(np.arange(len(SKETCH_CLASSES)), n_per_class)
    images = np.stack([synthetic_sketch(int(label), start + i // len(SKETCH_CLASSES), seed, image_size)
                       for i, label in enumerate(labels)]) if len(labels) else np.zeros((0, image_size, image_size))
    return torch.from_numpy(images.astype(np.uint8))[:, None], torch.from_numpy(labels.astype(np.int64))


def _load_synthetic(cfg: CourseConfig, image_size: int, limit_per_class: int | None) -> SketchSplits:
    n_train, n_test = SYNTHETIC_SIZES[cfg.mode]
    n_train = min(n_train, limit_per_class) if limit_per_class else n_train
    train_images, train_labels = synthetic_sketches(n_train, cfg.seed, image_size)
    test_images, test_labels = synthetic_sketches(n_test, cfg.seed, image_size, start=1_000_000)
    return SketchSplits(train_images, _captions(train_labels, SKETCH_CLASSES, cfg.seed), train_labels, test_images,
                        _captions(test_labels, SKETCH_CLASSES, cfg.seed + 1), test_labels, SKETCH_CLASSES,
                        f"synthetic sketches (seed {cfg.seed})")


# ------------------------------------------------------------------------------------------ entry point
def load_sketches(cfg: CourseConfig, source: str = "auto", image_size: int = 128,
                  limit_per_class: int | None = None) -> SketchSplits:
    """The sketches of this mode (see the module docstring for the order of sources); prints one line saying
    which they are and why. `limit_per_class` keeps the first k of each class (k x 10 rows of the captioned,
    classless scene sketches)."""
    if source not in SOURCES:
        raise CourseError(f"unknown sketch source {source!r}; choose one of {', '.join(SOURCES)}")
    if not isinstance(image_size, int) or image_size < 16 or image_size % 16:
        raise CourseError(f"image_size={image_size!r}: use a multiple of 16 (128 is the course's size)")
    local = cfg.local_data / LOCAL_FILE if cfg.local_data is not None else None
    why_not, hub_limit = "", None if limit_per_class is None else limit_per_class * 10
    if source == "local" or (source == "auto" and local is not None and local.exists()):
        if local is None or not local.exists():
            raise CourseError(f"no {LOCAL_FILE} in COURSE_DATA ({cfg.local_data}); set COURSE_DATA to the folder "
                              f"that holds it")
        data = _load_local(local, image_size, limit_per_class, cfg.seed)
        what, origin = "real Quick, Draw! doodles", f"COURSE_DATA's {LOCAL_FILE}, six classes"
    elif source in ("hub", "auto"):
        data, why_not = real_or_stand_in(cfg, source, lambda: _load_hub(cfg, image_size, hub_limit),
                                         lambda: _load_synthetic(cfg, image_size, limit_per_class))
        what = "procedural sketches of six classes" if why_not else "real scene sketches with sentence captions"
        origin = data.source[len("hub "):] if data.source.startswith("hub ") else data.source
    else:
        data = _load_synthetic(cfg, image_size, limit_per_class)
        what, origin = "procedural sketches of six classes", "source='synthetic'"
    announce(data, what, origin, why_not)
    return data
