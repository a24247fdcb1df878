"""The mode switch of the notebooks' first cells, the cost line they print, and the notebooks' shared header."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from helpers.config import NOTEBOOK_COSTS, get_config, resolve_mode
from helpers.errors import CourseError

ROOT = Path(__file__).resolve().parents[1]


def test_auto_mode_is_quick_without_cuda_and_course_quick_overrides(monkeypatch):
    monkeypatch.delenv("COURSE_QUICK", raising=False)
    assert resolve_mode("auto", torch.device("cpu")) and resolve_mode("auto", torch.device("mps"))
    assert not resolve_mode("auto", torch.device("cuda"))
    assert resolve_mode("quick", torch.device("cuda")) and not resolve_mode("full", torch.device("cpu"))
    monkeypatch.setenv("COURSE_QUICK", "0")
    assert not resolve_mode("auto", torch.device("cpu")) and not resolve_mode("quick", torch.device("cpu"))
    monkeypatch.setenv("COURSE_QUICK", "1")
    assert resolve_mode("full", torch.device("cuda"))
    assert get_config("full").quick and not get_config(False).quick  # a bool from code is never overridden
    with pytest.raises(CourseError, match="MODE must be one of 'auto', 'quick', 'full', got 'fast'"):
        get_config("fast")


def test_cost_line_names_the_mode_the_device_and_the_cost(monkeypatch):
    monkeypatch.setenv("COURSE_QUICK", "1")
    quick = get_config("auto")
    line = quick.cost("07_latent_diffusion_celeba")
    assert line.startswith("quick mode on this CPU:" if quick.device.type == "cpu" else "quick mode on ")
    assert "about 3 min on a 2-core laptop CPU (measured)" in line and "19 min of training on any GPU" in line
    full = get_config(False)
    if full.device.type == "cpu":
        assert "takes hours without a GPU" in full.cost("03_clip_from_scratch")
        assert "hours" not in full.cost("09_compare_models")
    assert set(NOTEBOOK_COSTS) == {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    with pytest.raises(CourseError, match="unknown notebook"):
        quick.cost("10_missing")


def test_every_notebook_opens_with_the_one_header():
    spec = importlib.util.spec_from_file_location("notebook_header", ROOT / "scripts" / "notebook_header.py")
    header = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(header)
    assert header.main(["--check"]) == 0
    assert 'MODE = "auto"' in header.MODE_LINE and "kaggle.com/kernels/welcome" in header.badges("01_vae_mnist.ipynb")


def test_smoke_caps_evaluations_only_under_course_smoke(monkeypatch):
    monkeypatch.delenv("COURSE_SMOKE", raising=False)
    assert get_config(False).samples(1000) == 1000
    monkeypatch.setenv("COURSE_SMOKE", "1")
    assert get_config(False).samples(1000) == 16 and get_config(False).samples(3) == 3


def test_recipes_train_to_a_time_budget_unless_asked_for_epochs(monkeypatch):
    from helpers.registry import recipes

    monkeypatch.delenv("COURSE_TIME_BUDGET", raising=False)
    full, quick = get_config(quick=False), get_config(quick=True)
    assert full.recipe("ldm").time_budget == 15 * 60 and quick.recipe("ldm").time_budget == 130
    assert full.recipe("ldm", epochs=3).time_budget is None  # asking for epochs trains epochs
    assert full.recipe("ldm", epochs=3, time_budget=60).time_budget == 60
    assert quick.recipe("vae").time_budget is None
    monkeypatch.setenv("COURSE_TIME_BUDGET", "20m")  # what `train ... --time-budget 20m` sets
    assert quick.recipe("vae").time_budget == "20m" and full.recipe("ldm", epochs=3).time_budget == "20m"
    # notebooks 05 and 07 train at most 20 minutes in full mode, on any GPU
    for models in (("ldm-autoencoder", "ldm"), ("cifar-judge", "cifar-ddpm")):
        assert sum(recipes()[m]["full"].time_budget for m in models) <= 20 * 60


def test_notebooks_never_overwrite_the_committed_figures_unless_asked(monkeypatch, tmp_path):
    from helpers.config import REPO_ROOT

    monkeypatch.delenv("COURSE_FIGURES", raising=False)
    monkeypatch.setenv("COURSE_OUTPUTS", str(tmp_path / "out"))
    cfg = get_config(quick=True)
    for source in ("synthetic faces", "torchvision CIFAR-10", "local CelebA sample"):
        assert cfg.figures_for(source) == tmp_path / "out" / "figures"
    monkeypatch.setenv("COURSE_FIGURES", str(REPO_ROOT / "figures"))  # asked: refresh the README's figures
    cfg = get_config(quick=True)
    assert cfg.figures_for("synthetic faces") == REPO_ROOT / "figures"
    assert cfg.figures_for("local CelebA sample") == tmp_path / "out" / "figures"  # development data: never
