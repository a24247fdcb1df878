"""The registry of model kinds: each track module declares its kinds and recipes once; the CLI and notebook 09
find them there. A new model is one new module (its notebook aside): these tests add one and use it."""
import sys
from pathlib import Path

import pytest

from helpers import registry
from helpers.__main__ import build_parser, main
from helpers.errors import CourseError

NOTEBOOKS = {path.name[:2] for path in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")}


def test_every_kind_has_a_notebook_and_a_recipe_in_both_modes(quick_cfg):
    assert len(registry.kinds()) >= 13
    for name, item in registry.kinds().items():
        assert item.notebook in NOTEBOOKS, name
        assert set(registry.recipes()[name]) == {"quick", "full"}, name
        assert quick_cfg.recipe(name) == registry.recipes()[name]["quick"]
        assert (item.example is None) == (item.read_prompt is None), name  # a prompted model says how it reads


TOY = '''
import torch
from helpers.config import Recipe
from helpers.registry import ModelKind, Samples

RECIPES = {"toy": {"quick": Recipe(epochs=1, batch_size=2, lr=1e-3, width=4, latent_dim=2),
                   "full": Recipe(epochs=9, batch_size=8, lr=1e-3, width=8, latent_dim=2)}}


def _train(cfg, out, options):
    out.mkdir(parents=True, exist_ok=True)
    (out / "trained.txt").write_text(str(cfg.recipe("toy").epochs))


KINDS = (ModelKind("toy", "01", "a model in one module", train=_train, example="a grey square",
                   read_prompt=lambda text: text,
                   generate=lambda model, o: Samples(torch.full((o.n, 1, 4, 4), 0.5), "toy")),)
'''


@pytest.fixture
def toy_track(tmp_path, monkeypatch):
    (tmp_path / "toy_track.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "TRACKS", (*registry.TRACKS, "toy_track"))
    monkeypatch.setattr(registry, "_KINDS", {})
    monkeypatch.setattr(registry, "_RECIPES", {})
    yield tmp_path
    sys.modules.pop("toy_track", None)


def test_a_new_model_is_one_module(toy_track, quick_cfg, capsys, monkeypatch):
    monkeypatch.setenv("COURSE_QUICK", "1")
    assert quick_cfg.recipe("toy").width == 4
    main(["models"])
    assert "toy              notebook 01  a model in one module  [generate]" in capsys.readouterr().out
    main(["train", "toy", "--out", str(toy_track / "run")])
    assert (toy_track / "run" / "trained.txt").read_text() == "1"
    assert build_parser().parse_args(["generate", "--model", "toy", "x"]).model == "toy"
    with pytest.raises(CourseError, match='toy needs a prompt, e.g. python -m helpers generate --model toy "a grey'):
        registry.kind("toy").check_prompt(None)


def test_a_kind_or_recipe_declared_twice_is_refused(toy_track, monkeypatch):
    (toy_track / "toy_twice.py").write_text(TOY)
    monkeypatch.setattr(registry, "TRACKS", (*registry.TRACKS, "toy_twice"))
    with pytest.raises(RuntimeError, match="'toy' is declared twice"):
        registry.kinds()
    with pytest.raises(RuntimeError, match="recipe 'toy' is declared twice"):
        registry.recipes()
    sys.modules.pop("toy_twice", None)


def test_unconditional_models_refuse_a_prompt():
    with pytest.raises(CourseError, match="the vae is unconditional: drop the prompt"):
        registry.kind("vae").check_prompt("a seven")
    registry.kind("vae").check_prompt(None)
    with pytest.raises(CourseError, match="unknown model 'dalle'; the course has vae, text-cvae"):
        registry.kind("dalle")
