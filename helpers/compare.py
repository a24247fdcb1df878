"""Notebook 09: every trained model of the course side by side.

    runs/<model> checkpoints --inventory--> one row per model: found?, parameters, epochs, train seconds, processes,
                                            the held-out metric its training loop recorded
                             --measure-->   the headline number its notebook measures, re-measured now with the
                                            judge of its domain (prompt / attribute / class accuracy, R@10, loss)
                             --grids-->     the same prompts through every model of a domain, one labelled grid
    missing checkpoints    --> listed with the command that trains them

Nothing here trains a generator: a model that is not in runs/ is reported missing. The judges are loaded (or, if
absent, trained in seconds) by the functions of the notebooks that introduced them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from helpers.checkpoint import has_checkpoint, read_index, stored_parameters
from helpers.config import CourseConfig
from helpers.errors import CourseError
from helpers.metrics import format_accuracy
from helpers.registry import ModelKind, kinds


@dataclass(frozen=True)
class Entry:
    """One row of the comparison: a run folder of a model kind that notebook 09 compares (one with a domain)."""

    name: str  # the run folder under runs/ and the row's name
    kind: ModelKind
    train: str  # the command that trains it

    @property
    def notebook(self) -> str:
        return self.kind.notebook

    @property
    def domain(self) -> str:
        return self.kind.domain

    @property
    def generates(self) -> bool:
        return self.kind.draw is not None


def entries() -> tuple[Entry, ...]:
    """Every run folder of every kind with a domain, in course order (from the registry)."""
    return tuple(Entry(name, item, item.train_command(options)) for item in kinds().values() if item.domain
                 for name, options in item.runs())


HELDOUT_PREFIXES = ("heldout", "test_", "zero_shot")


def entry(name: str) -> Entry:
    for candidate in entries():
        if candidate.name == name:
            return candidate
    raise CourseError(f"unknown model {name!r}; the course has {', '.join(e.name for e in entries())}")


# ------------------------------------------------------------------------------------------ inventory
def inventory(cfg: CourseConfig) -> list[dict]:
    """One row per model: what its checkpoint says (or that it is missing, and how to train it)."""
    rows = []
    for item in entries():
        run_dir = cfg.run_dir(item.name)
        row = {"model": item.name, "notebook": item.notebook, "run": str(run_dir), "found": has_checkpoint(run_dir),
               "train": item.train + ("" if run_dir == cfg.runs_dir / item.name else f" --out {run_dir}")}
        try:  # the index and the safetensors header only: no tensor is loaded or hashed
            index = read_index(run_dir) if row["found"] else None
            parameters = stored_parameters(run_dir, index) if row["found"] else None
        except CourseError as error:  # one damaged run is reported as such, the others still listed
            row.update(found=False, problem=str(error).split(";")[0])
            index = None
        if index is None:
            rows.append(row)
            continue
        extra, history = index["extra"], index["extra"].get("history", [])
        last = history[-1] if history else {}
        row.update({
            "parameters": parameters, "epochs": index.get("epoch"), "mode": extra.get("mode"),
            "train_seconds": last.get("train_seconds"), "processes": extra.get("processes", 1),
            "train_loss": last.get("loss"),
            "heldout": {k: v for k, v in last.items() if k.startswith(HELDOUT_PREFIXES) and isinstance(v, float)},
        })
        rows.append(row)
    return rows


def missing(rows: list[dict]) -> list[str]:
    """'model (notebook NN): command' for every model without a usable checkpoint."""
    return [f"{r['model']} (notebook {r['notebook']}): {r['train']}" + (f"  [{r['problem']}]" if "problem" in r else "")
            for r in rows if not r["found"]]


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def inventory_table(rows: list[dict]) -> str:
    lines = ["| model | nb | params | epochs | train s | processes | last train loss | held-out (from training) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r["found"]:
            state = f"unreadable ({r['problem']}), retrain" if "problem" in r else "missing"
            lines.append(f"| {r['model']} | {r['notebook']} | {state}: `{r['train']}` | | | | | |")
            continue
        heldout = ", ".join(f"{k} {v:.3g}" for k, v in r["heldout"].items()) or "–"
        lines.append(f"| {r['model']} | {r['notebook']} | {_fmt(r['parameters'], ',')} | {_fmt(r['epochs'], 'd')} | "
                     f"{_fmt(r['train_seconds'], '.0f')} | {r['processes']} | {_fmt(r['train_loss'], '.4g')} | "
                     f"{heldout} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ loading
def load(cfg: CourseConfig, name: str):
    """The trained model `name` as its notebook's wrapper (or the CLIP text encoder)."""
    item, run_dir = entry(name), cfg.run_dir(name)
    if not has_checkpoint(run_dir):
        raise CourseError(f"no checkpoint in {run_dir}: train it with `{item.train}`")
    return item.kind.load(cfg, run_dir)


# ------------------------------------------------------------------------------------------ prompts and drawing
def domain_prompts(domain: str) -> list[str]:
    """The prompts every model of a domain answers in the side-by-side grids."""
    if domain == "digits":
        return [f"Print number {d}" for d in (0, 2, 3, 5, 7, 9)]
    if domain == "faces":
        from helpers.faces import SINGLE_ATTRIBUTES, single_attribute_prompts

        return list(single_attribute_prompts(["Male", *SINGLE_ATTRIBUTES]))[:6]
    if domain == "cifar":
        return [f"a photo of a {c}" for c in ("airplane", "cat", "dog", "horse", "ship", "truck")]
    if domain == "sketches":
        from helpers.data.sketches import SKETCH_CLASSES, class_caption

        return [class_caption(c) for c in SKETCH_CLASSES]
    raise CourseError(f"unknown domain {domain!r}")


@torch.no_grad()
def draw(name: str, model, prompts: list[str], seed: int = 0) -> torch.Tensor:
    """One image per prompt, (P, 3, S, S) in [0, 1] (ink dark on white for sketches)."""
    item = entry(name)
    if not item.generates:
        raise CourseError(f"{name} does not draw images")
    images = item.kind.draw(model, prompts, seed).clamp(0, 1)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def side_by_side(cfg: CourseConfig, domain: str, loaded: dict, seed: int = 0):
    """A labelled grid for one domain (a row per model found, a column per prompt) and the column prompts."""
    import torch.nn.functional as F

    from helpers.viz import labelled_grid

    prompts = domain_prompts(domain)
    names = [e.name for e in entries() if e.domain == domain and e.generates and e.name in loaded]
    if not names:
        return None, prompts
    rows = [draw(n, loaded[n], prompts, seed) for n in names]
    size = max(r.shape[-1] for r in rows)
    rows = [F.interpolate(r, size=(size, size), mode="nearest") if r.shape[-1] != size else r for r in rows]
    return labelled_grid(torch.cat(rows), names, ncol=len(prompts), scale=max(1, 96 // size)), prompts


# ------------------------------------------------------------------------------------------ measuring
def measure(cfg: CourseConfig, name: str, model, *, n: int = 8, seed: int = 0) -> dict:
    """The headline number of `name`'s notebook, measured now: {'metric', 'value', 'judge', 'ms_per_sample',
    'seconds'}. `n` is the number of samples per prompt / class (small here; the notebooks and benchmarks use more)."""
    start = time.perf_counter()
    result = entry(name).kind.measure(cfg, model, n, seed)
    return {**result, "seconds": round(time.perf_counter() - start, 1)}


def format_value(m: dict) -> str:
    """A measured number as the tables print it: a share of `n` samples with its 95% interval
    ("81.2% (n=200, 95% CI 75.2-86.0%)"), else the value (a loss) as it is; the `extra` number in brackets."""
    if m.get("n") is not None:
        value = format_accuracy(m.get("value"), m["n"])
    else:
        value = _fmt(m.get("value"), ".1%" if "accuracy" in m["metric"] else ".3f")
    return value + (f" ({m['extra']:.3f})" if m.get("extra") is not None else "")


def format_baseline(m: dict) -> str:
    """'4x4 mean-colour classifier 37.9%': the trivial baseline's score on the same kind of images, or '–'."""
    return f"{m['baseline_name']} {m['baseline']:.1%}" if m.get("baseline") is not None else "–"


def measured_table(rows: list[dict], measured: dict[str, dict]) -> str:
    """Markdown: the inventory's size and time columns next to what was just measured, each judged number with its
    sample count and 95% interval, a trivial baseline on the same images, and the judge's own accuracy on real
    held-out data (with its count where it is a share of images)."""
    lines = ["| model | nb | measured now | value | trivial baseline | judge on real data | ms / sample | params | "
             "train s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["model"] not in measured:
            continue
        m = measured[r["model"]]
        judge = (format_accuracy(m["judge"], m["judge_n"]) if m.get("judge_n") is not None
                 else _fmt(m.get("judge"), ".1%"))
        lines.append(f"| {r['model']} | {r['notebook']} | {m['metric']} | {format_value(m)} | {format_baseline(m)} | "
                     f"{judge} | {_fmt(m.get('ms_per_sample'), '.1f')} | {_fmt(r['parameters'], ',')} | "
                     f"{_fmt(r['train_seconds'], '.0f')} |")
    return "\n".join(lines)


def write_report(path: str | Path, rows: list[dict], measured: dict[str, dict], grids: dict[str, str],
                 problems: dict[str, str] | None = None) -> Path:
    """The comparison as one Markdown file (tables + links to the grids), written atomically."""
    from helpers.files import write_text_atomic

    path = Path(path)
    parts = ["# Every model of the course, side by side", "", "## What the checkpoints say", "",
             inventory_table(rows), "", "## Measured now", "", measured_table(rows, measured), ""]
    if missing(rows):
        parts += ["## Missing (train them with)", ""] + [f"- {line}" for line in missing(rows)] + [""]
    if problems:
        parts += ["## Found but not measured", ""] + [f"- {name}: {why}" for name, why in problems.items()] + [""]
    for domain, image in grids.items():
        parts += [f"## {domain}: {', '.join(domain_prompts(domain))}", "", f"![{domain}]({image})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "\n".join(parts))
    return path
