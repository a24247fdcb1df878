"""Datasets of the Hugging Face hub, as folders of parquet shards: the CelebA mirror and sketch scenes.

A hub dataset is a set of parquet files (`data/train-00000-of-00132.parquet`, ...). Full mode fetches all of them
with `huggingface_hub.snapshot_download` (`load_parquet`); quick mode fetches only its first few, file by file with
`hf_hub_download`, into the same cache (`quick_shards`, then `read_rows` keeps the first N rows in memory): a later
full run reuses them. Both are resumable (a half-downloaded file is never taken for a whole one), every shard is
checked before it is trusted, and the whole ones are opened with `datasets`:

- a shard must end in parquet's footer magic `PAR1`. Some public mirrors hold shards cut short at upload time
  (the CelebA mirror does); those are skipped with a warning, not read until they crash;
- the source may also be a local folder holding the same parquet files (a copy made elsewhere, or the stand-ins
  of `make smoke-full`): then nothing is downloaded, offline or not.

Every failure is one line that says what to set instead (`hint`); a download that cannot happen (offline, the
hub out of reach, a failed transfer) is an `Unavailable`, on which quick mode falls back to its procedural stand-in.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from helpers.config import CourseConfig
from helpers.data.splits import download_notice, host_reachable
from helpers.errors import CourseError, Unavailable
from helpers.files import write_json_atomic

PARQUET_MAGIC = b"PAR1"


def _fail(message: str, hint: str) -> CourseError:
    return CourseError(f"{message}; {hint}" if hint else message)


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:160] if str(error) else type(error).__name__


def _check_online(cfg: CourseConfig, source: str, hint: str) -> None:
    """Unavailable at once (no retries, no waiting) when downloads are forbidden or the hub cannot be reached."""
    if cfg.offline:
        raise Unavailable(f"offline (HF_HUB_OFFLINE/COURSE_OFFLINE is set): cannot download {source} from the "
                          f"Hugging Face hub", hint)
    if not hub_reachable():
        raise Unavailable(f"cannot download {source}: the Hugging Face hub cannot be reached", hint)


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
    """Can the hub (HF_ENDPOINT, default huggingface.co) be reached within `timeout` seconds? Without network,
    `huggingface_hub` retries every request with back-off for minutes before it gives up; this answers in at most
    `timeout` seconds (at once when the name does not resolve)."""
    from huggingface_hub import constants

    return host_reachable(constants.ENDPOINT, timeout)


def source_of(env: str, default: str) -> str:
    """The dataset to read: the environment variable `env` (a hub id or a folder), else `default`."""
    return os.environ.get(env, "").strip() or default


def parquet_shards(cfg: CourseConfig, source: str, hint: str = "") -> list[Path]:
    """The whole parquet shards of `source` (a hub dataset id or a local folder), downloaded first if need be."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        _check_online(cfg, source, hint)
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(source, repo_type="dataset", allow_patterns=["*.parquet"],
                                            cache_dir=str(cfg.data_root / "huggingface")))
        except Exception as error:  # connection errors come in many types (requests, httpx, the hub's own)
            raise Unavailable(f"cannot download {source} from the Hugging Face hub ({_first_line(error)})",
                              hint) from None
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
        raise _fail(f"cannot read the parquet shards of {source} ({type(error).__name__}: {_first_line(error)})",
                    hint) from None


# ------------------------------------------------------------------------------------------ quick mode's subset
def _marker(cfg: CourseConfig, source: str) -> Path:
    return cfg.data_root / "huggingface" / "quick" / f"{source.replace('/', '--')}.json"


def _cached_quick(cfg: CourseConfig, source: str, count: int) -> list[Path] | None:
    """The shards a previous quick download left, when its marker lists `count` (or all there were) and every
    one of them is still whole; else None."""
    cache = cfg.data_root / "huggingface"
    try:
        stored = json.loads(_marker(cfg, source).read_text())
        shards = [cache / name for name in stored["shards"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    enough = len(shards) >= count or stored.get("all")
    return shards[:count] if shards and enough and all(whole_parquet(s) for s in shards) else None


def quick_shards(cfg: CourseConfig, source: str, count: int, what: str, hint: str = "") -> list[Path]:
    """The first `count` whole parquet shards of `source` (a hub dataset id or a local folder), for quick mode.

    A local folder's shards are used as they are. A hub dataset's are listed (one request, with their sizes),
    announced (`what`, total size, estimated time) and fetched one file at a time with `hf_hub_download` and its
    progress bar, into the cache full mode's snapshot uses. A truncated shard is skipped for the next one. The set
    is kept whole-or-nothing: a marker naming the shards is written only once all of them are whole, and a later
    run (offline too) reads them without the network. Unavailable when they cannot be downloaded now."""
    if Path(source).expanduser().is_dir():
        return parquet_shards(cfg, source, hint)[:count]
    cached = _cached_quick(cfg, source, count)
    if cached is not None:
        return cached
    _check_online(cfg, source, hint)
    cache = cfg.data_root / "huggingface"
    try:
        from huggingface_hub import HfApi, hf_hub_download

        listing = HfApi().list_repo_tree(source, repo_type="dataset", recursive=True)
        files = sorted((f for f in listing if f.path.endswith(".parquet") and getattr(f, "size", None)),
                       key=lambda f: f.path)
    except Exception as error:  # connection errors come in many types (requests, httpx, the hub's own)
        raise Unavailable(f"cannot list {source} on the Hugging Face hub ({_first_line(error)})", hint) from None
    if not files:
        raise _fail(f"{source} lists no parquet file on the Hugging Face hub", hint)
    print(download_notice(f"{what}: {min(count, len(files))} of the {len(files)} parquet shards of {source}",
                          sum(f.size for f in files[:count]), cache))
    whole = []
    for file in files:
        if len(whole) == count:
            break
        try:
            path = Path(hf_hub_download(source, file.path, repo_type="dataset", cache_dir=str(cache)))
        except Exception as error:
            raise Unavailable(f"cannot download {file.path} of {source} from the Hugging Face hub "
                              f"({_first_line(error)})", hint) from None
        if whole_parquet(path):
            whole.append(path)
        else:  # some mirrors hold shards cut short at upload time
            warnings.warn(f"{source}: {file.path} is truncated; taking the next shard instead", stacklevel=2)
    if not whole:
        raise _fail(f"{source} holds no readable parquet shard ({len(files)} listed)", hint)
    write_json_atomic(_marker(cfg, source), {"shards": [str(p.relative_to(cache)) for p in whole],
                                             "all": len(whole) < count})  # written last: the set is whole
    return whole


def read_rows(shards: list[Path], limit: int, source: str, hint: str = ""):
    """The first `limit` rows of `shards` (in order) as an in-memory `datasets.Dataset`: only the row groups
    needed are read, nothing is copied into a cache, and image columns decode to PIL images as `load_parquet`'s."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from datasets import Dataset
        from datasets.table import InMemoryTable

        batches, schema, rows = [], None, 0
        for shard in shards:
            parquet = pq.ParquetFile(shard)
            schema = schema or parquet.schema_arrow  # its metadata carries the features (the image column)
            for batch in parquet.iter_batches(batch_size=min(1000, limit)):
                batches.append(batch.slice(0, limit - rows))
                rows += len(batches[-1])
                if rows >= limit:
                    break
            if rows >= limit:
                break
        return Dataset(InMemoryTable(pa.Table.from_batches(batches, schema=schema)))
    except Exception as error:  # a shard with a valid footer can still be unreadable inside
        raise _fail(f"cannot read the parquet shards of {source} ({type(error).__name__}: {_first_line(error)})",
                    hint) from None
