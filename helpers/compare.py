"""Notebook 08: every trained model of the course side by side.

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
from typing import Callable

import torch

from helpers.checkpoint import has_checkpoint, read_index, stored_parameters
from helpers.config import CourseConfig
from helpers.errors import CourseError


@dataclass(frozen=True)
class Entry:
    name: str  # the run folder under runs/ and the row's name
    notebook: str
    domain: str  # models of one domain answer the same prompts
    kind: str  # the CLI's model name
    train: str  # the command that trains it

    @property
    def generates(self) -> bool:
        return self.kind != "clip"


def _entry(name: str, notebook: str, domain: str, kind: str | None = None, options: str = "") -> Entry:
    kind = kind or name
    return Entry(name, notebook, domain, kind, f"python -m helpers train {kind}{options}")


ENTRIES = (
    _entry("vae", "01", "digits"),
    _entry("text-cvae", "02", "digits"),
    _entry("clip", "03", "faces"),
    _entry("celeba-cvae", "04", "faces"),
    _entry("celeba-cvae-clip", "04", "faces", "celeba-cvae", " --condition clip"),
    _entry("celeba-gan", "04", "faces"),
    _entry("celeba-gan-clip", "04", "faces", "celeba-gan", " --condition clip"),
    _entry("ldm", "05", "faces"),
    _entry("cifar-ddpm", "06", "cifar"),
    _entry("sketch-cvae", "07", "sketches"),
)
HELDOUT_PREFIXES = ("heldout", "test_", "zero_shot")


def entry(name: str) -> Entry:
    for candidate in ENTRIES:
        if candidate.name == name:
            return candidate
    raise CourseError(f"unknown model {name!r}; the course has {', '.join(e.name for e in ENTRIES)}")


# ------------------------------------------------------------------------------------------ inventory
def inventory(cfg: CourseConfig) -> list[dict]:
    """One row per model: what its checkpoint says (or that it is missing, and how to train it)."""
    rows = []
    for item in ENTRIES:
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
    if name == "vae":
        from helpers.digits import load_vae

        return load_vae(run_dir, cfg.device)
    if name == "text-cvae":
        from helpers.digits import TextToDigit

        return TextToDigit.from_checkpoint(run_dir, cfg)
    if name == "clip":
        from helpers.clip import load_clip

        return load_clip(cfg, run_dir)
    if name.startswith("celeba-"):
        from helpers.faces import PromptToFace

        return PromptToFace.from_checkpoint(run_dir, cfg)
    if name == "ldm":
        from helpers.ldm import TextToFace

        return TextToFace.from_checkpoint(run_dir, cfg)
    if name == "cifar-ddpm":
        from helpers.cifar import ClassToImage

        return ClassToImage.from_checkpoint(run_dir, cfg.device)
    from helpers.sketch import TextToSketch

    return TextToSketch.from_checkpoint(run_dir, cfg)


# ------------------------------------------------------------------------------------------ prompts and drawing
def domain_prompts(domain: str) -> list[str]:
    """The prompts every model of a domain answers in the side-by-side grids."""
    if domain == "digits":
        return [f"Print number {d}" for d in (0, 2, 3, 5, 7, 9)]
    if domain == "faces":
        from helpers.ldm import SINGLE_ATTRIBUTES, single_attribute_prompts

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
    if name == "vae":  # unconditional: it cannot read a prompt, so it draws whatever it draws
        z = torch.randn(len(prompts), model.config.latent_dim, generator=torch.Generator().manual_seed(seed))
        images = torch.sigmoid(model.decode(z.to(next(model.parameters()).device))).cpu()
    elif name == "text-cvae":
        images = torch.cat([model(p, n=1, seed=seed)[0] for p in prompts])
    elif name.startswith("celeba-"):
        images = torch.cat([model(p, n=1, seed=seed)[0] for p in prompts]).add(1).div(2)
    elif name == "ldm":
        images = model.generate(prompts, seed=seed).add(1).div(2)
    elif name == "cifar-ddpm":
        images = torch.cat([model(p, n=1, seed=seed)[0] for p in prompts]).add(1).div(2)
    elif name == "sketch-cvae":
        images = 1 - model.generate(prompts, seed=seed)
    else:
        raise CourseError(f"{name} does not draw images")
    images = images.clamp(0, 1)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def side_by_side(cfg: CourseConfig, domain: str, loaded: dict, seed: int = 0):
    """A labelled grid for one domain (a row per model found, a column per prompt) and the column prompts."""
    import torch.nn.functional as F

    from helpers.viz import labelled_grid

    prompts = domain_prompts(domain)
    names = [e.name for e in ENTRIES if e.domain == domain and e.generates and e.name in loaded]
    if not names:
        return None, prompts
    rows = [draw(n, loaded[n], prompts, seed) for n in names]
    size = max(r.shape[-1] for r in rows)
    rows = [F.interpolate(r, size=(size, size), mode="nearest") if r.shape[-1] != size else r for r in rows]
    return labelled_grid(torch.cat(rows), names, ncol=len(prompts), scale=max(1, 96 // size)), prompts


# ------------------------------------------------------------------------------------------ measuring
def _timed(fn: Callable[[], dict]) -> dict:
    start = time.perf_counter()
    result = fn()
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def measure(cfg: CourseConfig, name: str, model, *, n: int = 8, seed: int = 0) -> dict:
    """The headline number of `name`'s notebook, measured now: {'metric', 'value', 'judge', 'ms_per_sample'}.

    `n` is the number of samples per prompt / class (small here; the notebooks and benchmarks use more)."""
    if name == "vae":
        from helpers.digits import digit_data, vae_test_loss

        return _timed(lambda: {"metric": "held-out loss (BCE + KL per digit; lower is better)",
                               "value": vae_test_loss(model, digit_data(cfg).heldout_images)["test_loss"]})
    if name == "text-cvae":
        from helpers.data.prompts import digit_prompts
        from helpers.digit_judge import load_or_train_judge, prompt_accuracy

        judge, judge_accuracy = load_or_train_judge(cfg)
        result = _timed(lambda: prompt_accuracy(model, judge, digit_prompts("heldout"), samples_per_prompt=n,
                                                seed=seed))
        return {"metric": "prompt accuracy, held-out templates", "value": result["accuracy"],
                "judge": judge_accuracy, "ms_per_sample": 1000 * result["seconds"] / result["n_images"],
                "seconds": result["seconds"]}
    if name == "clip":
        from helpers.clip import evaluate_clip, face_data

        faces = face_data(cfg)
        scores = _timed(lambda: evaluate_clip(model, faces.test_images, faces.test_attrs))
        return {"metric": "text->image R@10 (zero-shot attribute mean)", "value": scores["text_to_image"][10],
                "extra": scores["zero_shot_mean"], "seconds": scores["seconds"]}
    if name.startswith("celeba-") or name == "ldm":
        from helpers import faces, ldm
        from helpers.clip import face_data

        judge, accuracy = faces.load_or_train_face_judge(cfg, face_data(cfg))
        judged = faces.reliable(accuracy)
        if name == "ldm":
            draw = lambda texts: model.generate(texts, seed=seed)  # noqa: E731
        else:
            draw = lambda texts: model.sample(model.condition.from_prompts(texts, seed), seed)  # noqa: E731
        result = ldm.single_attribute_accuracy(draw, judge, judged, per_prompt=n)
        return {"metric": "prompted-attribute accuracy, single-attribute prompts",
                "value": result["attribute_accuracy"], "judge": sum(accuracy[a] for a in judged) / len(judged),
                "ms_per_sample": result["ms_per_image"], "seconds": round(result["ms_per_image"] * result["n"] / 1000, 1)}
    if name == "cifar-ddpm":
        from helpers import cifar
        from helpers.cifar_judge import load_or_train_cifar_judge

        data = cifar.cifar_data(cfg, model.image_size)
        judge, judge_accuracy = load_or_train_cifar_judge(cfg, data)
        result = cifar.evaluate_ddpm(model, judge, data, per_class=n, seed=seed)
        return {"metric": "judged class accuracy (DDIM-50, w=3)", "value": result["class_accuracy"],
                "judge": judge_accuracy, "ms_per_sample": result["ms_per_image"],
                "seconds": round(result["ms_per_image"] * result["n"] / 1000, 1)}
    from helpers import sketch

    data = sketch.sketch_data(cfg)
    if not data.classes:  # captioned scenes (zoheb/sketch-scene): judged by retrieval with our sketch CLIP
        result = sketch.evaluate_retrieval(model, sketch.load_or_train_sketch_clip(cfg, data), data, n=6 * n, seed=seed)
        return {"metric": f"CLIP retrieval R@1 among {result['n']} held-out captions", "value": result["retrieval_r1"],
                "judge": result["real_r1"], "ms_per_sample": result["ms_per_sketch"],
                "seconds": round(result["ms_per_sketch"] * result["n"] / 1000, 1)}
    judge, judge_accuracy = sketch.load_or_train_doodle_judge(cfg, data)
    result = sketch.evaluate_sketches(model, judge, data, per_class=n, seed=seed)
    return {"metric": "judged class accuracy of class prompts", "value": result["class_accuracy"],
            "judge": judge_accuracy, "ms_per_sample": result["ms_per_sketch"],
            "seconds": round(result["ms_per_sketch"] * result["n"] / 1000, 1)}


def measured_table(rows: list[dict], measured: dict[str, dict]) -> str:
    """Markdown: the inventory's size and time columns next to what was just measured."""
    lines = ["| model | nb | measured now | value | judge on real data | ms / sample | params | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["model"] not in measured:
            continue
        m = measured[r["model"]]
        value = _fmt(m.get("value"), ".1%" if "accuracy" in m["metric"] else ".3f")
        if m.get("extra") is not None:
            value += f" ({m['extra']:.3f})"
        lines.append(f"| {r['model']} | {r['notebook']} | {m['metric']} | {value} | {_fmt(m.get('judge'), '.1%')} | "
                     f"{_fmt(m.get('ms_per_sample'), '.1f')} | {_fmt(r['parameters'], ',')} | "
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
