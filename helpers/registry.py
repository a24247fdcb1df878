"""Every model kind of the course, each declared once, in its track's module (its `KINDS`), and collected here.

A `ModelKind` says which notebook teaches the model and how to train it, rebuild it from a run folder, draw from
a prompt, evaluate it, reconstruct with it, and what notebook 09 measures and draws with it. The command line
(`python -m helpers`) and notebook 09's comparison iterate over `kinds()`; they name no model themselves. Adding a
model touches its track's module (and its notebook): nothing here, nothing in the CLI.

    kinds()          name -> ModelKind, in course order (notebook 01 first)
    kind("ldm")      one of them, or a one-line CourseError listing the others
    recipes()        name -> {"quick": Recipe, "full": Recipe}: every track's RECIPES (`cfg.recipe` reads them)
"""
from __future__ import annotations

import argparse
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from helpers.config import CourseConfig
from helpers.errors import CourseError

# The track modules, in the order of the notebooks that teach them.
TRACKS = ("helpers.digits", "helpers.digit_judge", "helpers.clip", "helpers.faces", "helpers.cifar_judge",
          "helpers.cifar", "helpers.ldm", "helpers.sketch")


@dataclass(frozen=True)
class Samples:
    """What `ModelKind.generate` returns: images in [0, 1] (N, C, H, W), a file-name stem, how much to enlarge them
    when written, and a line to print (how the prompt was read) or ""."""

    images: torch.Tensor
    stem: str
    scale: int = 4
    note: str = ""


@dataclass(frozen=True)
class ModelKind:
    """One model of the course. `options` is the command line's namespace (epochs, resume, gif, prompt, n, seed,
    guidance, steps, sampler, condition ...): each function reads what it needs."""

    name: str  # the CLI's model name and the default run folder runs/<name>
    notebook: str  # "06"
    summary: str  # what it is, in a few words
    train: Callable[[CourseConfig, Path, argparse.Namespace], None]  # train into the folder, print what it measured
    load: Callable[[CourseConfig, Path], Any] | None = None  # the trained model of a run folder
    example: str | None = None  # a prompt it draws well, e.g. "Print number 5"; None: an unconditional model
    read_prompt: Callable[[str], object] | None = None  # refuses (one line) what it cannot draw, before any loading
    generate: Callable[[Any, argparse.Namespace], Samples] | None = None
    evaluate: Callable[[CourseConfig, Any, argparse.Namespace], None] | None = None  # prints its report
    reconstruct: Callable[[CourseConfig, Any, argparse.Namespace], str] | None = None  # writes, returns a line
    domain: str | None = None  # notebook 09 draws every generator of a domain from the same prompts
    draw: Callable[[Any, list[str], int], torch.Tensor] | None = None  # one image per prompt, (P, 3, S, S) in [0, 1]
    measure: Callable[[CourseConfig, Any, int, int], dict] | None = None  # notebook 09's headline number (n, seed)
    # run folders and the options that train them: a kind trained several ways has several (see faces.py)
    variants: tuple[tuple[str, str], ...] = ()
    run_name: Callable[[argparse.Namespace], str] | None = None  # the folder of this invocation's variant
    writes_gif: bool = False  # training writes a GIF of fixed prompts, one frame per epoch
    budgeted: bool = False  # `--time-budget` goes to its own training only (not to the models it trains first)

    def check_prompt(self, prompt: str | None) -> None:
        """The cheap checks before anything is loaded: a prompted model needs a prompt (the line says how), an
        unconditional one takes none, and `read_prompt` refuses what the model cannot draw."""
        if self.example is None:
            if prompt is not None:
                raise CourseError(f"the {self.name} is unconditional: drop the prompt, or choose a prompted model "
                                  f"(python -m helpers models)")
        elif prompt is None:
            raise CourseError(f'{self.name} needs a prompt, e.g. python -m helpers generate --model {self.name} '
                              f'"{self.example}"')
        elif self.read_prompt is not None:
            self.read_prompt(prompt)

    def runs(self) -> tuple[tuple[str, str], ...]:
        return self.variants or ((self.name, ""),)

    def folder(self, options: argparse.Namespace) -> str:
        return self.run_name(options) if self.run_name else self.name

    def train_command(self, options: str = "") -> str:
        return f"python -m helpers train {self.name}{options}"


_KINDS: dict[str, ModelKind] = {}
_RECIPES: dict[str, dict] = {}


def kinds() -> dict[str, ModelKind]:
    """Every kind of every track, in course order (the tracks are imported on the first call)."""
    if not _KINDS:
        for module in TRACKS:
            for item in importlib.import_module(module).KINDS:
                if item.name in _KINDS:
                    raise RuntimeError(f"model kind {item.name!r} is declared twice ({module})")
                _KINDS[item.name] = item
    return _KINDS


def recipes() -> dict[str, dict]:
    """Every track's training settings, name -> {"quick": Recipe, "full": Recipe}: each model kind's, plus the
    helpers a track trains on the way (e.g. "vae-2d", "clip-sketch"). The inner dicts are the tracks' own."""
    if not _RECIPES:
        for module in TRACKS:
            for name, modes in importlib.import_module(module).RECIPES.items():
                if name in _RECIPES:
                    raise RuntimeError(f"recipe {name!r} is declared twice ({module})")
                _RECIPES[name] = modes
    return _RECIPES


def kind(name: str) -> ModelKind:
    if name not in kinds():
        raise CourseError(f"unknown model {name!r}; the course has {', '.join(kinds())}")
    return kinds()[name]


def slug(text: str, limit: int = 40) -> str:
    """A prompt as part of a file name: "a smiling man!" -> "a-smiling-man"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "prompt"


def sampling_tag(options: argparse.Namespace) -> str:
    """'dpmpp2m20_w3_seed0': sampler, steps, guidance and seed in a file name ("+" spelt "p")."""
    return f"{slug(options.sampler.replace('+', 'p'))}{options.steps}_w{options.guidance:g}_seed{options.seed}"
