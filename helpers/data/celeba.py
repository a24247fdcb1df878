"""CelebA faces and their 40 yes/no attributes, for notebooks 03-04 (CLIP, then text-to-face generation).

Every face comes with a row of 40 binary attributes (`ATTRIBUTES`, CelebA's own order): Smiling, Eyeglasses,
Male, Blond_Hair, ... `helpers.data.captions` turns such a row into an English caption, which is how a
dataset without a single sentence in it can teach a text encoder.

Sources, first match wins for `source="auto"`; the loader prints one line saying which it is and why:
1. `COURSE_DATA` holding `celeba_5k_align_89x109.tar` + `celeba_5k_attrs.csv`: 5,000 real aligned faces at
   half resolution, read straight from the tar (nothing is extracted); the last 500 ids are held out.
2. full mode: the ~200k CelebA faces from the Hugging Face mirror `huggan/CelebA-faces-with-attributes`
   (parquet shards, `helpers.data.hub`; `COURSE_HUB_CELEBA` names another id or a local folder of them), or,
   when the hub cannot be reached, downloaded by torchvision (Google Drive, which often refuses: quota).
   Quick mode: the same mirror's first 5,000 faces (4,500 to train, the last 500 held out), from its first 4
   parquet shards only (~42 MB of the 132 shards; never the 200k set), fetched once, file by file, with their
   size and estimated time printed first and the hub's progress bar; a later run reads them from the cache,
   offline too.
3. quick mode when those shards cannot be had (offline: COURSE_OFFLINE=1 or HF_HUB_OFFLINE=1; the hub out of
   reach, answered within 3 s; a failed transfer): `synthetic_faces`, procedural cartoon faces drawn from sampled
   attributes, with the same 40-column table, so every notebook runs anywhere in seconds.

Images are kept as uint8 (N, 3, S, S) — a quarter of the memory of float32, which matters for 200k faces —
and become floats in [-1, 1] only when a batch is read (`to_float`). Preprocessing (a square crop around the
face, then an antialiased resize to S) runs once; its result is cached under `cfg.data_root / "cache"`.
"""
from __future__ import annotations

import csv
import io
import json
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from helpers.config import CourseConfig
from helpers.data.hub import load_parquet, quick_shards, read_rows, source_of
from helpers.data.splits import Splits, Uint8Images, announce, choose_source, real_or_stand_in
from helpers.errors import CourseError
from helpers.files import save_npz_atomic, write_atomic, write_json_atomic

ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
COLUMN = {name: index for index, name in enumerate(ATTRIBUTES)}  # attribute name -> column of the table

SOURCES = ("auto", "local", "download", "synthetic")
LOCAL_TAR = "celeba_5k_align_89x109.tar"
LOCAL_CSV = "celeba_5k_attrs.csv"
LOCAL_HELDOUT = 500  # the last 500 image ids of the local sample
HF_MIRROR = "huggan/CelebA-faces-with-attributes"
HF_HELDOUT = 10_000  # the mirror has one split: its last 10,000 rows are held out (a tenth of a small copy)
MIRROR_ENV = "COURSE_HUB_CELEBA"  # another hub id, or a folder holding the mirror's parquet shards
QUICK_FACES = 5_000  # quick mode's real faces: the mirror's first 5,000 rows, the last 500 of them held out
QUICK_SHARDS = 4  # the mirror holds 202,599 faces in 132 shards of ~10.6 MB (~1,535 each): 4 hold ~6,100
SYNTHETIC_SIZES = {"quick": (4_000, 500), "full": (20_000, 2_000)}  # (train, test) procedural faces
CACHE_VERSION = 1  # bump when the crop or the resize changes: old caches are then rebuilt


# ------------------------------------------------------------------------------------------ tensors
def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (any shape) -> float32 in [-1, 1], the range the models work in."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float images in [-1, 1] -> uint8 (values outside the range are clipped)."""
    return images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


class FaceDataset(Uint8Images):
    """(image float (3, S, S) in [-1, 1], attributes float (40,) of 0/1, index int64); memory stays uint8."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return to_float(self.images[index]), self.rows[index].float(), torch.tensor(index, dtype=torch.int64)


@dataclass(repr=False)
class FaceSplits(Splits):
    """uint8 images (N, 3, S, S) and uint8 attributes (N, 40) of 0/1, for training and for held-out tests."""

    train_images: torch.Tensor
    train_attrs: torch.Tensor
    test_images: torch.Tensor
    test_attrs: torch.Tensor
    source: str
    image_size: int = 64
    dataset = FaceDataset
    rows = "attrs"


def _as_splits(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], source: str,
               image_size: int, limit: int | None) -> FaceSplits:
    train_images, train_attrs = train if limit is None else (train[0][:limit], train[1][:limit])
    return FaceSplits(torch.from_numpy(train_images), torch.from_numpy(train_attrs),
                      torch.from_numpy(test[0]), torch.from_numpy(test[1]), source, image_size)


# ------------------------------------------------------------------------------------------ preprocessing
def face_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The square around the face of an aligned CelebA image (178x218: 140x140, top 40; scaled for other sizes)."""
    side = width * 140 / 178
    left, top = (width - side) / 2, height * 40 / 218
    return left, top, left + side, top + side


def crop_resize(image: Image.Image, size: int) -> np.ndarray:
    """Aligned face -> uint8 (3, size, size): square crop around the face, antialiased (Lanczos) resize."""
    if getattr(image, "format", None) == "JPEG":  # decode a JPEG at a reduced scale when that still leaves
        left, _, right, _ = face_box(*image.size)  # at least `size` pixels across the face: 2-4x faster
        scale = size / (right - left)
        image.draft("RGB", (int(image.width * scale) + 1, int(image.height * scale) + 1))
    image = image.convert("RGB")
    resized = image.resize((size, size), Image.LANCZOS, box=face_box(*image.size))
    return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)


# ------------------------------------------------------------------------------------------ 1. local sample
def _local_files(cfg: CourseConfig) -> tuple[Path, Path] | None:
    if cfg.local_data is None:
        return None
    tar, table = cfg.local_data / LOCAL_TAR, cfg.local_data / LOCAL_CSV
    return (tar, table) if tar.exists() and table.exists() else None


def read_attribute_csv(path: Path) -> dict[str, np.ndarray]:
    """`image_id` then the 40 attributes as -1/1 -> {image id: uint8 row of 0/1}."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as error:
        raise CourseError(f"cannot read {path} ({error}); point COURSE_DATA at a folder holding {LOCAL_CSV}") from None
    if not rows or tuple(rows[0][1:]) != ATTRIBUTES:
        raise CourseError(f"{path} does not start with image_id and CelebA's 40 attribute names; "
                          "use the official list_attr_celeba columns")
    try:
        return {row[0]: (np.asarray(row[1:], dtype=np.int64) > 0).astype(np.uint8) for row in rows[1:] if row}
    except ValueError:
        raise CourseError(f"{path} holds values other than -1/1; use the official attribute table") from None


def _read_local(tar_path: Path, csv_path: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode every face of the tar that has an attribute row, sorted by image id."""
    table = read_attribute_csv(csv_path)
    faces: dict[str, np.ndarray] = {}
    try:
        with tarfile.open(tar_path) as archive:
            for member in archive:  # sequential reads: a plain tar is one pass over the file
                name = Path(member.name).name
                if member.isfile() and name in table:
                    faces[name] = crop_resize(Image.open(io.BytesIO(archive.extractfile(member).read())), size)
    except (OSError, tarfile.TarError) as error:
        raise CourseError(f"cannot read {tar_path} ({error}); delete it or point COURSE_DATA elsewhere") from None
    if not faces:
        raise CourseError(f"no image of {tar_path} has a row in {csv_path}; are they from the same sample?")
    ids = sorted(faces)
    return np.stack([faces[i] for i in ids]), np.stack([table[i] for i in ids]), ids


def _load_local(cfg: CourseConfig, tar_path: Path, csv_path: Path, size: int) -> tuple[tuple, tuple]:
    cache = cfg.data_root / "cache" / f"celeba_local5k_{size}.npz"
    signature = f"v{CACHE_VERSION} {tar_path.stat().st_size} {csv_path.stat().st_size}"
    arrays = None
    if cache.exists():
        try:
            with np.load(cache) as stored:
                if str(stored["signature"]) == signature:
                    arrays = stored["images"], stored["attrs"]
        except (OSError, ValueError, KeyError):
            arrays = None  # an unreadable or older cache is rebuilt, never trusted
    if arrays is None:
        images, attrs, _ = _read_local(tar_path, csv_path, size)
        arrays = images, attrs
        try:
            save_npz_atomic(cache, images=images, attrs=attrs, signature=np.array(signature))
        except OSError as error:
            warnings.warn(f"could not cache the preprocessed faces in {cache} ({error}); they will be decoded again")
    images, attrs = arrays
    heldout = LOCAL_HELDOUT if len(images) > 2 * LOCAL_HELDOUT else len(images) // 10
    cut = len(images) - heldout
    return (images[:cut], attrs[:cut]), (images[cut:], attrs[cut:])


# ------------------------------------------------------------------------------------------ 2. full CelebA
def _full_paths(cfg: CourseConfig, size: int, name: str = "full") -> dict[str, Path]:
    folder = cfg.data_root / "cache"
    paths = {f"{split}_{kind}": folder / f"celeba_{name}_{size}_{split}_{kind}.npy"
             for split in ("train", "test") for kind in ("images", "attrs")}
    paths["done"] = folder / f"celeba_{name}_{size}.json"  # written last: its presence means the cache is whole
    return paths


def _read_full_cache(paths: dict[str, Path]) -> tuple[tuple, tuple, str] | None:
    if not all(path.exists() for path in paths.values()):
        return None
    info = json.loads(paths["done"].read_text())
    if info.get("version") != CACHE_VERSION:
        return None
    # copy-on-write memory maps: pages are read from disk only when a batch touches them
    load = {key: np.load(path, mmap_mode="c") for key, path in paths.items() if key != "done"}
    return (load["train_images"], load["train_attrs"]), (load["test_images"], load["test_attrs"]), info["source"]


def _write_split(images_path: Path, attrs_path: Path, items: Iterable[tuple[Image.Image, np.ndarray]],
                 count: int, size: int, label: str) -> None:
    """Stream `count` (image, attribute row) pairs into .npy files, one face at a time, never all in memory."""
    from tqdm.auto import tqdm

    attrs = np.zeros((count, len(ATTRIBUTES)), dtype=np.uint8)

    def fill(tmp: Path) -> None:
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count, 3, size, size))
        written = 0
        for index, (image, row) in enumerate(tqdm(items, total=count, desc=label, mininterval=2)):
            if index >= count:
                break
            images[index], attrs[index] = crop_resize(image, size), row
            written += 1
        if written != count:
            raise RuntimeError(f"{label}: expected {count} faces, got {written}")
        images.flush()
        del images

    write_atomic(images_path, fill)  # the caller's "done" marker, written last, says both files are whole
    write_atomic(attrs_path, lambda tmp: np.save(tmp, attrs))


def _torchvision_items(dataset) -> Iterator[tuple[Image.Image, np.ndarray]]:
    names = [name for name in getattr(dataset, "attr_names", ATTRIBUTES) if name]
    order = [names.index(name) for name in ATTRIBUTES]  # torchvision keeps the file's column order
    table = (dataset.attr.numpy()[:, order] > 0).astype(np.uint8)  # torchvision already maps -1/1 to 0/1
    for index in range(len(table)):
        yield dataset[index][0], table[index]


def _from_torchvision(cfg: CourseConfig, paths: dict[str, Path], size: int, download: bool) -> str:
    from torchvision.datasets import CelebA

    for split in ("train", "test"):
        dataset = CelebA(root=str(cfg.data_root), split=split, target_type="attr", download=download)
        _write_split(paths[f"{split}_images"], paths[f"{split}_attrs"], _torchvision_items(dataset),
                     len(dataset), size, f"CelebA {split} -> {size}x{size}")
    return f"torchvision CelebA in {cfg.data_root}"


def _mirror_columns(features) -> tuple[str, list[str]]:
    """The image column and, for each of ATTRIBUTES, the mirror's column of the same name (case, '_' ignored)."""
    by_key = {name.lower().replace("_", "").replace(" ", ""): name for name in features}
    missing = [a for a in ATTRIBUTES if a.lower().replace("_", "") not in by_key]
    image_columns = [name for name, kind in features.items() if type(kind).__name__ == "Image"]
    if missing or not image_columns:
        raise RuntimeError(f"unexpected columns in {HF_MIRROR}: missing {missing or 'an image column'}")
    return image_columns[0], [by_key[a.lower().replace("_", "")] for a in ATTRIBUTES]


def _mirror_items(dataset, rows: range, image_column: str, columns: list[str], chunk: int = 1000):
    for start in range(rows.start, rows.stop, chunk):
        batch = dataset[start:min(start + chunk, rows.stop)]
        table = np.stack([np.asarray(batch[c], dtype=np.float32) for c in columns], axis=1)
        yield from zip(batch[image_column], (table > 0).astype(np.uint8))  # -1/1, 0/1 or bools alike


def _from_mirror(cfg: CourseConfig, paths: dict[str, Path], size: int, source: str, dataset=None) -> str:
    """Preprocess the mirror's rows (all its shards, or `dataset`: quick mode's first rows) into the cache `paths`."""
    dataset = load_parquet(cfg, source) if dataset is None else dataset
    image_column, columns = _mirror_columns(dataset.features)
    heldout = HF_HELDOUT if len(dataset) > 2 * HF_HELDOUT else max(1, len(dataset) // 10)
    cut = len(dataset) - heldout  # the last rows (the highest ids) are held out, deterministically
    for split, rows in (("train", range(0, cut)), ("test", range(cut, len(dataset)))):
        _write_split(paths[f"{split}_images"], paths[f"{split}_attrs"],
                     _mirror_items(dataset, rows, image_column, columns), len(rows), size,
                     f"CelebA mirror {split} -> {size}x{size}")
    return f"Hugging Face {source} in {cfg.data_root}" if source == HF_MIRROR else f"CelebA parquet shards {source}"


def _cache_fix_mirror(cfg: CourseConfig, size: int, name: str, procedural: str) -> tuple:
    """What both downloading loaders start from: the cache paths of `name`, the cached splits (None when the cache
    is not whole), the advice every error of theirs ends with (`procedural`: the setting that gives procedural
    faces instead), and the mirror to download from."""
    paths = _full_paths(cfg, size, name)
    fix = f"set COURSE_DATA=<folder with {LOCAL_TAR} + {LOCAL_CSV}> or {procedural} (procedural faces, no download)"
    return paths, _read_full_cache(paths), fix, source_of(MIRROR_ENV, HF_MIRROR)


def _load_full(cfg: CourseConfig, size: int) -> tuple[tuple, tuple, str]:
    """The cached full CelebA, else made from the Hugging Face mirror (first) or torchvision's download."""
    paths, cached, fix, mirror = _cache_fix_mirror(cfg, size, "full", "COURSE_QUICK=1")
    if cached is not None:
        return cached
    local_mirror = Path(mirror).expanduser().is_dir()
    torchvision_there = (cfg.data_root / "celeba" / "list_attr_celeba.txt").exists()
    attempts = []
    if local_mirror or not cfg.offline:
        attempts.append((f"the mirror {mirror}", lambda: _from_mirror(cfg, paths, size, mirror)))
    if torchvision_there or not cfg.offline:
        attempts.append(("torchvision CelebA (Google Drive)",
                         lambda: _from_torchvision(cfg, paths, size, not torchvision_there)))
    if not attempts:
        raise CourseError(f"offline (HF_HUB_OFFLINE/COURSE_OFFLINE is set) and no CelebA in {cfg.data_root}: "
                          f"neither the mirror {HF_MIRROR} nor torchvision's CelebA (Google Drive) can be "
                          f"downloaded; go online once, or {fix}")
    failures = []
    for name, attempt in attempts:
        try:
            source = attempt()
        except Exception as error:  # Drive quota, no network, a changed mirror: all end in the same advice
            reason = str(error).splitlines()[0][:200] if isinstance(error, CourseError) else type(error).__name__
            failures.append(f"{name}: {reason}")
            continue
        write_json_atomic(paths["done"], {"version": CACHE_VERSION, "source": source})  # last: the cache is whole
        return _read_full_cache(paths)
    raise CourseError(f"CelebA could not be downloaded into {cfg.data_root} ({'; '.join(failures)}); "
                      f"check your connection, or {fix}")


def _load_quick_mirror(cfg: CourseConfig, size: int) -> tuple[tuple, tuple, str]:
    """Quick mode's real faces: the mirror's first QUICK_FACES rows, from its first QUICK_SHARDS parquet shards
    (fetched once, file by file, never the 200k set), preprocessed once into a cache of their own.
    Unavailable when the shards cannot be downloaded now."""
    paths, cached, fix, mirror = _cache_fix_mirror(cfg, size, "quick", "COURSE_OFFLINE=1")
    if cached is not None:
        return cached
    shards = quick_shards(cfg, mirror, QUICK_SHARDS, f"quick mode's {QUICK_FACES:,} real CelebA faces", fix)
    rows = read_rows(shards, QUICK_FACES, mirror, fix)
    try:
        source = f"{_from_mirror(cfg, paths, size, mirror, rows)}, its first {len(rows):,} faces"
    except RuntimeError as error:  # columns that are not the mirror's
        raise CourseError(f"cannot read {mirror} ({error}); {fix}") from None
    write_json_atomic(paths["done"], {"version": CACHE_VERSION, "source": source})  # last: the cache is whole
    return _read_full_cache(paths)


# ------------------------------------------------------------------------------------------ 3. synthetic
# Attributes that `synthetic_faces` draws; the others are sampled (same schema) but leave no visible trace.
DRAWN = ("5_o_Clock_Shadow", "Arched_Eyebrows", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
         "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
         "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "Male", "Mouth_Slightly_Open", "Mustache",
         "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
         "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
         "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young")


def sample_attributes(n: int, rng: np.random.Generator) -> np.ndarray:
    """n rows of 40 attributes (uint8 0/1) with CelebA-like frequencies and dependencies.

    Beards, mustaches and neckties only for men; lipstick, makeup, earrings mostly for women; at most one hair
    colour; bald only without a hat, bangs or hair texture. Visible rare attributes (eyeglasses, hats, neckties)
    are made 2-3x more frequent than in CelebA so that 4,000 faces hold enough examples of each.
    """
    def chance(p) -> np.ndarray:
        return rng.random(n) < p

    a = {name: np.zeros(n, dtype=bool) for name in ATTRIBUTES}
    male, young = chance(0.42), chance(0.75)
    a["Male"], a["Young"] = male, young
    a["Bald"] = male & chance(np.where(young, 0.03, 0.15))
    colour = rng.choice(5, size=n, p=[0.28, 0.17, 0.25, 0.06, 0.24])  # black, blond, brown, gray, none
    colour = np.where(~young & chance(0.35), 3, colour)  # older faces go gray more often
    colour = np.where(male & (colour == 1) & chance(0.7), 2, colour)  # fewer blond men
    for index, name in enumerate(("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")):
        a[name] = (colour == index) & ~a["Bald"]
    hairy = ~a["Bald"]
    a["Wearing_Hat"] = hairy & chance(0.10)
    a["Bangs"] = hairy & ~a["Wearing_Hat"] & chance(np.where(male, 0.07, 0.25))
    a["Receding_Hairline"] = hairy & ~a["Bangs"] & ~a["Wearing_Hat"] & chance(
        np.where(male, np.where(young, 0.06, 0.3), 0.03))
    texture = rng.choice(3, size=n, p=[0.25, 0.35, 0.40])  # straight, wavy, unlabelled
    a["Straight_Hair"] = hairy & (texture == 0)
    a["Wavy_Hair"] = hairy & (texture == 1) & chance(np.where(male, 0.5, 1.0))
    a["Eyeglasses"] = chance(np.where(young, 0.10, 0.22))
    bearded = male & chance(0.4)
    a["No_Beard"] = ~bearded
    a["Goatee"] = bearded & chance(0.35)
    a["Mustache"] = bearded & chance(0.45)
    a["Sideburns"] = bearded & chance(0.35)
    a["5_o_Clock_Shadow"] = male & ~bearded & chance(0.25)
    a["Wearing_Lipstick"] = ~male & chance(0.8)
    a["Heavy_Makeup"] = a["Wearing_Lipstick"] & chance(np.where(young, 0.75, 0.45))
    a["Smiling"] = chance(0.48)
    a["Mouth_Slightly_Open"] = chance(np.where(a["Smiling"], 0.65, 0.3))
    a["High_Cheekbones"] = chance(np.where(a["Smiling"], 0.75, 0.15))
    a["Wearing_Earrings"] = chance(np.where(male, 0.02, 0.38))
    a["Wearing_Necklace"] = chance(np.where(male, 0.01, 0.22))
    a["Wearing_Necktie"] = male & chance(0.18)
    a["Rosy_Cheeks"] = chance(np.where(male, 0.01, 0.13))
    a["Pale_Skin"] = chance(0.07)
    a["Chubby"] = chance(np.where(young, 0.04, 0.14))
    a["Double_Chin"] = chance(np.where(a["Chubby"], 0.5, np.where(young, 0.01, 0.08)))
    a["Bags_Under_Eyes"] = chance(np.where(young, 0.12, 0.5))
    a["Narrow_Eyes"] = chance(0.12)
    a["Arched_Eyebrows"] = chance(np.where(male, 0.05, 0.45))
    a["Bushy_Eyebrows"] = ~a["Arched_Eyebrows"] & chance(np.where(male, 0.28, 0.05))
    a["Big_Lips"] = chance(0.24)
    a["Big_Nose"] = chance(np.where(male, 0.38, 0.1))
    a["Pointy_Nose"] = ~a["Big_Nose"] & chance(np.where(male, 0.15, 0.4))
    a["Oval_Face"] = ~a["Chubby"] & chance(0.3)
    a["Attractive"] = chance(np.where(young, np.where(male, 0.4, 0.7), 0.15))
    a["Blurry"] = chance(0.05)
    return np.stack([a[name] for name in ATTRIBUTES], axis=1).astype(np.uint8)


SKIN_LIGHT, SKIN_DARK, SKIN_PALE = np.array([242, 206, 178]), np.array([118, 78, 54]), np.array([252, 232, 220])
HAIR = {"Black_Hair": (28, 24, 26), "Blond_Hair": (232, 196, 110), "Brown_Hair": (112, 68, 36),
        "Gray_Hair": (176, 176, 180)}
OTHER_HAIR = ((150, 62, 30), (75, 45, 25), (120, 90, 60))  # auburn, dark brown, light brown: no colour label
HAT_COLOURS = ((200, 40, 40), (40, 80, 190), (30, 130, 70), (230, 200, 50), (120, 50, 140), (240, 240, 240))
CLOTHES = ((60, 60, 80), (150, 40, 50), (40, 100, 140), (220, 220, 210), (90, 110, 60), (30, 30, 30))
TIES = ((180, 20, 30), (20, 40, 140), (120, 20, 100))
N_RANDOM = 24  # uniform numbers per face that place and colour its parts
SYNTHETIC_BLOCK = 256  # faces sampled per random generator


def _mix(colour, other, t: float) -> tuple[int, int, int]:
    return tuple(int(round(c * (1 - t) + o * t)) for c, o in zip(colour, other))


def _draw_face(on: dict[str, bool], u: np.ndarray, size: int) -> Image.Image:
    """One face on a 2x canvas (the caller halves it: cheap antialiasing). `u`: N_RANDOM uniforms in [0, 1)."""
    c = 2 * size
    image = Image.new("RGB", (c, c), _mix((70, 90, 120), (210, 200, 185), u[0]) if u[1] < 0.6 else
                      tuple(int(60 + 150 * v) for v in u[2:5]))
    draw = ImageDraw.Draw(image, "RGBA")  # RGBA fills blend onto the picture (shadows, blush)

    def xy(*points: float) -> list[float]:  # positions are fractions of the canvas
        return [p * c for p in points]

    def width(fraction: float) -> int:
        return max(1, round(fraction * c))

    male, young = on["Male"], on["Young"]
    cx, cy = 0.5 + (u[5] - 0.5) * 0.06, 0.5 + (u[6] - 0.5) * 0.06
    rx = 0.21 + u[7] * 0.03 + 0.035 * on["Chubby"] - 0.012 * on["Oval_Face"]
    ry = 0.28 + u[8] * 0.03 + 0.015 * on["Oval_Face"]
    skin = tuple(SKIN_PALE) if on["Pale_Skin"] else _mix(SKIN_LIGHT, SKIN_DARK, u[9] ** 2 * 0.9 + 0.05)
    shade = _mix(skin, (60, 30, 20), 0.35)
    named = [name for name in HAIR if on[name]]
    hair = HAIR[named[0]] if named else OTHER_HAIR[int(u[10] * len(OTHER_HAIR))]
    hair_dark = _mix(hair, (0, 0, 0), 0.35)
    beard = hair if not on["Blond_Hair"] else _mix(hair, (90, 60, 30), 0.4)
    has_hair = not on["Bald"]

    # body, neck, necktie, necklace
    draw.ellipse(xy(cx - 0.42, 0.84, cx + 0.42, 1.35), fill=CLOTHES[int(u[11] * len(CLOTHES))])
    draw.rectangle(xy(cx - 0.085, cy + ry * 0.6, cx + 0.085, 0.9), fill=shade)
    if on["Wearing_Necktie"]:
        draw.polygon(xy(cx - 0.11, 0.86, cx, 0.93, cx + 0.11, 0.86, cx + 0.07, 1.0, cx - 0.07, 1.0),
                     fill=(245, 245, 245))  # shirt collar
        draw.polygon(xy(cx - 0.03, 0.875, cx + 0.03, 0.875, cx + 0.045, 1.0, cx - 0.045, 1.0),
                     fill=TIES[int(u[12] * len(TIES))])
    if on["Wearing_Necklace"]:
        draw.arc(xy(cx - 0.11, 0.72, cx + 0.11, 0.93), 20, 160, fill=(250, 215, 90), width=width(0.018))
    # long hair behind the head (women), ears, earrings
    if has_hair and not male:
        bottom = cy + ry * (1.15 + 0.35 * u[13])
        draw.rounded_rectangle(xy(cx - rx - 0.075, cy - ry - 0.04, cx + rx + 0.075, bottom), radius=0.12 * c, fill=hair)
    for side in (-1, 1):
        draw.ellipse(xy(cx + side * rx - 0.035, cy - 0.05, cx + side * rx + 0.035, cy + 0.06), fill=skin)
        if on["Wearing_Earrings"]:
            ex = cx + side * (rx + 0.005)
            draw.ellipse(xy(ex - 0.02, cy + 0.06, ex + 0.02, cy + 0.1), fill=(245, 205, 60))
    # face, jaw, chin, facial hair
    draw.ellipse(xy(cx - rx, cy - ry, cx + rx, cy + ry), fill=skin)
    if male:  # a squarer jaw
        draw.rounded_rectangle(xy(cx - rx * 0.93, cy, cx + rx * 0.93, cy + ry * 0.97), radius=0.07 * c, fill=skin)
    if on["Double_Chin"]:
        draw.arc(xy(cx - rx * 0.5, cy + ry * 0.72, cx + rx * 0.5, cy + ry * 1.08), 20, 160, fill=shade,
                 width=width(0.014))
    if on["5_o_Clock_Shadow"]:
        draw.chord(xy(cx - rx, cy - ry, cx + rx, cy + ry), 10, 170, fill=(70, 60, 60, 70))
        draw.rectangle(xy(cx - rx * 0.93, cy + ry * 0.15, cx + rx * 0.93, cy + ry * 0.97), fill=(70, 60, 60, 70))
    full_beard = not on["No_Beard"] and (not on["Goatee"] or u[14] < 0.3)  # most goatees stand alone
    if full_beard:
        draw.chord(xy(cx - rx, cy - ry * 0.9, cx + rx, cy + ry * 1.02), 5, 175, fill=beard)
        draw.rounded_rectangle(xy(cx - rx * 0.93, cy + ry * 0.1, cx + rx * 0.93, cy + ry * 1.0),
                               radius=0.07 * c, fill=beard)
        draw.ellipse(xy(cx - rx * 0.45, cy + ry * 0.28, cx + rx * 0.45, cy + ry * 0.8), fill=skin)  # around the mouth
    if on["Goatee"]:
        draw.ellipse(xy(cx - rx * 0.33, cy + ry * 0.72, cx + rx * 0.33, cy + ry * 1.04), fill=beard)
    if on["Sideburns"]:
        for side in (-1, 1):
            x0 = cx + side * rx * 0.95
            draw.rectangle(xy(min(x0, x0 - side * 0.05), cy - ry * 0.35, max(x0, x0 - side * 0.05), cy + ry * 0.35),
                           fill=hair_dark)
    # hair on top (and short sides for men), bangs, receding hairline, strands
    if has_hair:
        top = cy - ry * (1.12 + 0.08 * u[15])
        hairline = cy - ry * (0.72 if on["Receding_Hairline"] else 0.48 + 0.05 * u[16])
        draw.chord(xy(cx - rx * 1.1, top, cx + rx * 1.1, 2 * hairline - top), 180, 360, fill=hair)
        if male:
            for side in (-1, 1):
                x0 = cx + side * rx * 1.02
                inner = x0 - side * 0.06
                draw.rectangle(xy(min(x0, inner), hairline - 0.02, max(x0, inner), cy - ry * 0.15), fill=hair)
        if on["Bangs"]:  # a zig-zag fringe down to just above the eyebrows
            teeth = 5
            points = [cx - rx * 0.9, hairline - 0.03]
            for k in range(teeth + 1):
                points += [cx - rx * 0.9 + k * (1.8 * rx / teeth), cy - ry * (0.22 if k % 2 else 0.3)]
            points += [cx + rx * 0.9, hairline - 0.03]
            draw.polygon(xy(*points), fill=hair)
        if on["Wavy_Hair"] or on["Straight_Hair"]:  # strands: down the long hair, or across a man's crown
            if male:
                strands = [(cx + k * rx * 0.45, top + 0.03, hairline - 0.015) for k in (-1, 0, 1)]
            else:
                strands = [(cx + side * (rx + 0.04), cy - ry * 0.6, cy + ry * 1.2) for side in (-1, 1)]
            for x0, y0, y1 in strands:
                ys = np.linspace(y0, y1, 7)
                xs = x0 + (0.02 * np.sin(np.arange(7) * 1.6) if on["Wavy_Hair"] else np.zeros(7))
                draw.line([(x * c, y * c) for x, y in zip(xs, ys)], fill=hair_dark, width=width(0.014))
    # eyes, makeup, bags, eyebrows, eyeglasses
    ey, ex = cy - ry * 0.1, rx * 0.42
    eye_h = 0.012 if on["Narrow_Eyes"] else 0.026
    iris = ((70, 45, 25), (60, 100, 150), (70, 110, 60))[int(u[17] * 3)]
    brow = _mix(hair, (40, 30, 25), 0.5) if has_hair else _mix(skin, (40, 30, 25), 0.6)
    for side in (-1, 1):
        x = cx + side * ex
        if on["Heavy_Makeup"]:
            draw.ellipse(xy(x - 0.06, ey - 0.05, x + 0.06, ey + 0.015), fill=(120, 60, 140, 150))
        if on["Bags_Under_Eyes"]:
            draw.arc(xy(x - 0.04, ey - 0.01, x + 0.04, ey + 0.045), 20, 160, fill=(90, 60, 60, 150), width=width(0.01))
        draw.ellipse(xy(x - 0.045, ey - eye_h, x + 0.045, ey + eye_h), fill=(248, 248, 248),
                     outline=(20, 20, 20) if on["Heavy_Makeup"] else None, width=width(0.008))
        draw.ellipse(xy(x - 0.018, ey - min(eye_h, 0.018), x + 0.018, ey + min(eye_h, 0.018)), fill=iris)
        draw.ellipse(xy(x - 0.007, ey - 0.007, x + 0.007, ey + 0.007), fill=(10, 10, 10))
        thick = width(0.024 if on["Bushy_Eyebrows"] else 0.011)
        by = ey - 0.055
        if on["Arched_Eyebrows"]:
            draw.arc(xy(x - 0.05, by - 0.01, x + 0.05, by + 0.05), 200, 340, fill=brow, width=thick)
        else:
            draw.line(xy(x - 0.05, by + 0.012, x + 0.05, by + 0.012 - side * 0.004), fill=brow, width=thick)
    if on["Eyeglasses"]:
        dark = (15, 15, 15) if u[18] < 0.7 else (110, 40, 30)
        for side in (-1, 1):
            x = cx + side * ex
            draw.ellipse(xy(x - 0.07, ey - 0.05, x + 0.07, ey + 0.05), outline=dark, width=width(0.02))
            draw.line(xy(x + side * 0.07, ey - 0.01, cx + side * (rx + 0.01), ey - 0.02), fill=dark, width=width(0.016))
        draw.line(xy(cx - ex + 0.07, ey - 0.01, cx + ex - 0.07, ey - 0.01), fill=dark, width=width(0.016))
    # nose, cheeks, wrinkles
    nose_w = 0.045 if on["Big_Nose"] else 0.028
    ny = cy + ry * 0.3
    if on["Pointy_Nose"]:
        draw.polygon(xy(cx, ey + 0.02, cx - nose_w, ny, cx + nose_w, ny), fill=(60, 30, 20, 60))
    draw.line(xy(cx + 0.005, ey + 0.02, cx + 0.01, ny - 0.01), fill=shade, width=width(0.009))
    draw.arc(xy(cx - nose_w, ny - 0.03, cx + nose_w, ny + 0.012), 20, 160, fill=shade, width=width(0.011))
    if on["Rosy_Cheeks"] or on["Heavy_Makeup"]:
        alpha = 130 if on["Rosy_Cheeks"] else 60
        for side in (-1, 1):
            x = cx + side * rx * 0.58
            draw.ellipse(xy(x - 0.045, cy + ry * 0.12, x + 0.045, cy + ry * 0.42), fill=(235, 70, 90, alpha))
    if not young:  # forehead lines (where the hair leaves room) and lines beside the mouth
        for k in range(2):
            y = cy - ry * (0.62 - 0.1 * k)
            if has_hair and y < cy - ry * (0.72 if on["Receding_Hairline"] else 0.5):
                continue
            draw.arc(xy(cx - rx * 0.5, y, cx + rx * 0.5, y + 0.05), 200, 340, fill=shade, width=width(0.008))
        for side in (-1, 1):
            x = cx + side * rx * 0.32
            draw.line(xy(x, cy + ry * 0.3, x + side * 0.02, cy + ry * 0.62), fill=shade, width=width(0.009))
    # mouth and mustache
    my = cy + ry * 0.55
    mw = rx * (0.6 if on["Smiling"] else 0.38)
    lips = (195, 25, 55) if on["Wearing_Lipstick"] else _mix(skin, (150, 50, 60), 0.5)
    lip_w = width(0.026 if on["Big_Lips"] else 0.016)
    if on["Mustache"]:
        draw.polygon(xy(cx - mw * 1.1, my - 0.005, cx, my - 0.045, cx + mw * 1.1, my - 0.005, cx, my - 0.02),
                     fill=beard)
    if on["Smiling"] and on["Mouth_Slightly_Open"]:  # a grin with teeth
        draw.chord(xy(cx - mw, my - 0.05, cx + mw, my + 0.065), 0, 180, fill=(70, 15, 20), outline=lips, width=lip_w)
        draw.rectangle(xy(cx - mw * 0.75, my - 0.003, cx + mw * 0.75, my + 0.014), fill=(250, 250, 245))
    elif on["Smiling"]:  # a wide upward arc with raised corners
        draw.arc(xy(cx - mw, my - 0.07, cx + mw, my + 0.035), 10, 170, fill=lips, width=lip_w + 2)
    elif on["Mouth_Slightly_Open"]:  # a small dark oval
        draw.ellipse(xy(cx - mw * 0.55, my - 0.018, cx + mw * 0.55, my + 0.022), fill=(70, 15, 20), outline=lips,
                     width=lip_w)
    else:  # a straight line
        draw.line(xy(cx - mw, my, cx + mw, my), fill=lips, width=lip_w)
    # hat on top of everything
    if on["Wearing_Hat"]:
        hat = HAT_COLOURS[int(u[19] * len(HAT_COLOURS))]
        band = cy - ry * 0.55
        if u[20] < 0.5:  # a beanie
            draw.chord(xy(cx - rx * 1.15, cy - ry * 1.35, cx + rx * 1.15, 2 * band - (cy - ry * 1.35) + 0.02),
                       180, 360, fill=hat)
            draw.rectangle(xy(cx - rx * 1.15, band - 0.05, cx + rx * 1.15, band + 0.02), fill=_mix(hat, (0, 0, 0), 0.3))
        else:  # a brimmed hat
            draw.rounded_rectangle(xy(cx - rx * 0.95, cy - ry * 1.45, cx + rx * 0.95, band), radius=0.05 * c, fill=hat)
            draw.rectangle(xy(cx - rx * 0.95, band - 0.05, cx + rx * 0.95, band - 0.02),
                           fill=_mix(hat, (0, 0, 0), 0.45))
            draw.ellipse(xy(cx - rx * 1.55, band - 0.035, cx + rx * 1.55, band + 0.03), fill=_mix(hat, (0, 0, 0), 0.15))
    return image


def synthetic_faces(n: int, seed: int = 0, image_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` procedural cartoon faces and their attributes: (uint8 (n, 3, S, S), uint8 (n, 40) of 0/1).

    The same seed gives the same faces, and the first k of them do not depend on n.
    Drawn (see `DRAWN`): hair colour (black, blond, brown, gray, or an unlabelled auburn/brown), bald, bangs,
    receding hairline, wavy/straight strands, long hair for women and a squarer jaw with short hair for men,
    eyes (narrow), eyebrows (arched, bushy), eyeglasses, smile, open mouth, big lips, lipstick, heavy makeup
    (eye shadow + blush), rosy cheeks, beard, goatee, mustache, sideburns, stubble, big/pointy nose, double chin,
    chubby/oval face, bags under the eyes, wrinkles for older faces, pale skin, hat, earrings, necklace, necktie,
    blur. Attractive and High_Cheekbones are only sampled
    (High_Cheekbones follows Smiling, as in CelebA).
    """
    if n < 0 or image_size < 16:
        raise ValueError(f"need n >= 0 and image_size >= 16, got n={n}, image_size={image_size}")
    attrs, uniforms, noise_seeds = [], [], []
    for block in range(-(-n // SYNTHETIC_BLOCK)):  # whole blocks: the first k faces never depend on n
        rng = np.random.default_rng([seed, block])
        attrs.append(sample_attributes(SYNTHETIC_BLOCK, rng))
        uniforms.append(rng.random((SYNTHETIC_BLOCK, N_RANDOM)))
        noise_seeds.append(rng.integers(0, 2**31, size=SYNTHETIC_BLOCK))
    attrs = np.concatenate(attrs)[:n] if n else np.zeros((0, len(ATTRIBUTES)), dtype=np.uint8)
    uniforms, noise_seeds = (np.concatenate(x)[:n] if n else x for x in (uniforms, noise_seeds))
    images = np.empty((n, 3, image_size, image_size), dtype=np.uint8)
    for index in range(n):
        on = {name: bool(v) for name, v in zip(ATTRIBUTES, attrs[index])}
        face = _draw_face(on, uniforms[index], image_size).reduce(2)
        if on["Blurry"]:
            face = face.filter(ImageFilter.GaussianBlur(radius=1.3 * image_size / 64))
        pixels = np.asarray(face, dtype=np.int16)
        grain = np.random.default_rng(noise_seeds[index]).integers(-6, 7, size=pixels.shape[:2], dtype=np.int16)
        images[index] = np.clip(pixels + grain[..., None], 0, 255).astype(np.uint8).transpose(2, 0, 1)
    return torch.from_numpy(images), torch.from_numpy(attrs)


def _load_synthetic(cfg: CourseConfig, size: int) -> tuple[tuple, tuple]:
    n_train, n_test = SYNTHETIC_SIZES[cfg.mode]
    images, attrs = synthetic_faces(n_train + n_test, seed=cfg.seed, image_size=size)
    images, attrs = images.numpy(), attrs.numpy()
    return (images[:n_train], attrs[:n_train]), (images[n_train:], attrs[n_train:])


# ------------------------------------------------------------------------------------------ entry point
def load_celeba(cfg: CourseConfig, source: str = "auto", image_size: int = 64, limit: int | None = None) -> FaceSplits:
    """The faces for this run mode (see the module docstring); `limit` keeps the first N training faces. Prints
    one line saying which faces they are and why.

    `source`: "auto" (local sample > download: the full set in full mode, the mirror's first 5,000 faces in quick
    mode, which falls back to the procedural faces when they cannot be had), or force "local", "download",
    "synthetic". Raises CourseError with what to do when a forced source (or full mode's) is not reachable.
    """
    if source not in SOURCES:
        raise CourseError(f"unknown CelebA source {source!r}; choose one of {', '.join(SOURCES)}")
    if limit is not None and limit < 1:
        raise CourseError(f"limit={limit} keeps no training face; pass None or a positive number")
    files = _local_files(cfg)
    asked, why_not = source, ""
    source = choose_source(cfg, source, bool(files), "download", needs=f"{LOCAL_TAR} and {LOCAL_CSV}")
    if source == "local":
        train, test = _load_local(cfg, *files, image_size)
        data = _as_splits(train, test, f"local CelebA sample {files[0]}", image_size, limit)
        origin = f"COURSE_DATA's {LOCAL_TAR}"
    elif source == "download":
        def synthetic() -> tuple:
            return (*_load_synthetic(cfg, image_size), f"synthetic faces (seed {cfg.seed})")

        fetch = (lambda: _load_quick_mirror(cfg, image_size)) if cfg.quick else (lambda: _load_full(cfg, image_size))
        (train, test, where), why_not = real_or_stand_in(cfg, asked, fetch, synthetic)
        data = _as_splits(train, test, where, image_size, limit)
        origin = where
    else:
        train, test = _load_synthetic(cfg, image_size)
        data = _as_splits(train, test, f"synthetic faces (seed {cfg.seed})", image_size, limit)
        origin = "source='synthetic'"
    announce(data, "procedural faces" if data.source.startswith("synthetic") else "real CelebA faces", origin,
             why_not)
    return data
