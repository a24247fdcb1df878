"""Datasets of the Hugging Face hub, as folders of parquet shards: full mode's CelebA mirror and sketch scenes.

A hub dataset is a set of parquet files (`data/train-00000-of-00132.parquet`, ...). This module fetches them with
`huggingface_hub.snapshot_download` (resumable; a half-downloaded file is never taken for a whole one), checks
every shard before trusting it, and opens the whole ones with `datasets`:

- a shard must end in parquet's footer magic `PAR1`. Some public mirrors hold shards cut short at upload time
  (the CelebA mirror does); those are skipped with a warning, not read until they crash;
- the source may also be a local folder holding the same parquet files (a copy made elsewhere, or the stand-ins
  of `make smoke-full`): then nothing is downloaded, offline or not.

Every failure is one line that says what to set instead (`hint`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from helpers.config import CourseConfig
from helpers.errors import CourseError

PARQUET_MAGIC = b"PAR1"


def _fail(message: str, hint: str) -> CourseError:
    return CourseError(f"{message}; {hint}" if hint else message)


def whole_parquet(path: Path) -> bool:
    """True when `path` starts and ends with parquet's magic bytes (a truncated file lacks the final ones)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(max(0, size - 4))
            tail = handle.read(4)
    except OSError:
        return False
    return size > 8 and head == PARQUET_MAGIC and tail == PARQUET_MAGIC


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can a TCP connection to the hub (HF_ENDPOINT, default huggingface.co) be opened within `timeout` seconds?
    Without network, `huggingface_hub` retries every request with back-off for minutes before it gives up; this
    answers in at most `timeout` seconds (at once when the name does not resolve)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def source_of(env: str, default: str) -> str:
    """The dataset to read: the environment variable `env` (a hub id or a folder), else `default`."""
    return os.environ.get(env, "").strip() or default


def parquet_shards(cfg: CourseConfig, source: str, hint: str = "") -> list[Path]:
    """The whole parquet shards of `source` (a hub dataset id or a local folder), downloaded first if need be."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        if cfg.offline:
            raise _fail(f"offline (HF_HUB_OFFLINE/COURSE_OFFLINE is set): cannot download {source} from the "
                        f"Hugging Face hub", hint)
        if not hub_reachable():
            raise _fail(f"cannot download {source}: the Hugging Face hub cannot be reached", hint)
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(source, repo_type="dataset", allow_patterns=["*.parquet"],
                                            cache_dir=str(cfg.data_root / "huggingface")))
        except Exception as error:  # connection errors come in many types (requests, httpx, the hub's own)
            first = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
            raise _fail(f"cannot download {source} from the Hugging Face hub ({first})", hint) from None
    shards = sorted(folder.rglob("*.parquet"))
    whole = [shard for shard in shards if whole_parquet(shard)]
    if not whole:
        raise _fail(f"{source} holds no readable parquet shard ({len(shards)} found in {folder})", hint)
    if len(whole) < len(shards):
        broken = [shard.name for shard in shards if shard not in whole]
        warnings.warn(f"{source}: skipping {len(broken)} truncated shard(s) of {len(shards)} "
                      f"({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''})", stacklevel=2)
    return whole


def load_parquet(cfg: CourseConfig, source: str, hint: str = ""):
    """`source`'s whole shards as one `datasets.Dataset` (its image columns decode to PIL images)."""
    shards = parquet_shards(cfg, source, hint)
    try:
        from datasets import load_dataset

        return load_dataset("parquet", data_files=[str(shard) for shard in shards], split="train",
                            cache_dir=str(cfg.data_root / "huggingface" / "datasets"))
    except Exception as error:  # a shard with a valid footer can still be unreadable inside
        first = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise _fail(f"cannot read the parquet shards of {source} ({type(error).__name__}: {first})", hint) from None
