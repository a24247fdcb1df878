"""Notebook 07: the face autoencoder, the text-conditioned latent UNet, guidance, checkpoints, judging and the CLI."""
import shutil
from dataclasses import replace

import pytest
import torch

from helpers import faces, ldm
from helpers.__main__ import main
from helpers.checkpoint import save_checkpoint
from helpers.clip import CaptionTokenizer, caption_corpus
from helpers.config import Recipe
from helpers.data.captions import parse_prompt
from helpers.data.celeba import ATTRIBUTES, FaceSplits, synthetic_faces
from helpers.diffusion import guided
from helpers.errors import CourseError
from helpers.models.autoencoder import Autoencoder, AutoencoderConfig, psnr
from helpers.models.clip import CLIPConfig, CLIPModel
from helpers.models.unet import UNet, UNetConfig
from helpers.registry import recipes

TINY = replace(ldm.SETTINGS["quick"], ae_mults=(1, 2), unet_mults=(1, 2), attention_levels=(1,))


@pytest.fixture(scope="module")
def tiny_faces() -> FaceSplits:
    images, attrs = synthetic_faces(160, seed=5, image_size=32)
    return FaceSplits(images[:128], attrs[:128], images[128:], attrs[128:], "synthetic faces (ldm test)", 32)


@pytest.fixture(scope="module")
def tiny_cfg(quick_cfg):
    RECIPES = recipes()  # the tracks' own tables, restored after the module's tests
    saved = {k: RECIPES[k]["quick"] for k in ("ldm-autoencoder", "ldm")}
    RECIPES["ldm-autoencoder"]["quick"] = Recipe(epochs=2, batch_size=32, lr=2e-3, width=8, latent_dim=4)
    RECIPES["ldm"]["quick"] = Recipe(epochs=1, batch_size=32, lr=1e-3, width=16, latent_dim=0)
    yield replace(quick_cfg)
    for key, recipe in saved.items():
        RECIPES[key]["quick"] = recipe


@pytest.fixture(scope="module")
def runs(tiny_cfg, tiny_faces, tmp_path_factory):
    """A saved untrained CLIP, a 2-epoch autoencoder and a 1-epoch LDM: the plumbing, not the quality."""
    root = tmp_path_factory.mktemp("ldm")
    torch.manual_seed(0)
    tokenizer = CaptionTokenizer.train(caption_corpus(tiny_faces.train_attrs, seed=0))
    model = CLIPModel(CLIPConfig(vocab_size=tokenizer.vocab_size, image_size=32, image_width=8, text_width=32,
                                 embed_dim=16))
    save_checkpoint(root / "clip", "clip", model, extra={"mode": "quick", "data": tiny_faces.source,
                                                         "tokenizer": tokenizer.to_str()})
    ae, history = ldm.train_autoencoder(tiny_cfg, root / "ae", data=tiny_faces, settings=TINY, progress=False)
    model = ldm.train_ldm(tiny_cfg, root / "ldm", data=tiny_faces, autoencoder_dir=root / "ae",
                          clip_dir=root / "clip", settings=TINY, progress=False)
    return root, ae, history, model


# ------------------------------------------------------------------------------------------ autoencoder
def test_autoencoder_shapes_and_refusals():
    ae = Autoencoder(AutoencoderConfig(image_size=64, width=8, mults=(1, 2, 4)))
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    mean, logvar = ae.encode(x)
    assert mean.shape == logvar.shape == (2, 4, 16, 16) and ae.config.latent_shape == (4, 16, 16)
    assert ae.decode(mean).shape == x.shape
    assert set(ae.loss(x, 1e-4)) >= {"loss", "l1", "kl", "psnr"}
    with pytest.raises(CourseError, match="resize the images to 64x64"):
        ae.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(CourseError, match=r"latents \(B, 4, 16, 16\)"):
        ae.decode(torch.zeros(1, 4, 8, 8))
    with pytest.raises(CourseError, match="not divisible"):
        AutoencoderConfig(image_size=30, mults=(1, 2, 4))


def test_psnr():
    a = torch.zeros(1, 3, 8, 8)
    assert psnr(a, a + 0.02) == pytest.approx(10 * torch.log10(torch.tensor(4 / 0.0004)).item(), rel=1e-4)
    assert psnr(a, a + 0.1) < psnr(a, a + 0.02)


def test_autoencoder_learns_to_reconstruct(runs, tiny_faces):
    _, ae, history, _ = runs
    untrained = Autoencoder(replace(ae.config))
    assert history[-1]["heldout_psnr"] > ldm.reconstruction_psnr(untrained, tiny_faces.test_images) + 3
    assert history[-1]["heldout_psnr"] > history[0]["heldout_psnr"]
    assert ae.config.latent_shape == (4, 16, 16)  # 32x32 faces, one halving


# ------------------------------------------------------------------------------------------ text UNet
def test_text_unet_null_token_and_pooled_vector():
    torch.manual_seed(0)
    unet = UNet(UNetConfig(in_channels=4, out_channels=4, width=16, mults=(1, 2), attention_levels=(1,),
                           context_dim=12, pooled_dim=6)).eval()
    for p in unet.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 5, 12)
    pooled = torch.randn(2, 6)
    base = unet(x, t, context=context, context_mask=torch.ones(2, 5), pooled=pooled)
    assert not torch.allclose(base, unet(x, t, context=context, context_mask=torch.ones(2, 5)))  # pooled matters
    assert not torch.allclose(base, unet(x, t, context=torch.randn(2, 5, 12), pooled=pooled))  # tokens matter
    nothing = unet(x, t)  # no text at all = only the learnt null token
    all_masked = unet(x, t, context=context, context_mask=torch.zeros(2, 5), pooled=torch.zeros(2, 6))
    assert torch.allclose(nothing, all_masked, atol=1e-5) and torch.isfinite(all_masked).all()
    with pytest.raises(CourseError, match="context must be"):
        unet(x, t, context=torch.randn(2, 5, 7))


def test_guidance_with_tuple_conditions():
    def eps_fn(x, t, cond):
        return x * 0 + cond[1][:, :1, None, None].float() + cond[0].sum((1, 2))[:, None, None, None]

    cond = (torch.ones(2, 3, 4), torch.ones(2, 3, dtype=torch.long))
    null = tuple(torch.zeros_like(c) for c in cond)
    eps = guided(eps_fn, cond, null, 3.0)(torch.zeros(2, 4, 2, 2), torch.tensor([5, 5]))
    assert torch.allclose(eps, torch.full_like(eps, 3 * 13.0))  # eps_u + 3 (eps_c - eps_u) = 0 + 3 * (1 + 12)


# ------------------------------------------------------------------------------------------ training
def test_ldm_trains_and_loss_falls(tiny_cfg, tiny_faces, runs, tmp_path):
    root, *_ = runs
    model = ldm.train_ldm(tiny_cfg, tmp_path / "ldm", data=tiny_faces, autoencoder_dir=root / "ae",
                          clip_dir=root / "clip", settings=TINY, progress=False, epochs=6, lr=3e-3)
    losses = [h["loss"] for h in model.history]
    assert losses[-1] < 0.8 * losses[0], losses  # starts near E[eps^2] = 1 (zero-initialised output)
    assert 0.5 < model.scale * ldm.encode_images(model.autoencoder, tiny_faces.train_images).std() < 2
    assert (tmp_path / "ldm" / "training.gif").exists()


def test_generation_is_seeded_and_guidance_changes_it(runs):
    root, _, _, model = runs
    prompts = ["a smiling woman", "a man with eyeglasses"]
    a = model.generate(prompts, steps=3, seed=1)
    assert a.shape == (2, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, model.generate(prompts, steps=3, seed=1))
    assert not torch.equal(a, model.generate(prompts, steps=3, seed=2))
    assert not torch.allclose(model.generate(prompts, steps=3, seed=1, guidance=0.0),
                              model.generate(prompts, steps=3, seed=1, guidance=5.0))
    assert model("a bald man", n=3, steps=2, sampler="ddpm").shape == (3, 3, 32, 32)


def test_checkpoint_round_trip(tiny_cfg, runs):
    root, _, _, model = runs
    loaded = ldm.TextToFace.from_checkpoint(root / "ldm", tiny_cfg)
    assert loaded.scale == pytest.approx(model.scale)
    assert torch.allclose(loaded.generate(["a smiling man"], steps=3), model.generate(["a smiling man"], steps=3),
                          atol=1e-5)


@pytest.mark.parametrize("prompts, kwargs, pattern", [
    ([""], {}, "the prompt is empty"),
    (["   "], {}, "the prompt is empty"),
    ([], {}, "no prompts"),
    (["x" * 400], {}, "limit is 300"),
    (["a man"], {"guidance": -1.0}, "guidance must be >= 0"),
    (["a man"], {"sampler": "rk4"}, "unknown sampler"),
    (["a man"], {"steps": 5000}, "steps must be between"),
])
def test_generation_refuses_bad_input(runs, prompts, kwargs, pattern):
    with pytest.raises(CourseError, match=pattern):
        runs[3].generate(prompts, **kwargs)


def test_refuses_a_changed_autoencoder_and_a_missing_checkpoint(tiny_cfg, tiny_faces, runs, tmp_path):
    root, *_ = runs
    shutil.copytree(root / "ae", tmp_path / "ae")
    shutil.copytree(root / "ldm", tmp_path / "ldm")
    index = (tmp_path / "ldm" / "checkpoint.json")
    index.write_text(index.read_text().replace(str((root / "ae").resolve()), str((tmp_path / "ae").resolve())))
    ldm.TextToFace.from_checkpoint(tmp_path / "ldm", tiny_cfg)  # the copy loads
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "ae", ldm.AE_KIND, Autoencoder(AutoencoderConfig(image_size=32, width=8, mults=(1, 2))),
                    extra={"mode": "quick", "data": tiny_faces.source})
    with pytest.raises(CourseError, match="changed since this model was trained"):
        ldm.TextToFace.from_checkpoint(tmp_path / "ldm", tiny_cfg)
    with pytest.raises(CourseError, match="trained on another autoencoder"):
        ldm.train_ldm(tiny_cfg, tmp_path / "ldm", data=tiny_faces, autoencoder_dir=tmp_path / "ae",
                      clip_dir=root / "clip", settings=TINY, progress=False, resume=True)
    with pytest.raises(CourseError, match="no checkpoint in"):
        ldm.TextToFace.from_checkpoint(tmp_path / "nothing", tiny_cfg)


# ------------------------------------------------------------------------------------------ measuring
class SeesMenNotSmiling(torch.nn.Module):
    """A judge with known answers: it reads every face as a man who does not smile."""

    def __init__(self):
        super().__init__()
        self.device_probe = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        logits = torch.full((len(images), len(ATTRIBUTES)), -5.0)
        logits[:, ATTRIBUTES.index("Male")] = 5.0
        return logits


def test_single_attribute_prompts_say_one_attribute():
    prompts = faces.single_attribute_prompts(["Male", "Smiling", "Eyeglasses", "Oval_Face"])
    assert list(prompts.values()) == [{"Male": True}, {"Male": False}, {"Smiling": True}, {"Eyeglasses": True}]
    for prompt, spec in prompts.items():
        assert parse_prompt(prompt) == spec


def test_attribute_accuracy_and_fid(runs, tiny_faces):
    from helpers.models.faces import AttributeJudge, AttributeJudgeConfig

    model = runs[3]
    judge = AttributeJudge(AttributeJudgeConfig(image_size=32, width=8)).eval()
    result = ldm.attribute_accuracy(model, judge, ["Male", "Smiling"], per_prompt=2, steps=2)
    assert set(result["per_prompt"]) == set(faces.single_attribute_prompts(["Male", "Smiling"]))
    assert result["images"].shape == (6, 3, 32, 32) and result["n"] == 6

    result = ldm.attribute_accuracy(model, SeesMenNotSmiling(), ["Male", "Smiling"], per_prompt=2, steps=2)
    # "a man" is right, "a woman" and "a smiling person" are wrong on every face: a mean of 1/3 over the prompts
    assert list(result["per_prompt"].values()) == [1.0, 0.0, 0.0]
    assert result["attribute_accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(CourseError, match="reads none"):
        ldm.attribute_accuracy(model, judge, ["Oval_Face"], per_prompt=2, steps=2)
    fid = ldm.sample_fid(model, model.clip, tiny_faces, n=16, steps=2)
    assert fid["fid_clip"] > 0 and fid["n"] == 16
    grid = ldm.guidance_grid(model, ["a man", "a woman"], [1, 3], steps=2)
    assert grid.shape[0] == 3 and grid.min() >= 0 and grid.max() <= 1


# ------------------------------------------------------------------------------------------ CLI
def test_cli_evaluate_reports_the_judged_attributes_and_fid(runs, tiny_faces, monkeypatch, capsys):
    root, *_ = runs
    monkeypatch.setattr(ldm, "face_data", lambda cfg: tiny_faces)
    monkeypatch.setattr(faces, "load_or_train_face_judge",  # the judge trusts two attributes; it sees only men
                        lambda cfg, data: (SeesMenNotSmiling(), {"Male": 0.95, "Smiling": 0.9, "Bald": 0.6}))
    assert main(["evaluate", "--model", "ldm", "--checkpoint", str(root / "ldm"), "--steps", "2", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "the 2 attributes it is trusted on" in out and "always answering each attribute's commoner value" in out
    # "a man" always right, "a woman" and "a smiling person" never: 1/3 at both guidance scales, of 48 faces
    for guidance in (1, 3):
        assert (f"dpm++2m-2, guidance {guidance}: prompted-attribute accuracy 33.3% (n=48, 95% CI " in out
                and "a man 100%, a woman 0%, a smiling person 0%" in out), out
    fid = float(out.split("FID on our CLIP's image features (32 faces from held-out captions): ")[1].split()[0])
    assert fid > 0


def test_cli_generates_and_refuses(runs, tmp_path, capsys):
    root, *_ = runs
    out = tmp_path / "out"
    assert main(["generate", "--model", "ldm", "a smiling woman", "--checkpoint", str(root / "ldm"), "--n", "2",
                 "--steps", "2", "--out", str(out), "--quick"]) == 0
    assert len(list(out.glob("ldm_a-smiling-woman_dpmpp2m2_w3_seed0_*.png"))) == 3  # 2 samples + the grid
    for argv, pattern in [
        (["generate", "--model", "ldm", "", "--checkpoint", str(root / "ldm")], "the prompt is empty"),
        (["generate", "--model", "ldm", "--checkpoint", str(root / "ldm")], "needs a prompt"),
        (["generate", "--model", "ldm", "a man", "--checkpoint", str(tmp_path / "none")], "no checkpoint in"),
        (["generate", "--model", "ldm", "a man", "--checkpoint", str(root / "ldm"), "--guidance", "-2"],
         "guidance must be"),
        (["reconstruct", "--model", "ldm-autoencoder", "--checkpoint", str(tmp_path / "none")], "no checkpoint in"),
    ]:
        bad_out = tmp_path / "bad"
        assert main(argv + ["--out", str(bad_out), "--quick"]) == 2
        assert pattern in capsys.readouterr().err
        assert not bad_out.exists()


def test_diffusion_widget_follows_prompt_guidance_and_steps(runs):
    pytest.importorskip("ipywidgets")
    import matplotlib

    from helpers.widgets import diffusion_app

    matplotlib.use("Agg")
    app = diffusion_app(runs[3], n=2, max_steps=10)
    app.controls["steps"].value = 5
    first = app.shown["image"]
    assert first is not None and app.shown["title"].startswith("dpm++2m, w = 3, 5 steps")
    app.controls["prompt"].value = "a photo of a man"
    assert not torch.equal(app.shown["image"], first)
    man = app.shown["image"]
    app.controls["guidance"].value = 6.0
    assert not torch.equal(app.shown["image"], man) and "w = 6" in app.shown["title"]
    app.controls["prompt"].value = ""
    assert app.shown["image"] is None and app.shown["error"].startswith("the prompt is empty")
