"""The widget apps at the Python level: changing a control changes the image; a refused prompt shows one line.
(The face and diffusion apps are tested beside their models, in test_faces.py and test_ldm.py.)"""
import pytest
import torch

pytest.importorskip("ipywidgets")

from helpers.digits import TextToDigit  # noqa: E402
from helpers.models.cvae import TextCVAE, TextCVAEConfig  # noqa: E402
from helpers.widgets import latent_app, prompt_app  # noqa: E402


@pytest.fixture(autouse=True)
def _no_windows(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")


def test_digit_prompt_app_redraws_on_every_control_and_refuses_in_one_line(bank):
    torch.manual_seed(0)
    app = prompt_app(TextToDigit(TextCVAE(TextCVAEConfig(latent_dim=4, width=8)), bank), n=3)
    first = app.shown["image"]
    assert first is not None and first.shape[0] == 3 and app.shown["title"] == "read as the digit 5"

    app.controls["prompt"].value = "Print number 7"
    assert app.shown["title"] == "read as the digit 7" and not torch.equal(app.shown["image"], first)
    seven = app.shown["image"]
    app.controls["seed"].value = 3
    assert not torch.equal(app.shown["image"], seven)
    moved = app.shown["image"]
    app.controls["use_sliders"].value = True
    app.controls["z0"].value = 2.5
    assert not torch.equal(app.shown["image"], moved)

    app.controls["prompt"].value = "draw a cat"
    assert app.shown["image"] is None and "does not ask for a digit" in app.shown["error"]
    assert "\n" not in app.shown["error"]
    app.controls["prompt"].value = "seven"  # a good prompt draws again
    assert app.shown["error"] is None and app.shown["title"] == "read as the digit 7"


def test_latent_app_follows_its_sliders():
    weights = torch.randn(4, 3 * 8 * 8, generator=torch.Generator().manual_seed(0))

    def decode(z):
        return torch.sigmoid(z @ weights).view(-1, 3, 8, 8)

    app = latent_app(decode, latent_dim=4, sliders=2)
    before = app.shown["image"]
    app.controls["z1"].value = -2.0
    assert not torch.equal(app.shown["image"], before)
    # the slider sets z[1] itself: the same value always gives the same picture
    after = app.shown["image"]
    app.controls["z1"].value = 0.5
    app.controls["z1"].value = -2.0
    assert torch.equal(app.shown["image"], after)


def test_model_app_offers_every_trained_generator_from_the_registry(quick_cfg, bank, tmp_path):
    from dataclasses import replace

    from helpers.checkpoint import save_checkpoint
    from helpers.errors import CourseError
    from helpers.models import ConvVAE, ConvVAEConfig
    from helpers.widgets import model_app

    cfg = replace(quick_cfg, runs_dir=tmp_path)
    with pytest.raises(CourseError, match="no trained generator"):
        model_app(cfg)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "vae", "vae", ConvVAE(ConvVAEConfig(width=8, latent_dim=4)))
    save_checkpoint(tmp_path / "text-cvae", "text-cvae", TextCVAE(TextCVAEConfig(latent_dim=4, width=8)))
    (tmp_path / "sketch-cvae").mkdir()
    (tmp_path / "sketch-cvae" / "checkpoint.json").write_text("{not json")  # a damaged run is left out

    app = model_app(cfg, n=3)
    assert list(app.controls["model"].options) == ["vae", "text-cvae"]  # course order, the trained ones only
    assert app.controls["model"].value == "text-cvae" and app.controls["prompt"].value == "Print number 5"
    first = app.shown["image"]
    assert first is not None and first.shape[-1] > 3 * 28 and "5" in app.shown["title"]
    app.controls["seed"].value = 1
    assert not torch.equal(app.shown["image"], first)
    app.controls["prompt"].value = "draw a cat"
    assert app.shown["image"] is None and "does not ask for a digit" in app.shown["error"]

    app.controls["model"].value = "vae"  # unconditional: no prompt, a fresh grid
    assert app.controls["prompt"].disabled and app.controls["prompt"].value == ""
    assert app.shown["error"] is None and app.shown["image"] is not None and app.shown["title"] == "vae"
    app.controls["model"].value = "text-cvae"  # back to its example prompt
    assert app.controls["prompt"].value == "Print number 5" and app.shown["error"] is None
    assert list(model_app(cfg, n=2, names=["vae"]).controls["model"].options) == ["vae"]  # one notebook's own model
