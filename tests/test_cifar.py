"""Notebook 05's track: the UNet, the EMA, the class-conditional DDPM, resume, prompt -> class, the CLI."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from helpers import cifar
from helpers.__main__ import main
from helpers.checkpoint import read_checkpoint
from helpers.data.cifar10 import ImageSplits, synthetic_cifar
from helpers.errors import CourseError
from helpers.models.unet import UNet, UNetConfig, count_parameters
from helpers.config import get_config
from helpers.train import EMA, Callback, Trainer

TINY = cifar.DDPMSettings(limit_per_class=None, mults=(1, 2), blocks=1, attention_levels=(1,), dropout=0.0,
                          ema_decay=0.9, diffusion_steps=100)


def tiny_data(n_per_class: int = 4, size: int = 16) -> ImageSplits:
    train = synthetic_cifar(n_per_class, seed=0, image_size=size)
    test = synthetic_cifar(2, seed=0, image_size=size, start=1_000_000)
    return ImageSplits(*train, *test, source=f"synthetic-test-{size}")


def train_tiny(cfg, out, epochs: int, resume: bool = False, data=None, callbacks=()):
    return cifar.train_cifar_ddpm(cfg, out, epochs=epochs, data=data or tiny_data(), settings=TINY, width=8,
                                  batch_size=8, lr=2e-3, resume=resume, progress=False, gif_every=100,
                                  callbacks=callbacks)


class StopAfterEpoch(Callback):
    """The machine goes away after `epochs` epochs (after the checkpoint of that epoch is written)."""

    order = 200

    def __init__(self, epochs: int):
        self.epochs = epochs

    def after_epoch(self, trainer):
        trainer.stop_training = trainer.epoch + 1 >= self.epochs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, quick_cfg):
    out = tmp_path_factory.mktemp("ddpm")
    return out, train_tiny(quick_cfg, out, epochs=2)


# ------------------------------------------------------------------------------------------ UNet
@pytest.mark.parametrize("size", [32, 64, 48])
def test_unet_works_at_any_size(size):
    model = UNet(UNetConfig(width=16, mults=(1, 2, 2), attention_levels=(1, 2), num_classes=10))
    x = torch.randn(2, 3, size, size)
    out = model(x, torch.tensor([0, 999]), torch.tensor([3, 10]))  # 10 = the "no class" token
    assert out.shape == x.shape


def test_unet_conditions_on_time_class_and_text():
    torch.manual_seed(0)
    model = UNet(UNetConfig(width=16, mults=(1, 2), attention_levels=(1,), num_classes=10, context_dim=12)).eval()
    for p in model.parameters():  # the zero-initialised output layers would hide every dependence
        torch.nn.init.normal_(p, std=0.05)
    x, context = torch.randn(1, 3, 16, 16), torch.randn(1, 5, 12)
    base = model(x, torch.tensor([10]), torch.tensor([1]), context)
    assert not torch.allclose(base, model(x, torch.tensor([500]), torch.tensor([1]), context))
    assert not torch.allclose(base, model(x, torch.tensor([10]), torch.tensor([2]), context))
    assert not torch.allclose(base, model(x, torch.tensor([10]), torch.tensor([1]), torch.randn(1, 5, 12)))
    masked = model(x, torch.tensor([10]), torch.tensor([1]), torch.cat([context, torch.randn(1, 2, 12)], 1),
                   torch.tensor([[1, 1, 1, 1, 1, 0, 0]]))
    assert torch.allclose(base, masked, atol=1e-5)  # masked-out tokens change nothing


def test_unet_starts_as_zero_and_refuses_bad_sizes():
    model = UNet(UNetConfig(width=16, mults=(1, 2, 2)))
    assert torch.all(model(torch.randn(1, 3, 32, 32), torch.tensor([5])) == 0)  # zero-init head: predicts eps = 0
    with pytest.raises(CourseError, match="divisible by 4"):
        model(torch.randn(1, 3, 30, 30), torch.tensor([5]))
    with pytest.raises(CourseError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(1, 1, 32, 32), torch.tensor([5]))
    with pytest.raises(CourseError, match="attention_levels"):
        UNetConfig(mults=(1, 2), attention_levels=(3,))
    with pytest.raises(CourseError, match="context must be"):
        UNet(UNetConfig(width=16, mults=(1, 2), context_dim=8))(torch.randn(1, 3, 8, 8), torch.tensor([1]),
                                                                 context=torch.randn(1, 3, 5))


def test_attention_only_where_asked():
    def attention_layers(levels):
        model = UNet(UNetConfig(width=16, mults=(1, 2, 2), attention_levels=levels))
        return sum(1 for m in model.modules() if type(m).__name__ == "Attention")

    assert attention_layers(()) == 2  # the middle block always attends (self-attention, twice)
    assert attention_layers((2,)) == 2 + 2 + 3  # two blocks down, three up at the lowest level


def test_quick_unet_is_small_and_full_is_larger():
    quick = cifar.build_unet(get_config(quick=True).recipe(cifar.KIND).width, cifar.SETTINGS["quick"])
    full = cifar.build_unet(get_config(quick=False).recipe(cifar.KIND).width, cifar.SETTINGS["full"])
    assert 0.6e6 < count_parameters(quick) < 1.5e6  # what 120 CPU-seconds can train (benchmarks/bench_ddpm.py)
    assert 6e6 < count_parameters(full) < 15e6  # what 15 minutes of a T4-class GPU can train


# ------------------------------------------------------------------------------------------ EMA
def test_ema_follows_the_weights_with_warmup():
    model = torch.nn.Linear(2, 1)
    data = torch.utils.data.TensorDataset(torch.randn(16, 2), torch.randn(16, 1))

    def loss_fn(trainer, batch):
        return {"loss": torch.nn.functional.mse_loss(trainer.model(batch[0]), batch[1])}

    trainer = Trainer(model, loss_fn, data, epochs=3, batch_size=4, lr=0.1, callbacks=[EMA(0.99)])
    start = model.weight.detach().clone()
    trainer.fit()
    ema = trainer.ema_model.weight
    assert not torch.equal(ema, model.weight) and not torch.equal(ema, start)
    # with warm-up the average has forgotten the initial weights after 12 steps (decay (1+s)/(10+s))
    assert (ema - model.weight).abs().max() < (start - model.weight).abs().max()
    with pytest.raises(CourseError, match="decay"):
        EMA(1.0)


# ------------------------------------------------------------------------------------------ training
def test_loss_falls_and_labels_are_dropped_for_guidance(quick_cfg, tiny_run):
    out, ddpm = tiny_run
    losses = [h["loss"] for h in ddpm.history]
    assert losses[-1] < losses[0] < 1.2
    seen = []

    class Spy(torch.nn.Module):
        null_class = 10

        def forward(self, x, t, labels):
            seen.append(labels.clone())
            return torch.zeros_like(x)

    trainer = type("T", (), {"model": Spy()})()
    batch = torch.zeros(4000, 3, 4, 4), torch.zeros(4000, dtype=torch.long)
    cifar.ddpm_loss_fn(cifar.NoiseSchedule(10), p_uncond=0.1)(trainer, batch)
    dropped = float((seen[0] == 10).float().mean())
    assert 0.07 < dropped < 0.13  # one label in ten becomes "no class"


def test_resumed_run_matches_uninterrupted_run(quick_cfg, tmp_path, tiny_run):
    out, straight = tiny_run
    resumed_dir = tmp_path / "resumed"
    train_tiny(quick_cfg, resumed_dir, epochs=2, callbacks=[StopAfterEpoch(1)])  # the same plan, interrupted
    assert read_checkpoint(resumed_dir, "cifar-ddpm").index["epoch"] == 1
    resumed = train_tiny(quick_cfg, resumed_dir, epochs=2, resume=True)
    a, b = read_checkpoint(out, "cifar-ddpm"), read_checkpoint(resumed_dir, "cifar-ddpm")
    assert a.index["step"] == b.index["step"] == 10
    for name, tensor in a.weights.items():
        assert torch.equal(tensor, b.weights[name]), name
    for name, tensor in a.state.items():  # EMA, optimizer moments, RNG
        assert torch.equal(tensor, b.state[name]), name
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]


def test_resume_refuses_other_data(quick_cfg, tmp_path):
    train_tiny(quick_cfg, tmp_path, epochs=1)
    with pytest.raises(CourseError, match="resume with the same data"):
        train_tiny(quick_cfg, tmp_path, epochs=2, resume=True, data=tiny_data(size=8))


def test_generation_is_seeded_guided_and_checked(tiny_run):
    out, _ = tiny_run
    ddpm = cifar.ClassToImage.from_checkpoint(out)
    assert ddpm.image_size == 16
    a = ddpm.generate([0, 5], steps=5, seed=3)
    assert a.shape == (2, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, ddpm.generate([0, 5], steps=5, seed=3))
    assert not torch.equal(a, ddpm.generate([0, 5], steps=5, seed=4))
    assert not torch.equal(a, ddpm.generate([0, 5], steps=5, seed=3, guidance=1.0))
    assert ddpm.generate([1], steps=4, sampler="ddpm", guidance=0).shape == (1, 3, 16, 16)
    assert ddpm.generate([1], steps=4, sampler="ddim", spacing="leading").shape == (1, 3, 16, 16)
    raw = cifar.ClassToImage.from_checkpoint(out, use_ema=False)
    assert not torch.equal(a, raw.generate([0, 5], steps=5, seed=3))  # EMA and raw weights differ
    with pytest.raises(CourseError, match="0-9"):
        ddpm.generate([10])
    with pytest.raises(CourseError, match="guidance"):
        ddpm.generate([1], guidance=-1)
    with pytest.raises(CourseError, match="steps must be between"):
        ddpm.generate([1], steps=0)
    with pytest.raises(CourseError, match="no checkpoint"):
        cifar.ClassToImage.from_checkpoint(out / "missing")


def test_class_grid_and_guidance_grid(tiny_run):
    ddpm = cifar.ClassToImage.from_checkpoint(tiny_run[0])
    images = ddpm.generate(torch.arange(10).repeat_interleave(2), steps=3)
    grid = cifar.class_grid(images, per_class=2)
    assert grid.shape[0] == 3 and grid.shape[1] > 10 * 32
    figure, rows = cifar.guidance_grid(ddpm, [0, 1, 3], steps=3)
    assert set(rows) == {0, 1, 3} and rows[3].shape == (10, 3, 16, 16) and figure.shape[0] == 3


# ------------------------------------------------------------------------------------------ prompt -> class
@pytest.fixture(scope="module")
def reader():
    return cifar.ClassReader()


@pytest.mark.parametrize("prompt, expected", [
    ("a photo of a cat", "cat"), ("Truck", "truck"), ("a red sports car", "automobile"),
    ("show me a puppy", "dog"), ("an aeroplane in the sky", "airplane"), ("a boat on the sea", "ship"),
    ("draw a horse", "horse"), ("a green frog", "frog"), ("a stag", "deer"), ("a sparrow", "bird"),
    ("a fire engine", "truck"), ("  SHIP ", "ship"),
])
def test_prompts_map_to_classes(reader, prompt, expected):
    assert cifar.CIFAR10_CLASSES[reader(prompt)] == expected


@pytest.mark.parametrize("prompt, message", [
    ("", "the prompt is empty"), ("   ", "the prompt is empty"), ("a bowl of soup", "names no CIFAR-10 class"),
    ("a bicycle", "names no CIFAR-10 class"), ("the number seven", "names no CIFAR-10 class"),
    ("a smiling woman with blond hair", "names no CIFAR-10 class"), ("a ship and a plane", "several classes"),
    ("cat " * 100, "400 characters long; the limit is 300"),
])
def test_prompts_naming_no_single_class_are_refused(reader, prompt, message):
    with pytest.raises(CourseError, match=message):
        reader(prompt)


# ------------------------------------------------------------------------------------------ CLI
def test_cli_generate_and_refusals(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    args = ["generate", "--model", "cifar-ddpm", "--checkpoint", str(out), "--n", "2", "--steps", "3",
            "--out", str(tmp_path)]
    assert main([*args, "a photo of a cat"]) == 0
    assert len(list(tmp_path.glob("cifar_cat_dpmpp2m3_w3_seed0_*.png"))) == 3  # two samples + the grid
    assert main([*args, "a bowl of soup"]) == 2
    assert "names no CIFAR-10 class" in capsys.readouterr().err
    assert main(args) == 2
    assert "needs a prompt" in capsys.readouterr().err
    assert main(["generate", "--model", "cifar-ddpm", "--checkpoint", str(tmp_path / "none"), "a cat"]) == 2
    assert "train cifar-ddpm" in capsys.readouterr().err
    assert len(list(tmp_path.glob("*.png"))) == 3  # nothing written by the refused calls


def test_cli_trains_and_resumes_in_quick_mode(tmp_path, monkeypatch, capsys):
    """The real CLI path: `train cifar-ddpm --quick`, shrunk to a few images so it runs in seconds."""
    monkeypatch.setitem(cifar.SETTINGS, "quick", replace(TINY, limit_per_class=2))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "no-data"))  # -> the synthetic stand-in
    out = tmp_path / "run"
    assert main(["train", "cifar-ddpm", "--quick", "--epochs", "1", "--out", str(out)]) == 0
    assert read_checkpoint(out, "cifar-ddpm").index["epoch"] == 1
    assert (out / "training.gif").exists()
    assert main(["train", "cifar-ddpm", "--quick", "--epochs", "2", "--out", str(out), "--resume"]) == 0
    assert read_checkpoint(out, "cifar-ddpm").index["epoch"] == 2
    assert "trained" in capsys.readouterr().out


def test_cli_trains_to_a_time_budget_and_refuses_bad_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cifar.SETTINGS, "quick", replace(TINY, limit_per_class=2))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "no-data"))
    out = tmp_path / "run"
    for bad in ("abc", "0", "-5m", "10000h"):
        assert main(["train", "cifar-ddpm", "--quick", f"--time-budget={bad}", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: time budget") and "\n" not in err
    assert not out.exists()  # nothing half-written
    assert main(["train", "cifar-ddpm", "--quick", "--time-budget", "5s", "--out", str(out)]) == 0
    checkpoint = read_checkpoint(out, "cifar-ddpm")
    plan = checkpoint.index["extra"]["plan"]
    assert plan["time_budget"] == 5 and plan["total_steps"] == checkpoint.index["step"]
    assert plan["total_steps"] > 2  # more than the recipe's 2 epochs of 1 step: the budget, not the epochs, decided
    assert "time budget 0.1 min: measured" in capsys.readouterr().out


def test_cli_evaluate_reports_samples_and_kid(tiny_run, tmp_path, monkeypatch, capsys):
    """`evaluate --model cifar-ddpm` in quick mode: a judge (trained here on the procedural icons), 200 samples with
    the fast solver, their count and 95% interval, the colour baseline beside the judge, KID as mean ± std (it
    once crashed formatting the pair)."""
    out, _ = tiny_run
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    assert main(["evaluate", "--model", "cifar-ddpm", "--checkpoint", str(out), "--quick", "--steps", "4"]) == 0
    printed = capsys.readouterr().out
    assert "dpm++2m-4, guidance 3: judged class accuracy" in printed and "(n=200, 95% CI " in printed
    # the judge's held-out line and the samples' line each carry the colour classifier's score beside them
    assert "of held-out images" in printed and printed.count("4x4 mean-colour classifier reads") == 2
    assert "KID " in printed and " ± " in printed
