"""One checkpoint format for every model: safetensors weights + a JSON file, written atomically.

A run folder holds
    checkpoint.json              kind, model config, epoch, file names and their sha256, anything extra
    model-e0005.safetensors      the weights (and buffers)
    state-e0005.safetensors      resume state: optimizer tensors, RNG state (structure kept in the JSON)
Files of a new epoch are written under new names first; `checkpoint.json` is replaced last with one
atomic rename, and only then are the old files removed. A run killed at any moment therefore leaves a
`checkpoint.json` that names a complete, matching set of files. Nothing is ever unpickled.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from helpers.errors import CourseError

FORMAT_VERSION = 1
INDEX = "checkpoint.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, write) -> None:
    """`write(tmp_path)` then fsync and rename over `path`: readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    _write_atomic(Path(path), lambda tmp: Path(tmp).write_text(text))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2))


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, structure = {}, {"param_groups": state_dict["param_groups"], "state": {}}
    for param_id, slots in state_dict["state"].items():
        structure["state"][str(param_id)] = {}
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param_id}.{name}"] = value.detach().cpu().contiguous()
                structure["state"][str(param_id)][name] = "tensor"
            else:
                structure["state"][str(param_id)][name] = value
    return tensors, structure


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], structure: dict) -> dict:
    state = {}
    for param_id, slots in structure["state"].items():
        state[int(param_id)] = {name: tensors[f"optimizer.{param_id}.{name}"] if value == "tensor" else value
                                for name, value in slots.items()}
    groups = [{k: tuple(v) if k == "betas" else v for k, v in group.items()} for group in structure["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(run_dir: str | Path, kind: str, model: torch.nn.Module, *, epoch: int = 0, step: int = 0,
                    optimizer: torch.optim.Optimizer | None = None, extra: dict | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write weights (+ resume state when `optimizer` is given) of `model` into `run_dir` atomically."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tag = f"e{epoch:04d}-s{step:07d}"
    model_file, state_file = f"model-{tag}.safetensors", f"state-{tag}.safetensors"
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _write_atomic(run_dir / model_file, lambda tmp: save_file(weights, str(tmp)))
    index: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "config": dataclasses.asdict(model.config),
        "epoch": epoch,
        "step": step,
        "files": {"model": model_file},
        "extra": extra or {},
    }
    state_tensors = dict(extra_tensors or {})
    if optimizer is not None:
        optimizer_tensors, index["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        state_tensors.update(optimizer_tensors)
        state_tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for device_index, rng in enumerate(torch.cuda.get_rng_state_all()):
                state_tensors[f"rng.cuda{device_index}"] = rng
    if state_tensors:
        _write_atomic(run_dir / state_file, lambda tmp: save_file(state_tensors, str(tmp)))
        index["files"]["state"] = state_file
    index["sha256"] = {role: _sha256(run_dir / name) for role, name in index["files"].items()}
    write_json_atomic(run_dir / INDEX, index)
    _fsync_dir(run_dir)
    keep = set(index["files"].values())
    for stale in run_dir.glob("*.safetensors"):
        if stale.name not in keep and (stale.name.startswith("model-") or stale.name.startswith("state-")):
            stale.unlink(missing_ok=True)
    return run_dir / INDEX


@dataclasses.dataclass
class Checkpoint:
    """What `read_checkpoint` returns: the JSON index, the weights, and the resume state (possibly empty)."""

    run_dir: Path
    index: dict
    weights: dict[str, torch.Tensor]
    state: dict[str, torch.Tensor]

    @property
    def kind(self) -> str:
        return self.index["kind"]

    def optimizer_state(self) -> dict | None:
        if "optimizer" not in self.index:
            return None
        return _unflatten_optimizer(self.state, self.index["optimizer"])

    def restore_rng(self) -> None:
        if "rng.torch" in self.state:
            torch.set_rng_state(self.state["rng.torch"])
        if torch.cuda.is_available():
            states = [self.state[k] for k in sorted(self.state) if k.startswith("rng.cuda")]
            if states:
                torch.cuda.set_rng_state_all(states)


def has_checkpoint(run_dir: str | Path) -> bool:
    return (Path(run_dir) / INDEX).exists()


def read_checkpoint(run_dir: str | Path, expected_kind: str | None = None, train_hint: str | None = None) -> Checkpoint:
    """Read and verify a checkpoint; every failure is a one-line CourseError saying what to do."""
    run_dir = Path(run_dir)
    hint = train_hint or (f"python -m helpers train {expected_kind} --out {run_dir}" if expected_kind else
                          "python -m helpers train <model>")
    index_path = run_dir / INDEX
    if not index_path.exists():
        raise CourseError(f"no checkpoint in {run_dir}: train one first with `{hint}`")
    try:
        index = json.loads(index_path.read_text())
        kind, files = index["kind"], index["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise CourseError(f"checkpoint in {run_dir} is corrupt ({INDEX}: {error}); retrain with `{hint}`") from None
    if expected_kind is not None and kind != expected_kind:
        raise CourseError(f"{run_dir} holds a '{kind}' checkpoint, not '{expected_kind}'; "
                          f"pass --checkpoint with a {expected_kind} run or train one with `{hint}`")
    tensors = {}
    for role, name in files.items():
        path = run_dir / name
        if not path.exists():
            raise CourseError(f"checkpoint in {run_dir} is incomplete ({name} is missing); retrain with `{hint}`")
        if index.get("sha256", {}).get(role) not in (None, _sha256(path)):
            raise CourseError(f"checkpoint in {run_dir} is corrupt ({name} does not match its checksum); "
                              f"retrain with `{hint}`")
        try:
            tensors[role] = load_file(str(path))
        except Exception as error:  # safetensors raises its own error types for damaged headers
            raise CourseError(f"checkpoint in {run_dir} is corrupt ({name}: {error}); retrain with `{hint}`") from None
    return Checkpoint(run_dir, index, tensors["model"], tensors.get("state", {}))


def load_weights(model: torch.nn.Module, checkpoint: Checkpoint) -> torch.nn.Module:
    try:
        model.load_state_dict(checkpoint.weights)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise CourseError(f"weights in {checkpoint.run_dir} do not fit a {checkpoint.kind} model ({first}); "
                          "retrain it with the current code") from None
    return model


def recorded_run(extra: dict, role: str, kind: str, retrain: str) -> Path:
    """The run folder of a model another one was trained on (`extra[role + "_run"]`), refusing one that is gone
    or changed since (`extra[role + "_sha256"]`): a generator means nothing on another CLIP's embeddings."""
    run_dir = Path(extra[f"{role}_run"])
    if not has_checkpoint(run_dir):
        raise CourseError(f"this model was trained on the {kind} in {run_dir}, which is gone; retrain it with `{retrain}`")
    if read_checkpoint(run_dir, kind).index["sha256"]["model"] != extra[f"{role}_sha256"]:
        raise CourseError(f"the {kind} in {run_dir} changed since this model was trained on it; retrain it "
                          f"with `{retrain}`")
    return run_dir


def record_run(run_dir: str | Path, role: str, kind: str) -> dict[str, str]:
    """What `recorded_run` checks later: where the run is and the checksum of its weights."""
    run_dir = Path(run_dir)
    return {f"{role}_run": str(run_dir.resolve()),
            f"{role}_sha256": read_checkpoint(run_dir, kind).index["sha256"]["model"]}
