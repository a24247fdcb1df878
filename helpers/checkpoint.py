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
import json
import math
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from safetensors.torch import load_file, save_file

from helpers.errors import CourseError
from helpers.files import file_digest, fsync_dir, write_atomic, write_json_atomic

FORMAT_VERSION = 1
T = TypeVar("T")
INDEX = "checkpoint.json"


def _sha256(path: Path) -> str:
    return file_digest(path, "sha256")


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
    write_atomic(run_dir / model_file, lambda tmp: save_file(weights, str(tmp)))
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
        write_atomic(run_dir / state_file, lambda tmp: save_file(state_tensors, str(tmp)))
        index["files"]["state"] = state_file
    index["sha256"] = {role: _sha256(run_dir / name) for role, name in index["files"].items()}
    write_json_atomic(run_dir / INDEX, index)
    fsync_dir(run_dir)
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

    @property
    def ema_weights(self) -> dict[str, torch.Tensor]:
        """The exponential moving average of the weights saved with the resume state (empty if none was kept)."""
        return {k[len("ema."):]: v for k, v in self.state.items() if k.startswith("ema.")}

    def rebuild(self, model_class: type[torch.nn.Module], *, ema: bool = False,
                train_hint: str | None = None) -> torch.nn.Module:
        """The network this checkpoint holds, rebuilt from its saved config and loaded with its weights (`ema`: the
        averaged ones), in eval mode on the CPU. The config class is the one `model_class.__init__` declares for its
        `config` argument, so every model of the course is rebuilt the same way (as diffusers' ConfigMixin does)."""
        hint = _train_hint(self.run_dir, self.kind, train_hint)
        config_class = typing.get_type_hints(model_class.__init__)["config"]
        try:
            model = model_class(config_class(**self.index["config"]))
        except TypeError as error:
            raise CourseError(f"the config in {self.run_dir} does not fit a {model_class.__name__} ({error}); "
                              f"retrain with `{hint}`") from None
        weights = self.ema_weights if ema else self.weights
        if ema and not weights:
            raise CourseError(f"{self.run_dir} holds no EMA weights; retrain with `{hint}` or pass use_ema=False")
        return load_weights(model, self, weights).eval()

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


def read_index(run_dir: str | Path, expected_kind: str | None = None, train_hint: str | None = None) -> dict:
    """A checkpoint's JSON index alone (kind, config, epoch, checksums, extra), without reading or hashing its
    tensors; every failure is a one-line CourseError saying what to do."""
    run_dir = Path(run_dir)
    hint = _train_hint(run_dir, expected_kind, train_hint)
    index_path = run_dir / INDEX
    if not index_path.exists():
        raise CourseError(f"no checkpoint in {run_dir}: train one first with `{hint}`")
    try:
        index = json.loads(index_path.read_text())
        kind, files = index["kind"], index["files"]
        if not isinstance(files, dict) or "model" not in files:
            raise KeyError("files.model")
    except (ValueError, KeyError, TypeError) as error:
        raise CourseError(f"checkpoint in {run_dir} is corrupt ({INDEX}: {error}); retrain with `{hint}`") from None
    if expected_kind is not None and kind != expected_kind:
        raise CourseError(f"{run_dir} holds a '{kind}' checkpoint, not '{expected_kind}'; "
                          f"pass --checkpoint with a {expected_kind} run or train one with `{hint}`")
    return index


def _train_hint(run_dir: Path, expected_kind: str | None, train_hint: str | None) -> str:
    return train_hint or (f"python -m helpers train {expected_kind} --out {run_dir}" if expected_kind else
                          "python -m helpers train <model>")


def read_checkpoint(run_dir: str | Path, expected_kind: str | None = None, train_hint: str | None = None) -> Checkpoint:
    """Read and verify a checkpoint (index, then every file against its sha256); every failure is a one-line
    CourseError saying what to do."""
    run_dir = Path(run_dir)
    index = read_index(run_dir, expected_kind, train_hint)
    hint, files = _train_hint(run_dir, expected_kind, train_hint), index["files"]
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


def load_or_train(run_dir: str | Path, kind: str, *, mode: str, source: str, load: Callable[[Path], T],
                  train: Callable[[], T], accept: Callable[[dict], bool] = lambda extra: True) -> T:
    """The one reuse policy of the models that measure or condition other models (judges, CLIPs).

    The checkpoint in `run_dir` is reused when it is readable, was trained on the same data (`source`) in this
    `mode` or in full mode (a full-mode judge grades quick runs too; a quick one never grades a full run), and
    `accept(extra)` agrees (e.g. the image size); otherwise `train()` trains one now, in its place. A damaged
    checkpoint is reported and replaced, never trusted; a folder holding another kind of model is refused, not
    overwritten."""
    run_dir = Path(run_dir)
    if has_checkpoint(run_dir):
        try:
            index = read_index(run_dir)
        except CourseError as error:
            index = None
            print(f"not reusing {run_dir} ({str(error).split(';')[0]}): training a new {kind} over it", flush=True)
        if index is not None:
            if index["kind"] != kind:
                read_index(run_dir, kind)  # raises: "holds a '...' checkpoint, not '...'"
            extra = index.get("extra", {})
            if extra.get("data") == source and extra.get("mode") in (mode, "full") and accept(extra):
                try:
                    return load(run_dir)
                except CourseError as error:
                    print(f"not reusing {run_dir} ({str(error).split(';')[0]}): training a new {kind} over it",
                          flush=True)
    return train()


def stored_parameters(run_dir: str | Path, index: dict | None = None) -> int:
    """How many floating-point numbers the checkpoint's weights hold, read from the safetensors header alone
    (no tensor is loaded or hashed); a damaged file is a one-line CourseError."""
    from safetensors import safe_open

    run_dir = Path(run_dir)
    name = (index or read_index(run_dir))["files"]["model"]
    try:
        with safe_open(str(run_dir / name), framework="pt") as weights:
            slices = [weights.get_slice(key) for key in weights.keys()]
            return sum(math.prod(s.get_shape()) for s in slices if s.get_dtype().startswith(("F", "BF")))
    except Exception as error:  # missing or damaged file: safetensors raises its own error types
        raise CourseError(f"checkpoint in {run_dir} is corrupt ({name}: {error}); retrain it") from None


def load_weights(model: torch.nn.Module, checkpoint: Checkpoint,
                 weights: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """`weights` (default: the checkpoint's) into `model`; a mismatch is a one-line CourseError."""
    try:
        model.load_state_dict(checkpoint.weights if weights is None else weights)
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
    if read_index(run_dir, kind)["sha256"]["model"] != extra[f"{role}_sha256"]:
        raise CourseError(f"the {kind} in {run_dir} changed since this model was trained on it; retrain it "
                          f"with `{retrain}`")
    return run_dir


def record_run(run_dir: str | Path, role: str, kind: str) -> dict[str, str]:
    """What `recorded_run` checks later: where the run is and the checksum of its weights."""
    run_dir = Path(run_dir)
    return {f"{role}_run": str(run_dir.resolve()),
            f"{role}_sha256": read_index(run_dir, kind)["sha256"]["model"]}
