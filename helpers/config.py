"""Run mode (quick/full), device, seeding and paths: read once, in the first cell of every notebook.

`COURSE_QUICK=1` switches every notebook and CLI command to quick mode: tiny data, few epochs, small
widths, so the whole course runs top to bottom on a 2-core CPU. `COURSE_DATA=<dir>` names a local
data root (checked before any download), `COURSE_RUNS=<dir>` where checkpoints go,
`COURSE_DOWNLOADS=<dir>` where downloads go (default data/), `COURSE_FIGURES=<dir>` where figures go (default
outputs/figures/: running a notebook never overwrites the committed figures/ unless `COURSE_FIGURES=figures` asks),
and `COURSE_OFFLINE=1` (or HF_HUB_OFFLINE=1) forbids downloads.

`COURSE_SMOKE=1` is for checking the code, not for learning: `make smoke-full` runs every notebook in full mode
on stand-ins of the downloads with it set. Every model keeps its full-size configuration, but every training run
stops after `SMOKE.steps` optimizer steps of at most `SMOKE.batch` images in each of at most `SMOKE.epochs`
epochs (time budgets included), every evaluation draws at most `SMOKE.samples` images (`cfg.samples(n)`), and
every diffusion sampler takes at most `SMOKE.sample_steps` steps.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from helpers.errors import CourseError

PACKAGE_DIR = Path(__file__).resolve().parent
# An editable install (`pip install -e .`) keeps the package inside the repository: use the repo as home.
REPO_ROOT = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").exists() else Path.cwd()
REPOSITORY = "t2i-from-scratch/text-to-image-from-scratch"  # on GitHub: the Colab/Kaggle badges, the install cell


def pick_device() -> torch.device:
    """cuda > mps > cpu; never hard-code a device in library code."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SmokeCap:
    """The one cap of `COURSE_SMOKE=1` (see the module docstring)."""

    steps: int = 2  # optimizer steps per epoch
    epochs: int = 2  # epochs per training run; a time budget becomes these epochs
    batch: int = 8  # images per batch, at most
    samples: int = 16  # images any evaluation draws, at most
    sample_steps: int = 4  # steps of any diffusion sampler (DDPM's 1000 included), at most


SMOKE = SmokeCap()


def smoke_enabled() -> bool:
    """True under `make smoke-full` (COURSE_SMOKE=1)."""
    return _env_flag("COURSE_SMOKE")


@dataclass(frozen=True)
class Recipe:
    """Training settings of one model in one mode. Every notebook and `python -m helpers train` read these."""

    epochs: int
    batch_size: int
    lr: float
    width: int  # channels of the first conv layer; later layers double it
    latent_dim: int
    kl_warmup_epochs: int = 0  # 0 = full KL weight from the first step
    beta: float = 1.0  # weight of the KL term (VAEs)
    gif_every: int = 1  # epochs between GIF frames
    # Seconds of training. When set, the run measures its own speed and plans its steps (and learning-rate schedule)
    # to end on time, instead of training `epochs`: on a faster machine it sees more images, never more minutes.
    time_budget: float | None = None




# What each notebook costs, for the line its first cell prints. quick: seconds top to bottom on the 2-core CPU of the
# course machines, fresh clone without COURSE_DATA, all eight in one `python scripts/run_notebooks.py --quick`
# (measured); full: what it trains.
NOTEBOOK_COSTS: dict[str, tuple[int, str]] = {
    "01_vae_mnist": (33, "a VAE for 30 epochs and a 2-D one for 15, on 60,000 digits"),
    "02_text_cvae_mnist": (63, "the text CVAE for 30 epochs and the digit judge, on 60,000 digits"),
    "03_clip_from_scratch": (60, "CLIP for 30 epochs on ~190,000 faces"),
    "04_celeba_cvae_vs_gan": (61, "two CVAEs and a GAN for 40 epochs each and the judge for 5, on ~190,000 faces"),
    "05_ddpm_cifar10": (220, "the judge for 3 min and the UNet for 15 min on 50,000 images (18 min of training on any "
                             "GPU: time budgets)"),
    "06_flow_matching": (215, "notebook 05's UNet with v-prediction and with rectified flow, and a diffusion transformer, "
                              "for 5 min each on 50,000 images (15 min of training on any GPU: time budgets)"),
    "07_latent_diffusion_celeba": (208, "the autoencoder for 4 min on ~190,000 faces, then the UNet for 15 min (19 min "
                                        "of training on any GPU: time budgets)"),
    "08_text_to_sketch": (110, "the sketch CVAE for 40 epochs on ~10,000 scene sketches (and our CLIP for 20 "
                                    "when OpenAI's cannot be loaded)"),
    "09_compare_models": (19, "nothing: it measures the models the other notebooks trained"),
}


@dataclass(frozen=True)
class CourseConfig:
    """Everything a notebook needs to know about where and how it runs."""

    quick: bool
    device: torch.device
    data_root: Path
    runs_dir: Path
    figures_dir: Path
    outputs_dir: Path
    seed: int = 0
    local_data: Path | None = field(default=None)
    offline: bool = False  # HF_HUB_OFFLINE=1 or COURSE_OFFLINE=1: never try a download, fail fast instead
    smoke: bool = False  # COURSE_SMOKE=1: every run cut to the smoke cap (helpers.config.SMOKE)

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    def recipe(self, model: str, **overrides) -> Recipe:
        """The training settings of `model` in this mode, with any field overridden (e.g. epochs=3).

        Asking for `epochs` trains that many epochs, not the recipe's time budget; COURSE_TIME_BUDGET (set by
        `python -m helpers train ... --time-budget`) gives every recipe that budget unless `time_budget` is given."""
        from helpers.registry import recipes  # declared by each track module, beside its model kinds

        if model not in recipes():
            raise KeyError(f"no recipe for {model!r}; known: {', '.join(recipes())}")
        fields = {k: v for k, v in overrides.items() if v is not None}
        if "time_budget" not in fields:
            if os.environ.get("COURSE_TIME_BUDGET"):
                fields["time_budget"] = os.environ["COURSE_TIME_BUDGET"]
            elif "epochs" in fields:
                fields["time_budget"] = None
        return replace(recipes()[model][self.mode], **fields)

    def samples(self, n: int) -> int:
        """How many images an evaluation that wants `n` draws: `n`, or the smoke cap under COURSE_SMOKE=1."""
        return min(n, SMOKE.samples) if self.smoke else n

    def cost(self, notebook: str) -> str:
        """One line for a notebook's first cell: the mode, where it runs, and what that costs."""
        if notebook not in NOTEBOOK_COSTS:
            raise CourseError(f"unknown notebook {notebook!r}; choose one of {', '.join(NOTEBOOK_COSTS)}")
        seconds, full = NOTEBOOK_COSTS[notebook]
        where = (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                 else {"mps": "this Apple GPU", "cpu": "this CPU"}[self.device.type])
        quick = f"about {max(1, round(seconds / 60))} min on a 2-core laptop CPU (measured)"
        if full.startswith("nothing"):
            return (f"{self.mode} mode on {where}: no training, {full.split(': ', 1)[1]}; in quick mode "
                    f"{quick.replace(' (measured)', ', measured')}.")
        if self.quick:
            return f"quick mode on {where}: {quick}. Full mode trains {full}."
        if self.device.type == "cpu":
            return (f"full mode on {where}: trains {full}, which takes hours without a GPU; "
                    f'MODE = "quick" runs the notebook in {quick}.')
        return f"full mode on {where}: trains {full} (`make gpu-check` projects the minutes on this GPU)."

    def figures_for(self, source: str) -> Path:
        """Where figures made from data of `source` go: `figures_dir`, which is outputs/figures/ unless COURSE_FIGURES
        names another folder (`COURSE_FIGURES=figures` refreshes the committed figures the README shows); always
        outputs/figures/ for the development samples in COURSE_DATA ("local..." sources), whose images and
        anything made from them stay out of the repository unless a developer copies a figure of generated samples
        there by hand, with a caption naming the data."""
        return self.outputs_dir / "figures" if source.startswith("local") else self.figures_dir

    def run_dir(self, model: str) -> Path:
        """Default checkpoint folder of a model, e.g. runs/text-cvae (its config.json records the mode)."""
        return self.runs_dir / model

    def __str__(self) -> str:
        return (f"mode={self.mode} device={self.device} data={self.data_root}"
                f"{' (local copy: ' + str(self.local_data) + ')' if self.local_data else ''} runs={self.runs_dir}")


MODES = ("auto", "quick", "full")


def resolve_mode(mode: str, device: torch.device) -> bool:
    """True for quick mode. A notebook's `MODE`: "auto" is full on a CUDA GPU and quick elsewhere (a CPU-only
    runtime, or Apple's MPS); "quick" and "full" choose. COURSE_QUICK=1 (or 0), when set, overrides all three."""
    if mode not in MODES:
        raise CourseError(f"MODE must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}")
    if os.environ.get("COURSE_QUICK", "").strip():
        return _env_flag("COURSE_QUICK")
    return device.type != "cuda" if mode == "auto" else mode == "quick"


def get_config(quick: bool | str | None = None, seed: int = 0) -> CourseConfig:
    """Read the environment once.

    `quick`: a notebook's MODE ("auto", "quick" or "full", see `resolve_mode`); None takes COURSE_QUICK (unset:
    full mode, what the command line does without --quick); True/False force a mode whatever the environment says.
    """
    device = pick_device()
    if isinstance(quick, str):
        quick = resolve_mode(quick, device)
    elif quick is None:
        quick = _env_flag("COURSE_QUICK")
    local = os.environ.get("COURSE_DATA")
    local_data = Path(local).expanduser().resolve() if local else None
    runs = Path(os.environ.get("COURSE_RUNS", REPO_ROOT / "runs")).expanduser().resolve()
    outputs = Path(os.environ.get("COURSE_OUTPUTS", REPO_ROOT / "outputs")).expanduser().resolve()
    return CourseConfig(
        quick=bool(quick),
        device=device,
        data_root=Path(os.environ.get("COURSE_DOWNLOADS", REPO_ROOT / "data")).expanduser().resolve(),
        runs_dir=runs,
        figures_dir=Path(os.environ.get("COURSE_FIGURES", outputs / "figures")).expanduser().resolve(),
        outputs_dir=outputs,
        seed=seed,
        local_data=local_data,
        offline=_env_flag("HF_HUB_OFFLINE") or _env_flag("COURSE_OFFLINE"),
        smoke=smoke_enabled(),
    )
