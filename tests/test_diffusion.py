"""helpers/diffusion: our from-scratch schedules and update steps against diffusers' schedulers, and the samplers."""
from __future__ import annotations

import pytest
import torch

from helpers.diffusion import (SPACINGS, NoiseSchedule, ddim_step, ddpm_step, dpm_solver_2m_step, guided, sample,
                               training_loss)
from helpers.errors import CourseError

diffusers = pytest.importorskip("diffusers", reason="diffusers (a test-only dependency: pip install -e '.[dev]')")

DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
DIFFUSERS_PREDICTION = {"epsilon": "epsilon", "v": "v_prediction"}
SHAPE = (4, 3, 8, 8)


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
        expected = theirs.step(eps, t, x_t, eta=eta, generator=torch.Generator().manual_seed(t),
                               use_clipped_model_output=True).prev_sample  # ours: eps agrees with the clipped x0
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


def _fake_network(x, t):
    """A fixed stand-in for a trained network: deterministic in x and t (a tensor of steps, or one 0-d step)."""
    t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, *[1] * (x.dim() - 1))
    return 0.1 * x + torch.sin(t / 100)


def _ours(schedule, sampler, steps, **kwargs):
    """Our whole sampling loop on the fake network: (final sample, the steps it was called at)."""
    seen = []

    def model_fn(x, t):
        seen.append(int(t[0]))
        return _fake_network(x, t)

    x = sample(model_fn, SHAPE, schedule, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0),
               **kwargs)
    return x, seen


def _theirs(scheduler, **step_kwargs):
    """The same loop with a diffusers scheduler (set_timesteps done) from the same x_T and noise."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=generator)
    for t in scheduler.timesteps:
        x = scheduler.step(_fake_network(x, t), t, x, generator=generator, **step_kwargs).prev_sample
    return x, scheduler.timesteps.tolist()


def _assert_same_sample(got, expected):
    """Agreement to 1e-4 of the samples' size: without clip, the fake network (no denoiser) makes x0_hat =
    x_t / sqrt(abar) ~ 2e4 x_t at the cosine schedule's t = 999 for epsilon, and samples of size ~1e4-1e5; both sides
    then differ by float32 rounding of that size (diffusers keeps abar in float32, we in float64 -> float32)."""
    scale = max(1.0, expected.abs().max().item())
    error = (got - expected).abs().max().item()
    assert error <= 1e-4 * scale, f"max |ours - diffusers| = {error:.3g} for samples of size {scale:.3g}"


@pytest.mark.parametrize("count", [1, 7, 10, 16, 20, 30, 48, 50, 333, 1000])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_timestep_spacings_match_diffusers(spacing, count):
    ours = NoiseSchedule(1000).timesteps(count, spacing)
    theirs = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    theirs.set_timesteps(count)
    assert ours == theirs.timesteps.tolist()
    assert len(ours) == count and ours == sorted(set(ours), reverse=True)
    if spacing == "trailing":
        assert ours[0] == 999  # the first step starts from pure noise
        # DPMSolverMultistepScheduler's "trailing" is the same list ("leading" and "linspace" are not: see below).
        # (For some counts, e.g. 61, numpy.arange's rounding gives it count + 1 steps, the last one t = -1.)
        dpm = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, timestep_spacing="trailing")
        dpm.set_timesteps(count)
        assert ours == dpm.timesteps.tolist()


def _dpm_scheduler(kind, prediction, clip, **config):
    """diffusers' DPM-Solver++(2M); its `thresholding` with sample_max_value=1 is exactly our clip of x0_hat."""
    return diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule=DIFFUSERS_SCHEDULE[kind],
        prediction_type=DIFFUSERS_PREDICTION[prediction], algorithm_type="dpmsolver++", solver_order=2,
        solver_type="midpoint", lower_order_final=True, final_sigmas_type="zero", thresholding=clip,
        sample_max_value=1.0, **config)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("steps", [10, 20, 30])  # 30: not a divisor of 1000, the trailing list is uneven
@pytest.mark.parametrize("clip", [True, False])
def test_dpm_solver_2m_matches_diffusers(kind, prediction, steps, clip):
    """The whole loop. With final_sigmas_type="zero" diffusers takes a first-order last step at any number of steps
    (lower_order_final only matters for "sigma_min"), as we do: h is infinite there."""
    theirs = _dpm_scheduler(kind, prediction, clip, timestep_spacing="trailing")
    theirs.set_timesteps(steps)
    expected, their_times = _theirs(theirs)
    got, our_times = _ours(NoiseSchedule(1000, kind, prediction), "dpm++2m", steps, clip=clip, spacing="trailing")
    assert our_times == their_times
    _assert_same_sample(got, expected)


@pytest.mark.parametrize("spacing", ["leading", "linspace"])
@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_dpm_solver_2m_with_other_spacings_matches_diffusers(spacing, prediction):
    """DPMSolverMultistepScheduler's own "leading" and "linspace" cut T into steps + 1 pieces (unlike its DDIM
    scheduler, whose lists are ours), so it gets our list as custom timesteps: the last step goes t = 0 -> clean."""
    schedule = NoiseSchedule(1000, "cosine", prediction)
    theirs = _dpm_scheduler("cosine", prediction, clip=False)
    theirs.set_timesteps(timesteps=schedule.timesteps(20, spacing))
    expected, their_times = _theirs(theirs)
    got, our_times = _ours(schedule, "dpm++2m", 20, clip=False, spacing=spacing)
    assert our_times == their_times
    _assert_same_sample(got, expected)


def test_first_order_dpm_solver_is_ddim():
    """Without a previous x0_hat, DPM-Solver++ is DDIM with eta = 0 (exp(-h) = the ratio of the SNRs' roots)."""
    schedule = NoiseSchedule(1000, "cosine")
    x_t, eps = _inputs(5)
    for t, prev_t in [(999, 899), (500, 480), (40, 0), (20, -1)]:
        got, _ = dpm_solver_2m_step(schedule, eps, t, x_t, prev_t, clip=False)
        assert torch.allclose(got, ddim_step(schedule, eps, t, x_t, prev_t, clip=False), rtol=1e-5, atol=1e-5), t


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("count, eta, clip", [(10, 0.0, True), (50, 0.0, False), (10, 0.5, False)])
def test_trailing_ddim_matches_diffusers(kind, prediction, count, eta, clip):
    """(count divides T: diffusers' DDIM then steps t -> t - T // count, the next element of its list, as ours
    always does.)"""
    theirs = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_SCHEDULE[kind],
                                     prediction_type=DIFFUSERS_PREDICTION[prediction], clip_sample=clip,
                                     timestep_spacing="trailing")
    theirs.set_timesteps(count)
    expected, their_times = _theirs(theirs, eta=eta, use_clipped_model_output=clip)
    got, our_times = _ours(NoiseSchedule(1000, kind, prediction), "ddim", count, eta=eta, clip=clip,
                           spacing="trailing")
    assert our_times == their_times
    _assert_same_sample(got, expected)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_trailing_ddpm_matches_diffusers(kind, prediction):
    theirs = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_SCHEDULE[kind],
                                     prediction_type=DIFFUSERS_PREDICTION[prediction], timestep_spacing="trailing")
    theirs.set_timesteps(10)
    expected, their_times = _theirs(theirs)
    got, our_times = _ours(NoiseSchedule(1000, kind, prediction), "ddpm", 10, spacing="trailing")
    assert our_times == their_times
    _assert_same_sample(got, expected)


def _oracle(schedule, x0):
    """A network that knows x0: it outputs the true eps (or v) of any x_t."""
    def model_fn(x, t):
        abar = schedule.abar(t, x)
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
        return eps if schedule.prediction == "epsilon" else abar.sqrt() * eps - (1 - abar).sqrt() * x0

    return model_fn


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_perfect_denoiser_recovers_the_image_with_dpm_solver(prediction, spacing):
    """With every x0_hat right, the 2M correction vanishes and each step is exact: 10 steps land on x0."""
    schedule = NoiseSchedule(1000, "cosine", prediction)
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = sample(_oracle(schedule, x0), x0.shape, schedule, sampler="dpm++2m", steps=10, spacing=spacing,
                 generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-4)


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
        sample(lambda x, t: x, (1, 1, 2, 2), NoiseSchedule(10), sampler="rk4")
    with pytest.raises(CourseError, match="unknown timestep spacing"):
        NoiseSchedule(1000).timesteps(10, "uniform")
    with pytest.raises(CourseError, match="unknown timestep spacing"):
        sample(lambda x, t: x, (1, 1, 2, 2), NoiseSchedule(10), sampler="dpm++2m", steps=5, spacing="even")


def test_cli_offers_every_sampler():
    """The CLI spells the samplers out (so `--help` needs no torch): the two lists must not drift apart."""
    from helpers import __main__ as cli
    from helpers.cifar import OBJECTIVES
    from helpers.diffusion import FLOW_SAMPLERS, SAMPLERS

    assert sorted(cli.SAMPLERS) == sorted(SAMPLERS) and sorted(cli.FLOW_SAMPLERS) == sorted(FLOW_SAMPLERS)
    assert cli.OBJECTIVES == OBJECTIVES


# ------------------------------------------------------------------------------------------ EDM preconditioning
@pytest.mark.parametrize("t", [0, 37, 500, 950])
def test_edm_preconditioning_matches_diffusers(t):
    """Our VP x_t is EDM's x = x_t / sqrt(abar) at sigma = sqrt((1 - abar) / abar): the network's input (c_in x) and
    the denoised x0_hat (c_skip x + c_out F) must be diffusers' EDM preconditioning of that point."""
    ours = NoiseSchedule(1000, "cosine", "edm")
    theirs = diffusers.EDMEulerScheduler(sigma_data=0.5, prediction_type="epsilon")
    x_t, output = _inputs(3)
    steps = torch.full((4,), t)
    abar = float(ours.alphas_cumprod[t])
    sigma, x_ve = ((1 - abar) / abar) ** 0.5, x_t / abar ** 0.5
    assert torch.allclose(ours.scale_input(x_t, steps), theirs.precondition_inputs(x_ve, sigma), atol=1e-5)
    x0, eps = ours.split(x_t, output, steps)
    assert torch.allclose(x0, theirs.precondition_outputs(x_ve, output, sigma), atol=1e-4)
    assert torch.allclose(ours.add_noise(x0, eps, steps), x_t, atol=1e-4)  # x0_hat and eps_hat explain x_t


@pytest.mark.parametrize("t", [0, 37, 500, 990])
def test_edm_target_inverts_split(t):
    """Training on `target` and sampling through `split` agree: the target's x0_hat is the image itself."""
    schedule = NoiseSchedule(1000, "cosine", "edm")
    x0, noise = _inputs(4)
    steps = torch.full((4,), t)
    x_t = schedule.add_noise(x0, noise, steps)
    x0_hat, eps_hat = schedule.split(x_t, schedule.target(x0, noise, steps), steps)
    assert torch.allclose(x0_hat, x0, atol=1e-3) and torch.allclose(eps_hat, noise, atol=1e-3)


def test_edm_with_unit_data_std_is_v_prediction():
    """sigma_data = 1 makes c_in x = x_t and F = -v: v-prediction is EDM for data of unit variance."""
    edm, v = NoiseSchedule(1000, "cosine", "edm", sigma_data=1.0), NoiseSchedule(1000, "cosine", "v")
    x0, noise = _inputs(5)
    steps = torch.tensor([3, 200, 600, 999])
    assert torch.allclose(edm.target(x0, noise, steps), -v.target(x0, noise, steps), atol=1e-5)
    x_t = v.add_noise(x0, noise, steps)
    assert torch.allclose(edm.scale_input(x_t, steps), x_t, atol=1e-6)


def test_lognormal_noise_levels_follow_edm():
    """Training steps drawn as EDM draws sigma: log(sigma) ~ N(-1.2, 1.2^2), here through the schedule's steps."""
    schedule = NoiseSchedule(1000, "cosine", "edm", noise_levels="lognormal")
    t = schedule.sample_timesteps(20_000, generator=torch.Generator().manual_seed(0))
    abar = schedule.alphas_cumprod[t]
    log_sigma = 0.5 * torch.log((1 - abar) / abar)
    assert abs(float(log_sigma.median()) + 1.2) < 0.05 and abs(float(log_sigma.std()) - 1.2) < 0.1
    assert t.min() >= 0 and t.max() < 1000
    assert NoiseSchedule(1000).sample_timesteps(5).dtype == torch.long


def test_edm_sampling_recovers_the_image():
    """A perfect EDM denoiser (F that gives x0 exactly) walks DPM-Solver++ back to the image, inputs scaled."""
    schedule = NoiseSchedule(1000, "cosine", "edm")
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    seen = []

    def oracle(scaled, t):  # undo c_in, then F = (x0 - c_skip x) / c_out
        abar = schedule.abar(t, scaled)
        x_t = scaled * (1 - abar + abar * 0.25).sqrt()
        seen.append(float(scaled.std()))
        return schedule.target(x0, (x_t - abar.sqrt() * x0) / (1 - abar).sqrt(), t)

    out = sample(oracle, x0.shape, schedule, sampler="dpm++2m", steps=10, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-3)
    assert max(seen) < 3  # the network never sees the raw VE point (whose scale is up to 1/sqrt(abar))


def test_edm_refuses_min_snr_weighting():
    schedule = NoiseSchedule(1000, "cosine", "edm", noise_levels="lognormal")
    with pytest.raises(CourseError, match="EDM"):
        training_loss(schedule, lambda x, t: x, torch.zeros(2, 3, 4, 4), min_snr_gamma=5.0)
    with pytest.raises(CourseError, match="unknown noise_levels"):
        NoiseSchedule(1000, noise_levels="karras")


def test_schedule_lookups_stay_float32_on_the_images_device(monkeypatch):
    """Apple's MPS has no float64: nothing the schedule hands to the images' device may be float64, and the lookup
    happens on that device (no copy of the steps to the host every training step)."""
    schedule = NoiseSchedule(1000, "cosine", "v")
    moved = []
    original_to = torch.Tensor.to

    def recording_to(self, *args, **kwargs):
        moved.append(self.dtype)
        return original_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    like = torch.zeros(4, 3, 8, 8, dtype=torch.float16)
    abar = schedule.abar(torch.tensor([0, 10, 500, 999]), like)
    snr = schedule.snr(torch.tensor([0, 999]))
    monkeypatch.undo()
    assert torch.float64 not in moved
    assert abar.dtype == torch.float16 and abar.shape == (4, 1, 1, 1) and snr.dtype == torch.float32
    assert float(abar[0]) > 0.99 and float(abar[-1]) < 0.01 and snr[0] > snr[1]
