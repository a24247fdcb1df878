"""Flow matching (rectified flow), its Euler/Heun samplers and the diffusion transformer (DiT)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from helpers import cifar
from helpers.__main__ import main
from helpers.checkpoint import read_checkpoint
from helpers.diffusion import FlowSchedule, NoiseSchedule, sample, schedule_from_settings, training_loss
from helpers.errors import CourseError
from helpers.models.dit import DiT, DiTBlock, DiTConfig, positions_2d
from test_cifar import TINY, tiny_data


def velocity_field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed, non-linear stand-in for a network: any field will do to compare two solvers step for step."""
    return torch.tanh(x) * (1 + t.view(-1, 1, 1, 1) / 1000) - 0.3 * x


# ------------------------------------------------------------------------------------------ the path
def test_the_straight_path_its_velocity_and_the_vp_view():
    flow = FlowSchedule()
    x0, eps = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    x_t = flow.add_noise(x0, eps, t)
    assert torch.allclose(x_t[0], x0[0]) and torch.allclose(x_t[-1], eps[-1])  # t = 0 data, t = 1 noise
    u = flow.target(x0, eps, t)
    x0_hat, eps_hat = flow.split(x_t, u, t)
    assert torch.allclose(x0_hat, x0, atol=1e-6) and torch.allclose(eps_hat, eps, atol=1e-6)
    # x_t / sqrt((1-t)^2 + t^2) is a variance-preserving point with abar = (1-t)^2 / ((1-t)^2 + t^2)
    abar = flow.abar(t, x0)
    vp = x_t / ((1 - t) ** 2 + t ** 2).sqrt().view(-1, 1, 1, 1)
    assert torch.allclose(vp, abar.sqrt() * x0 + (1 - abar).sqrt() * eps, atol=1e-6)
    assert schedule_from_settings({"prediction": "flow"}).prediction == "flow"
    assert isinstance(schedule_from_settings({"prediction": "v", "schedule": "cosine"}), NoiseSchedule)


def test_logit_normal_times_sit_in_the_middle():
    g = torch.Generator().manual_seed(0)
    logit = FlowSchedule("logit-normal").sample_timesteps(20_000, generator=g)
    uniform = FlowSchedule("uniform").sample_timesteps(20_000, generator=g)
    for t in (logit, uniform):
        assert 0 < t.min() and t.max() < 1
    middle = lambda t: ((t > 0.25) & (t < 0.75)).float().mean()  # noqa: E731
    assert abs(uniform.mean() - 0.5) < 0.01 and abs(logit.mean() - 0.5) < 0.01
    assert 0.48 < middle(uniform) < 0.52 and middle(logit) > 0.65  # sigmoid(N(0,1)): 73% within (0.25, 0.75)
    with pytest.raises(CourseError, match="unknown flow-matching times"):
        FlowSchedule("cosine")


def test_flow_loss_is_the_hand_computed_one_and_an_eps_loss_reweighted():
    """training_loss on a FlowSchedule, written out by hand with the same draws (times, then noise); and the identity
    notebook 06 derives: the velocity error is the noise error over (1 - t), i.e. weight (1 + exp(-lambda/2))^2."""
    flow = FlowSchedule("logit-normal")
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    model_fn = lambda x, t1000: net(x) + (t1000 / 1000).view(-1, 1, 1, 1)  # noqa: E731
    x0 = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    g = torch.Generator().manual_seed(2)
    t = flow.sample_timesteps(6, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    tt = t.view(-1, 1, 1, 1)
    with torch.no_grad():
        x_t = (1 - tt) * x0 + tt * noise
        output = model_fn(x_t, 1000 * t)
        by_hand = ((output - (noise - x0)) ** 2).mean(dim=(1, 2, 3))
        loss = training_loss(flow, model_fn, x0, generator=torch.Generator().manual_seed(2))
        assert loss.item() == pytest.approx(by_hand.mean().item(), rel=1e-6)
        _, eps_hat = flow.split(x_t, output, t)
        lam = 2 * torch.log((1 - t) / t)
        eps_error = ((eps_hat - noise) ** 2).mean(dim=(1, 2, 3))
        assert torch.allclose(by_hand, eps_error * (1 + torch.exp(-lam / 2)) ** 2, rtol=1e-4)
    with pytest.raises(CourseError, match="already weights the noise levels"):
        training_loss(flow, model_fn, x0, min_snr_gamma=5.0)


def test_euler_is_exact_on_straight_paths():
    """With one data point x0 the true velocity is (x_t - x0) / t: every path is a straight line to x0, and Euler
    follows a straight line exactly, whatever the number of steps (what makes few-step sampling work)."""
    x0 = torch.randn(1, 3, 4, 4)
    flow = FlowSchedule()
    for steps in (1, 2, 7):
        out = sample(lambda x, t: (x - x0) / (t / flow.steps).view(-1, 1, 1, 1), (4, 3, 4, 4), flow,
                     sampler="euler", steps=steps, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(out, x0.expand(4, -1, -1, -1), atol=1e-5)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_matches_diffusers_number_for_number(shift):
    diffusers = pytest.importorskip("diffusers")
    steps, shape = 8, (2, 3, 4, 4)
    flow = FlowSchedule(shift=shift)
    ours = sample(velocity_field, shape, flow, sampler="euler", steps=steps,
                  generator=torch.Generator().manual_seed(0))
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    # diffusers shifts the end of its default grid twice when shift != 1; the grid given as sigmas is shifted once
    scheduler.set_timesteps(sigmas=torch.linspace(1.0, 1 / 1000, steps).tolist())
    assert torch.allclose(scheduler.sigmas[:-1].double(), torch.tensor(flow.timesteps(steps), dtype=torch.float64), atol=1e-6)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    for t in scheduler.timesteps:
        x = scheduler.step(velocity_field(x, t.expand(shape[0])), t, x).prev_sample
    assert torch.allclose(ours, x, atol=1e-5)


def test_heun_matches_diffusers_and_spends_two_calls_per_step():
    diffusers = pytest.importorskip("diffusers")
    steps, shape, calls = 6, (2, 3, 4, 4), []

    def counted(x, t):
        calls.append(1)
        return velocity_field(x, t)

    ours = sample(counted, shape, FlowSchedule(), sampler="heun", steps=steps,
                  generator=torch.Generator().manual_seed(0))
    assert len(calls) == 2 * steps - 1  # the last step, into t = 0, is Euler's
    scheduler = diffusers.FlowMatchHeunDiscreteScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(steps)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    for t in scheduler.timesteps:
        x = scheduler.step(velocity_field(x, t.expand(shape[0])), t, x).prev_sample
    assert torch.allclose(ours, x, atol=1e-5)


def test_samplers_refuse_the_other_kind_of_model():
    shape = (1, 3, 4, 4)
    with pytest.raises(CourseError, match="does not fit a flow-matching model; choose one of euler, heun"):
        sample(velocity_field, shape, FlowSchedule(), sampler="dpm++2m", steps=4)
    with pytest.raises(CourseError, match="does not fit a diffusion"):
        sample(velocity_field, shape, NoiseSchedule(100, "cosine", "v"), sampler="euler", steps=4)
    with pytest.raises(CourseError, match="min_snr_gamma=None"):
        training_loss(FlowSchedule(), velocity_field, torch.randn(shape), min_snr_gamma=5.0)


# ------------------------------------------------------------------------------------------ DiT
def test_dit_starts_as_zero_and_each_block_as_identity():
    model = DiT(DiTConfig(width=32, depth=2, heads=2, num_classes=10))
    for size in (8, 16, 12):  # any size the patches tile
        x = torch.randn(2, 3, size, size)
        out = model(x, torch.tensor([0, 999]), torch.tensor([3, 10]))
        assert out.shape == x.shape and out.abs().max() == 0  # zero-initialised final layer
    block, tokens, c = DiTBlock(32, 2, 4.0), torch.randn(2, 5, 32), torch.randn(2, 32)
    assert torch.equal(block(tokens, c), tokens)  # adaLN-zero: gates start at 0
    with pytest.raises(CourseError, match="divisible by 2"):
        model(torch.randn(1, 3, 9, 9), torch.tensor([0]))
    with pytest.raises(CourseError, match="heads"):
        DiTConfig(width=30, heads=4)
    pos = positions_2d(4, 4, 32)
    assert pos.shape == (16, 32) and torch.unique(pos, dim=0).shape[0] == 16  # every patch its own position


def test_dit_conditions_on_time_and_class_once_trained():
    torch.manual_seed(0)
    model = DiT(DiTConfig(width=32, depth=1, heads=2, num_classes=10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, target = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    for _ in range(3):  # the zero layers open from the output inwards: the first step only reaches the last one
        optimizer.zero_grad()
        (model(x, torch.tensor([10, 500, 900, 999]), torch.tensor([0, 1, 2, 3])) - target).pow(2).mean().backward()
        optimizer.step()
    out = lambda t, c: model(x[:1], torch.tensor([t]), torch.tensor([c]))  # noqa: E731
    assert not torch.allclose(out(10, 1), out(900, 1)) and not torch.allclose(out(10, 1), out(10, 2))


# ------------------------------------------------------------------------------------------ training, checkpoints, CLI
FLOW_TINY = cifar.with_objective(TINY, "flow")


@pytest.mark.parametrize("backbone", ["unet", "dit"])
def test_flow_training_learns_and_the_checkpoint_knows_what_it_holds(quick_cfg, tmp_path, backbone):
    settings = cifar.with_objective(FLOW_TINY, backbone=backbone)
    settings = replace(settings, dit_width=32, dit_depth=2, dit_heads=2)
    ddpm = cifar.train_cifar_ddpm(quick_cfg, tmp_path, epochs=6, data=tiny_data(), settings=settings, width=8,
                                  batch_size=8, lr=3e-3, progress=False, gif_every=100)
    losses = [h["loss"] for h in ddpm.history]
    assert losses[-1] < losses[0]
    loaded = cifar.ClassToImage.from_checkpoint(tmp_path)
    assert isinstance(loaded.schedule, FlowSchedule) and loaded.default_sampler == "euler"
    assert isinstance(loaded.model, DiT if backbone == "dit" else cifar.UNet)
    a = loaded.generate([1, 2], steps=3, seed=4)
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, loaded.generate([1, 2], steps=3, seed=4))
    assert torch.equal(a, ddpm.generate([1, 2], steps=3, seed=4, sampler="euler"))
    assert not torch.equal(a, loaded.generate([1, 2], steps=3, seed=4, sampler="heun"))
    with pytest.raises(CourseError, match="euler, heun"):
        loaded.generate([1], sampler="dpm++2m")


def test_cli_trains_flow_dit_and_generates_with_its_sampler(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cifar.SETTINGS, "quick", replace(TINY, limit_per_class=2, dit_width=32, dit_depth=1,
                                                         dit_heads=2))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "no-data"))
    out, pictures = tmp_path / "run", tmp_path / "pictures"
    args = ["train", "cifar-ddpm", "--quick", "--epochs", "1", "--out", str(out)]
    assert main([*args, "--objective", "flow", "--backbone", "dit"]) == 0
    assert "diffusion transformer (rectified flow)" in capsys.readouterr().out
    settings = read_checkpoint(out, "cifar-ddpm").index["extra"]["settings"]
    assert (settings["prediction"], settings["backbone"], settings["noise_levels"]) == ("flow", "dit", "logit-normal")
    assert main([*args, "--resume", "--epochs", "2"]) == 2  # resuming as the default v-prediction UNet: refused
    assert "--objective flow --backbone dit" in capsys.readouterr().err
    draw = ["generate", "--model", "cifar-ddpm", "--checkpoint", str(out), "--n", "1", "--out", str(pictures)]
    assert main([*draw, "--steps", "4", "a photo of a cat"]) == 0  # no --sampler: the checkpoint's own
    assert len(list(pictures.glob("cifar_cat_euler4_w3_seed0_*.png"))) == 2
    assert main([*draw, "--sampler", "heun", "--steps", "3", "a cat"]) == 0
    assert main([*draw, "--sampler", "ddim", "a cat"]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not fit a flow-matching model" in err and "\n" not in err
    assert main(["train", "vae", "--quick", "--epochs", "1", "--objective", "flow", "--out", str(tmp_path / "v")]) == 2
    assert not (tmp_path / "v").exists()
