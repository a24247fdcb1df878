"""The one way the course writes a file: atomically.

`write_atomic(path, write)` lets `write` fill a temporary file beside `path` (same folder, same suffix, so libraries
that choose a format by extension still do), flushes it to disk and renames it over `path` in one step. A reader, or
a later run after a crash or Ctrl-C, sees the old file or the new one, never half of one; the temporary file is
removed whatever happens. Checkpoints, data caches, embeddings, images, GIFs, notebooks and results all use it.
"""
from __future__ import annotations

import hashlib

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` into a temporary file, then fsync and rename it over `path` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: str | Path, data: Any, indent: int = 2) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=indent))


def save_npz_atomic(path: str | Path, **arrays: np.ndarray) -> Path:
    """numpy arrays in one uncompressed .npz (the data caches)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    return write_atomic(path, write)


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (the renames into it) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file, read in 1 MiB blocks (checkpoints and downloaded networks are checked with it)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
