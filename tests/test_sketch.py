"""Notebook 08: sketch data, text encoders, the 128x128 sketch CVAE, its training features, judge and CLI."""
from dataclasses import replace

import imageio.v2 as imageio
import pytest
import torch

from helpers import sketch as sk
from helpers.__main__ import main
from helpers.config import Recipe
from helpers.data.sketches import (LOCAL_FILE, SKETCH_CLASSES, SketchSplits, load_sketches, synthetic_sketches,
                                   _captions)
from helpers.errors import CourseError
from helpers.models.sketch import SketchCVAE, SketchCVAEConfig
from helpers.registry import recipes


@pytest.fixture(scope="module")
def tiny_sketches() -> SketchSplits:
    train, train_labels = synthetic_sketches(40, seed=1, image_size=64)
    test, test_labels = synthetic_sketches(10, seed=1, image_size=64, start=10_000)
    return SketchSplits(train, _captions(train_labels, SKETCH_CLASSES, 0), train_labels, test,
                        _captions(test_labels, SKETCH_CLASSES, 1), test_labels, SKETCH_CLASSES, "synthetic (test)")


@pytest.fixture(scope="module")
def tiny_cfg(quick_cfg, tmp_path_factory):
    RECIPES = recipes()  # the tracks' own tables, restored after the module's tests
    saved = {k: RECIPES[k]["quick"] for k in ("sketch-cvae", "clip-sketch", "doodle-judge")}
    RECIPES["sketch-cvae"]["quick"] = Recipe(epochs=12, batch_size=32, lr=3e-3, width=8, latent_dim=8)
    RECIPES["clip-sketch"]["quick"] = Recipe(epochs=1, batch_size=32, lr=5e-4, width=8, latent_dim=16)
    RECIPES["doodle-judge"]["quick"] = Recipe(epochs=15, batch_size=32, lr=2e-3, width=16, latent_dim=0)
    yield replace(quick_cfg, runs_dir=tmp_path_factory.mktemp("sketch-runs"),
                  data_root=tmp_path_factory.mktemp("sketch-data"), offline=True)
    for key, recipe in saved.items():
        RECIPES[key]["quick"] = recipe


@pytest.fixture(scope="module")
def trained(tiny_cfg, tiny_sketches):
    encoder, recorded = sk.load_sketch_encoder(tiny_cfg, "ours", tiny_sketches)
    model = sk.train_sketch_cvae(tiny_cfg, tiny_cfg.runs_dir / "sketch", data=tiny_sketches, encoder=encoder,
                                 recorded=recorded, progress=False)
    return model, encoder, recorded


# ------------------------------------------------------------------------------------------ data
def test_synthetic_sketches_are_deterministic_ink_on_blank():
    a, labels = synthetic_sketches(3, seed=0, image_size=128)
    b, _ = synthetic_sketches(3, seed=0, image_size=128)
    assert a.shape == (18, 1, 128, 128) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert labels.tolist()[:6] == list(range(6))
    ink = (a > 127).float().mean((1, 2, 3))
    assert (ink > 0.01).all() and (ink < 0.3).all()  # strokes on an empty page, not filled shapes
    assert not torch.equal(a[0], synthetic_sketches(3, seed=1, image_size=128)[0][0])


def test_quick_mode_without_data_uses_the_stand_in(quick_cfg):
    cfg = replace(quick_cfg, local_data=None)
    data = load_sketches(cfg, limit_per_class=5, image_size=64)
    assert data.classes == SKETCH_CLASSES and len(data.train_images) == 30 and data.image_size == 64
    assert data.source.startswith("synthetic") and data.train_captions[0].endswith("apple")


def test_sketch_sources_refuse_clearly(quick_cfg):
    with pytest.raises(CourseError, match="offline.*COURSE_DATA"):
        load_sketches(replace(quick_cfg, offline=True), source="hub")
    with pytest.raises(CourseError, match="multiple of 16"):
        load_sketches(quick_cfg, image_size=100)
    with pytest.raises(CourseError, match="unknown sketch source"):
        load_sketches(quick_cfg, source="flickr")
    with pytest.raises(CourseError, match=f"no {LOCAL_FILE}"):
        load_sketches(replace(quick_cfg, local_data=None), source="local")


def test_real_doodles(quick_cfg, shared_data):
    data = load_sketches(replace(quick_cfg, local_data=shared_data), limit_per_class=100, image_size=128)
    assert data.source.startswith("local") and len(data.train_images) == 600 and len(data.test_images) == 1800
    assert data.train_images.shape[1:] == (1, 128, 128)
    corners = data.train_images[:, 0, :8, :8].float().mean()
    assert corners < 10  # background is 0, ink 255
    assert set(data.test_labels.tolist()) == set(range(6))


# ------------------------------------------------------------------------------------------ text encoders
def test_openai_clip_refuses_the_offline_placeholder(monkeypatch):
    import transformers

    from helpers.text.encoders import OpenAIClipEncoder

    class Placeholder:
        def __len__(self):
            return 2

    monkeypatch.setattr(transformers.CLIPTokenizer, "from_pretrained", classmethod(lambda cls, *a, **k: Placeholder()))
    monkeypatch.setattr(transformers.CLIPTextModelWithProjection, "from_pretrained",
                        classmethod(lambda cls, *a, **k: torch.nn.Linear(1, 1)))
    from helpers.text import encoders

    monkeypatch.setattr(encoders, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(CourseError, match="not cached and the Hugging Face hub cannot be reached"):
        OpenAIClipEncoder()  # at once: no download attempt, no minutes of retries
    monkeypatch.setattr(encoders, "hub_reachable", lambda timeout=3.0: True)
    with pytest.raises(CourseError, match="only 2 tokens"):
        OpenAIClipEncoder()


def test_auto_encoder_offline_falls_back_to_ours(tiny_cfg, tiny_sketches, trained, capsys):
    _, encoder, recorded = trained
    again, recorded_again = sk.load_sketch_encoder(tiny_cfg, "auto", tiny_sketches)
    assert "offline" in capsys.readouterr().out
    assert recorded_again == recorded and again.name == encoder.name  # the trained one is reused, not retrained
    with pytest.raises(CourseError, match="unknown text encoder"):
        sk.load_sketch_encoder(tiny_cfg, "bert", tiny_sketches)


def test_condition_bank_is_cached(tiny_cfg, trained, tmp_path):
    _, encoder, _ = trained
    bank, index = sk.condition_bank(encoder, ["a cat", "a fish", "a cat"], tmp_path)
    assert bank.shape == (2, encoder.dim) and index.tolist() == [0, 1, 0]
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    again, _ = sk.condition_bank(encoder, ["a fish", "a cat"], tmp_path)
    assert torch.equal(again, bank)


# ------------------------------------------------------------------------------------------ model
def test_sketch_cvae_shapes_and_refusals():
    model = SketchCVAE(SketchCVAEConfig(cond_dim=12, image_size=128, latent_dim=16, width=8))
    x, c = torch.rand(2, 1, 128, 128), torch.randn(2, 12)
    logits, mu, logvar = model(x, c)
    assert logits.shape == x.shape and mu.shape == (2, 16)
    assert set(model.loss(x, c)) == {"loss", "bce", "kl"}
    samples = model.sample(c, torch.Generator().manual_seed(0))
    assert samples.shape == (2, 1, 128, 128) and 0 <= samples.min() and samples.max() <= 1
    with pytest.raises(CourseError, match="resize them to 128x128"):
        model.encode(torch.rand(2, 3, 128, 128), c)
    with pytest.raises(CourseError, match="another text encoder"):
        model.decode(torch.randn(2, 16), torch.randn(2, 384))
    with pytest.raises(CourseError, match="multiple of 32"):
        SketchCVAEConfig(cond_dim=4, image_size=100)


def test_learned_prior_and_fitted_noise():
    torch.manual_seed(0)
    model = SketchCVAE(SketchCVAEConfig(cond_dim=12, image_size=64, latent_dim=3, width=8))
    c = torch.randn(4000, 12)
    prior_mu, prior_logvar = model.prior_stats(c)
    assert torch.equal(prior_mu, torch.zeros(4000, 3)) and torch.equal(prior_logvar, torch.zeros(4000, 3))  # N(0, I)
    # the KL to N(m, I) of a posterior N(m + 1, I) is 1/2 per dimension
    assert torch.allclose(model.kl_per_dim(prior_mu + 1, prior_logvar, c), torch.full((4000, 3), 0.5))
    scale = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 0.1]])
    residuals = torch.tensor([1.0, -2.0, 0.5]) + torch.randn(4000, 3) @ scale.T
    model.fit_noise(residuals)
    assert torch.allclose(model.noise_mean, torch.tensor([1.0, -2.0, 0.5]), atol=0.1)
    assert torch.allclose(model.noise_tril @ model.noise_tril.T, scale @ scale.T, atol=0.15)
    with pytest.raises(CourseError, match="standard prior"):
        SketchCVAE(SketchCVAEConfig(cond_dim=12, image_size=64, prior="standard")).fit_noise(residuals)
    with pytest.raises(CourseError, match="unknown prior"):
        SketchCVAEConfig(cond_dim=12, prior="flat")


def test_temperature_scales_the_sampling_noise():
    torch.manual_seed(0)
    model = SketchCVAE(SketchCVAEConfig(cond_dim=12, image_size=64, latent_dim=3, width=8)).eval()
    model.fit_noise(torch.tensor([0.5, 0.0, -0.5]) + torch.randn(500, 3) * 2)
    seen = {}
    model.decode = lambda z, cond: seen.setdefault("z", []).append(z) or torch.zeros(len(z), 1, 64, 64)
    cond = torch.randn(2000, 12)
    for temperature in (0.0, 0.5, 1.0):
        model.sample(cond, torch.Generator().manual_seed(1), temperature=temperature)
    cold, half, full = seen["z"]
    # T = 0: every sample is the prior's mean plus the fitted mean, the prompt's one most typical code
    assert torch.allclose(cold, model.prior_stats(cond)[0] + model.noise_mean)
    assert torch.allclose(half - cold, 0.5 * (full - cold), atol=1e-5)  # the same noise, half as far
    assert 1.7 < float((full - cold).std()) < 2.3
    for bad in (-0.1, 2.5, float("nan")):
        with pytest.raises(CourseError, match="temperature"):
            model.sample(cond[:2], temperature=bad)


def test_doodle_judge_learns_from_every_local_doodle(quick_cfg, shared_data):
    cfg = replace(quick_cfg, local_data=shared_data)
    quick_share = sk.sketch_data(cfg)
    judged = sk.doodle_judge_data(cfg, quick_share)
    assert len(quick_share.train_labels) == 6 * sk.QUICK_LIMIT_PER_CLASS and len(judged.train_labels) == 16_200
    assert torch.equal(judged.test_labels, quick_share.test_labels) and judged.source == quick_share.source
    offline = replace(quick_cfg, local_data=None)  # no local doodles: the procedural sketches
    synthetic = sk.sketch_data(offline)
    judged = sk.doodle_judge_data(offline, synthetic)
    assert len(synthetic.train_labels) == 1_800 and len(judged.train_labels) == 2_400
    assert torch.equal(judged.test_images, synthetic.test_images) and judged.source == synthetic.source


def test_prompt_diversity():
    stroke = torch.zeros(1, 1, 8, 8)
    stroke[..., 2, :] = 1
    other = torch.zeros(1, 1, 8, 8)
    other[..., 5, :] = 1
    copies = torch.cat([stroke, stroke, 0.5 * stroke])  # a faint copy is the same drawing
    assert sk.prompt_diversity(copies, torch.zeros(3, dtype=torch.long)) == pytest.approx(0, abs=1e-9)
    assert sk.prompt_diversity(torch.cat([stroke, other]), torch.zeros(2, dtype=torch.long)) == pytest.approx(1)
    mixed = torch.cat([stroke, stroke, stroke, other])  # label 0: copies (0), label 1: disjoint strokes (1)
    assert sk.prompt_diversity(mixed, torch.tensor([0, 0, 1, 1])) == pytest.approx(0.5)
    with pytest.raises(CourseError, match="at least two"):
        sk.prompt_diversity(stroke, torch.zeros(1, dtype=torch.long))


# ------------------------------------------------------------------------------------------ training
def test_training_learns_and_checkpoints(tiny_cfg, trained, tiny_sketches):
    model, _, _ = trained
    bces = [h["heldout_bce"] for h in model.history]
    # the caption-read prior learns the tiny set more slowly than a fixed N(0, I) one: 857 -> 711 in 4 epochs
    assert bces[-1] < 0.9 * bces[0], bces
    assert (tiny_cfg.runs_dir / "sketch" / "training.gif").exists()
    loaded = sk.TextToSketch.from_checkpoint(tiny_cfg.runs_dir / "sketch", tiny_cfg)
    prompts = ["a sketch of a cat", "a doodle of a fish"]
    assert torch.allclose(loaded.generate(prompts, seed=3), model.generate(prompts, seed=3), atol=1e-5)
    assert not torch.equal(model.generate(prompts, seed=3), model.generate(prompts, seed=4))
    assert not torch.equal(model.model.noise_tril, torch.eye(model.model.config.latent_dim))  # fitted and saved
    assert torch.equal(loaded.model.noise_tril, model.model.noise_tril)
    assert not torch.equal(model.generate(prompts, seed=3), model.generate(prompts, seed=3, fitted=False))
    recon = model.reconstruct(tiny_sketches.test_images[:5], tiny_sketches.test_captions[:5])
    assert recon.shape == (5, 1, 64, 64)


def test_workers_and_pinned_memory_change_nothing_but_speed(tiny_cfg, tiny_sketches, trained, tmp_path):
    _, encoder, recorded = trained
    runs = {}
    for workers in (0, 2):
        runs[workers] = sk.train_sketch_cvae(tiny_cfg, tmp_path / f"w{workers}", data=tiny_sketches, encoder=encoder,
                                             recorded=recorded, progress=False, epochs=2, num_workers=workers,
                                             persistent_workers=workers > 0, pin_memory=workers > 0)
    w0, w2 = (runs[w].model.state_dict() for w in (0, 2))
    # the same batches in the same order (the order is seeded per epoch, not per process): the same weights
    assert all(torch.allclose(w0[k], w2[k], atol=1e-6) for k in w0)
    assert [h["loss"] for h in runs[0].history] == pytest.approx([h["loss"] for h in runs[2].history], rel=1e-5)


def test_resume_refuses_another_encoder(tiny_cfg, tiny_sketches, trained):
    _, encoder, recorded = trained

    class Other:
        name, dim = "other-encoder", encoder.dim

        def encode(self, texts):
            return torch.zeros(len(texts), encoder.dim)

    with pytest.raises(CourseError, match="another text encoder"):
        sk.train_sketch_cvae(tiny_cfg, tiny_cfg.runs_dir / "sketch", data=tiny_sketches, encoder=Other(),
                             progress=False, resume=True)


def test_generation_refuses_bad_prompts(trained):
    model = trained[0]
    for bad in ("", "   ", "x" * 400):
        with pytest.raises(CourseError):
            model(bad)
    with pytest.raises(CourseError, match="n must be"):
        model("a cat", n=0)


def test_judge_and_evaluation(tiny_cfg, tiny_sketches, trained):
    judge, accuracy = sk.train_doodle_judge(tiny_cfg, tiny_sketches, tiny_cfg.runs_dir / "judge")
    assert accuracy > 0.6  # six procedural classes: far above chance (1/6) after 15 short epochs
    result = sk.evaluate_sketches(trained[0], judge, tiny_sketches, per_class=4)
    assert set(result["per_class"]) == set(SKETCH_CLASSES) and result["n"] == 24
    assert result["class_accuracy"] == pytest.approx(sum(result["per_class"].values()) / len(SKETCH_CLASSES))
    assert result["heldout_bce"] > 0
    assert 0 < result["diversity"] <= 1 and 0 < result["real_diversity"] <= 1

    class SeesOnlyTheSecondClass(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.device_probe = torch.nn.Parameter(torch.zeros(1))

        def forward(self, images):
            logits = torch.zeros(len(images), len(SKETCH_CLASSES))
            logits[:, 1] = 1.0
            return logits

    fooled = sk.evaluate_sketches(trained[0], SeesOnlyTheSecondClass(), tiny_sketches, per_class=4)
    assert fooled["per_class"] == {name: float(i == 1) for i, name in enumerate(SKETCH_CLASSES)}
    assert fooled["class_accuracy"] == pytest.approx(1 / len(SKETCH_CLASSES))


# ------------------------------------------------------------------------------------------ CLI
def test_cli_generate_and_refusals(tiny_cfg, trained, tmp_path, capsys):
    run = str(tiny_cfg.runs_dir / "sketch")
    out = tmp_path / "out"
    assert main(["generate", "--model", "sketch-cvae", "--prompt", "a sketch of a cat", "--checkpoint", run,
                 "--n", "2", "--out", str(out), "--quick"]) == 0
    assert len(list(out.glob("sketch_a-sketch-of-a-cat_seed0_*.png"))) == 3
    cold = tmp_path / "cold"  # temperature 0: every sample is the prompt's one most typical sketch
    assert main(["generate", "--model", "sketch-cvae", "--prompt", "a sketch of a cat", "--checkpoint", run,
                 "--n", "2", "--out", str(cold), "--quick", "--temperature", "0"]) == 0
    first, second = (imageio.imread(path) for path in sorted(cold.glob("sketch_a-sketch-of-a-cat_seed0_*.png"))[:2])
    assert (first == second).all()
    for argv, pattern in [
        (["generate", "--model", "sketch-cvae", "--prompt", " ", "--checkpoint", run], "prompt is empty"),
        (["generate", "--model", "sketch-cvae", "--checkpoint", run], "needs a prompt"),
        (["generate", "--model", "sketch-cvae", "--prompt", "a cat", "--checkpoint", str(tmp_path / "no")],
         "no checkpoint in"),
        (["generate", "a cat", "--model", "sketch-cvae", "--prompt", "a dog", "--checkpoint", run], "prompt once"),
        (["generate", "a cat", "--model", "sketch-cvae", "--temperature", "3", "--checkpoint", run],
         "temperature must be between 0 and 2"),
    ]:
        bad = tmp_path / "bad"
        assert main(argv + ["--out", str(bad), "--quick"]) == 2
        assert pattern in capsys.readouterr().err
        assert not bad.exists()


def test_cli_evaluate_judges_the_class_prompts(tiny_cfg, tiny_sketches, trained, monkeypatch, capsys):
    monkeypatch.setattr(sk, "sketch_data", lambda cfg: tiny_sketches)  # the data the tiny model was trained on
    monkeypatch.setenv("COURSE_RUNS", str(tiny_cfg.runs_dir))
    assert main(["evaluate", "--model", "sketch-cvae", "--checkpoint", str(tiny_cfg.runs_dir / "sketch"), "--quick"]) == 0
    out = capsys.readouterr().out
    judge = float(out.split("judge reads ")[1].split("%")[0])
    judged = float(out.split("generated sketches: ")[1].split("%")[0])
    assert judge > 60 and judged > 100 / len(SKETCH_CLASSES)  # better than chance after 12 tiny epochs
    # each number with its count and 95% interval, and the 4x4 mean-pixel classifier's score on the same sketches
    assert out.count("4x4 mean-pixel classifier reads") == 2 and "95% CI" in out.split("generated sketches: ")[1]
    assert "within-prompt diversity" in out and "per sketch" in out and all(f"{name} " in out for name in SKETCH_CLASSES)


def test_retrieval_line_gives_both_recalls_their_count_and_interval():
    line = sk.retrieval_line({"retrieval_r1": 0.3, "real_r1": 0.6, "n": 100, "chance": 0.01})
    assert "R@1 among 100 held-out captions" in line
    assert "generated 30.0% (n=100, 95% CI 21.9-39.6%)" in line and "real sketches 60.0% (n=100, 95% CI " in line
    assert line.endswith("chance 1.0%")
