"""helpers/diffusion: our from-scratch schedules and update steps against diffusers' schedulers, and the samplers."""
from __future__ import annotations

import pytest
import torch

from helpers.diffusion import NoiseSchedule, ddim_step, ddpm_step, guided, sample, training_loss
from helpers.errors import CourseError

diffusers = pytest.importorskip("diffusers", reason="diffusers (a test-only dependency: pip install -e '.[dev]')")

DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_matches_diffusers(kind):
    ours = NoiseSchedule(1000, kind)
    theirs = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_SCHEDULE[kind])
    assert torch.allclose(ours.betas.float(), theirs.betas, atol=1e-6)
    assert torch.allclose(ours.alphas_cumprod.float(), theirs.alphas_cumprod, atol=1e-5)
    x0, noise = _inputs()
    t = torch.tensor([0, 10, 500, 999])
    assert torch.allclose(ours.add_noise(x0, noise, t), theirs.add_noise(x0, noise, t), atol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("t", [999, 500, 37, 1, 0])
@pytest.mark.parametrize("clip", [True, False])
def test_ddpm_step_matches_diffusers(kind, t, clip):
    ours = NoiseSchedule(1000, kind)
    theirs = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_SCHEDULE[kind],
                                     clip_sample=clip, variance_type="fixed_small")
    x_t, eps = _inputs(t)
    noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(7))
    expected = theirs.step(eps, t, x_t, generator=torch.Generator().manual_seed(7)).prev_sample
    # diffusers keeps its schedule in float32, ours in float64: near t = 0 (1 - abar ~ 1e-4) they differ ~1e-4
    assert torch.allclose(ddpm_step(ours, eps, t, x_t, noise=noise, clip=clip), expected, atol=5e-4)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("count", [50, 10])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_steps_match_diffusers(kind, count, eta):
    ours = NoiseSchedule(1000, kind)
    theirs = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_SCHEDULE[kind])
    theirs.set_timesteps(count)
    assert ours.timesteps(count) == theirs.timesteps.tolist()
    x_t, eps = _inputs(count)
    stride = 1000 // count
    for t in ours.timesteps(count)[:3] + ours.timesteps(count)[-2:]:
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(t))
        expected = theirs.step(eps, t, x_t, eta=eta, generator=torch.Generator().manual_seed(t)).prev_sample
        got = ddim_step(ours, eps, t, x_t, t - stride, eta=eta, noise=noise)
        assert torch.allclose(got, expected, atol=1e-4), t


def test_strided_ddpm_matches_diffusers():
    ours = NoiseSchedule(1000, "linear")
    theirs = diffusers.DDPMScheduler(num_train_timesteps=1000)
    theirs.set_timesteps(100)
    x_t, eps = _inputs(3)
    for t in (990, 500, 10, 0):
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(t))
        expected = theirs.step(eps, t, x_t, generator=torch.Generator().manual_seed(t)).prev_sample
        assert torch.allclose(ddpm_step(ours, eps, t, x_t, t - 10, noise=noise), expected, atol=1e-4), t


def test_perfect_denoiser_recovers_the_image():
    """With the true noise as the prediction, both samplers walk back to x0 exactly (DDIM, eta=0)."""
    schedule = NoiseSchedule(1000, "cosine")
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    # an oracle that knows x0: eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)
    def oracle(x, t):
        abar = schedule.abar(t, x)
        return (x - abar.sqrt() * x0) / (1 - abar).sqrt()

    out = sample(oracle, x0.shape, schedule, sampler="ddim", steps=20, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-4)
    out = sample(oracle, x0.shape, schedule, sampler="ddpm", steps=1000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-3)


def test_forward_process_destroys_the_signal():
    for kind in ("linear", "cosine"):
        schedule = NoiseSchedule(1000, kind)
        assert schedule.alphas_cumprod[-1] < 1e-3 and schedule.alphas_cumprod[0] > 0.99
        assert torch.all(schedule.alphas_cumprod[1:] < schedule.alphas_cumprod[:-1])


def test_guidance_combines_both_halves():
    def eps_fn(x, t, c):
        return x * 0 + c.view(-1, 1, 1, 1).float()

    x, t = torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.long)
    cond, null = torch.tensor([3, 3]), torch.tensor([1, 1])
    assert torch.allclose(guided(eps_fn, cond, null, 1.0)(x, t), torch.full_like(x, 3.0))
    assert torch.allclose(guided(eps_fn, cond, null, 0.0)(x, t), torch.full_like(x, 1.0))
    assert torch.allclose(guided(eps_fn, cond, null, 3.0)(x, t), torch.full_like(x, 1 + 3 * 2.0))


def test_training_loss_is_noise_mse():
    schedule = NoiseSchedule(100, "linear")
    x0 = torch.zeros(8, 3, 4, 4)
    # predicting zero noise costs E[eps^2] = 1; predicting the true noise (x_t / sqrt(1 - abar) with x0 = 0) costs 0
    loss = training_loss(schedule, lambda x, t: torch.zeros_like(x), x0, torch.Generator().manual_seed(0))
    assert 0.7 < float(loss) < 1.3
    perfect = training_loss(schedule, lambda x, t: x / (1 - schedule.abar(t, x)).sqrt(), x0,
                            torch.Generator().manual_seed(0))
    assert float(perfect) < 1e-10


def test_bad_settings_are_refused():
    with pytest.raises(CourseError, match="unknown noise schedule"):
        NoiseSchedule(1000, "quadratic")
    with pytest.raises(CourseError, match="steps must be between"):
        NoiseSchedule(1000).timesteps(0)
    with pytest.raises(CourseError, match="unknown sampler"):
        sample(lambda x, t: x, (1, 1, 2, 2), NoiseSchedule(10), sampler="euler")
