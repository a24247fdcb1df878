"""Denoising diffusion from the equations: noise schedules, the forward process, DDPM/DDIM/DPM-Solver++ steps, guidance.

Notation (Ho et al. 2020; Song et al. 2021), with t = 0 .. T-1 and images scaled to [-1, 1]:

    beta_t                     variance of the noise added at step t (the *schedule*: linear or cosine)
    alpha_t = 1 - beta_t,      abar_t = alpha_0 * alpha_1 * ... * alpha_t
    forward  q(x_t | x_0)    = N( sqrt(abar_t) x_0 , (1 - abar_t) I )       -> `NoiseSchedule.add_noise`
    training                   || eps - eps_theta(x_t, t) ||^2  with t ~ U{0..T-1}, eps ~ N(0, I)
    x_0 from eps               x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)
    v-prediction               v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022): the network's
                               target stays of unit size at every noise level, where eps is trivial at high noise
    min-SNR-gamma weighting    per-step loss weight min(SNR_t, gamma) / (SNR_t [+ 1 for v]), SNR_t = abar/(1 - abar)
                               (Hang et al. 2023): the easy low-noise steps stop dominating the gradient
    DDPM step  t -> s (< t)    x_s = c0 x0_hat + ct x_t + sigma z,  posterior q(x_s | x_t, x0_hat)
    DDIM step  t -> s          x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,
                               sigma = eta * sqrt((1 - abar_s)/(1 - abar_t) * (1 - abar_t/abar_s));  eta = 0: deterministic
    DPM-Solver++(2M) t -> s    (Lu et al. 2022) lambda = log(sqrt(abar) / sqrt(1 - abar)), h = lambda_s - lambda_t:
                               x_s = sqrt((1 - abar_s)/(1 - abar_t)) x_t + sqrt(abar_s) (1 - e^-h) D: the exact ODE
                               step for a constant x0; 2M (second order) extrapolates x0_hat from the step u before t:
                               D = x0_hat_t + h / (2 (lambda_t - lambda_u)) (x0_hat_t - x0_hat_u)
                               first and last (s = -1: abar = 1, h = inf) steps: D = x0_hat_t, i.e. DDIM with eta = 0
    EDM preconditioning        (Karras et al. 2022) in VE terms x = x0 + sigma eps, sigma^2 = (1 - abar)/abar: the
                               network F sees c_in x and D = c_skip x + c_out F is x0_hat, with c_skip = sd^2/(sigma^2
                               + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2), sd the
                               data's standard deviation (0.5); its loss weight makes the error on F unweighted, and
                               training draws log(sigma) ~ N(-1.2, 1.2^2) ("lognormal" noise levels). With sd = 1 it
                               is v-prediction (F = -v): EDM is v with the data's real scale and its own noise levels
    rectified flow             (Liu et al. 2022; Lipman et al. 2022; SD3 = Esser et al. 2024) a straight path with
      / flow matching          continuous t in [0, 1]: x_t = (1 - t) x0 + t eps, the network predicts the velocity
                               u = dx_t/dt = eps - x0; x0_hat = x_t - t u, eps_hat = x_t + (1 - t) u. Training draws t
                               uniformly or logit-normal (t = sigmoid(N(0, 1)): the middle of the path, SD3's choice);
                               sampling integrates dx/dt = u from t = 1 (noise) to 0 with Euler or Heun steps over
                               t = shift(linspace(1, 1/1000, N)) and then 0, shift(t) = s t / (1 + (s - 1) t) (diffusers'
                               FlowMatchEulerDiscreteScheduler / FlowMatchHeunDiscreteScheduler). It is diffusion with
                               another schedule and weighting: x_t / sqrt((1-t)^2 + t^2) is a VP point with
                               abar = (1-t)^2 / ((1-t)^2 + t^2), and u is v-prediction rescaled (`FlowSchedule`)
    timestep spacing           the steps a sampler visits, 20 of 1000: "leading" 950, 900, .., 0; "trailing" 999,
                               949, .., 49 (starts from pure noise); "linspace" 999, 946, .., 0

This module knows nothing of networks: a sampler receives `model_fn(x_t, t) -> output`, where the output is what
the schedule's `prediction` names ("epsilon", "v", "edm" or "flow"; `split` turns it into x0_hat and eps_hat), the
input is x_t scaled by `scale_input` (only EDM scales it) and t is `network_time` of the step (the step index for
`NoiseSchedule`, 1000 t for `FlowSchedule`, as diffusers feeds SD3's transformer).
Classifier-free guidance is such a function too (`guided`): out_u + w (out_c - out_u), both halves in one batched
call (the same formula for eps and v: each is linear in the other at a fixed x_t).
Our steps match diffusers' DDPMScheduler / DDIMScheduler / DPMSolverMultistepScheduler (solver_order=2, "dpmsolver++",
"midpoint"), and our spacings their `timestep_spacing`: tests/test_diffusion.py checks it number for number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from helpers.config import SMOKE, smoke_enabled
from helpers.errors import CourseError

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> the network's output
SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v", "edm")
NOISE_LEVELS = ("uniform", "lognormal")  # how training picks t: every step alike, or EDM's log-normal sigma
EDM_P_MEAN, EDM_P_STD = -1.2, 1.2  # EDM's log-normal training distribution of log(sigma)
SAMPLERS = ("ddpm", "ddim", "dpm++2m")
FLOW_SAMPLERS = ("euler", "heun")  # the ODE solvers of a flow model (`FlowSchedule`)
FLOW_TIMES = ("uniform", "logit-normal")  # how flow-matching training draws t in (0, 1)
SPACINGS = ("leading", "trailing", "linspace")


def linear_betas(steps: int, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    """Ho et al.'s schedule, rescaled so that any number of steps destroys the image as much as 1,000 do."""
    scale = 1000 / steps
    return torch.linspace(start * scale, end * scale, steps, dtype=torch.float64)


def cosine_betas(steps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's schedule: abar_t follows cos^2, so noise is added evenly in signal-to-noise terms
    (the linear schedule wipes out most of a small image well before the last step)."""
    def abar(u: float) -> float:
        return math.cos((u + offset) / (1 + offset) * math.pi / 2) ** 2

    return torch.tensor([min(1 - abar((i + 1) / steps) / abar(i / steps), max_beta) for i in range(steps)],
                        dtype=torch.float64)


def shift_alphas_cumprod(alphas_cumprod: torch.Tensor, shift: float) -> torch.Tensor:
    """Divide every step's signal-to-noise ratio by shift^2 (Hoogeboom et al. 2023, "simple diffusion").

    A schedule is tuned for one resolution: neighbouring pixels average noise away, so a large image keeps more of
    its content at the same SNR than a small one. shift > 1 adds noise (images larger than the schedule was made
    for), shift < 1 removes some (smaller ones: the 16x16 icons of quick mode)."""
    snr = alphas_cumprod / (1 - alphas_cumprod)
    shifted = snr / shift ** 2
    return shifted / (1 + shifted)


@dataclass
class NoiseSchedule:
    """The fixed numbers of a diffusion process (no learnt parameters). Kept in float64, used in the images' dtype.

    `prediction` names what the network outputs ("epsilon": the noise; "v": sqrt(abar) eps - sqrt(1 - abar) x0;
    "edm": Karras et al.'s preconditioned F, with the data's standard deviation `sigma_data`), as diffusers'
    schedulers' `prediction_type` does; `shift` rescales the SNR of every step (1 = as published); `noise_levels`
    is how training draws steps ("uniform", or EDM's "lognormal" sigma)."""

    steps: int = 1000
    kind: str = "linear"
    prediction: str = "epsilon"
    shift: float = 1.0
    noise_levels: str = "uniform"
    sigma_data: float = 0.5

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise CourseError(f"unknown noise schedule {self.kind!r}; choose one of {', '.join(SCHEDULES)}")
        if self.prediction not in PREDICTIONS:
            raise CourseError(f"unknown prediction {self.prediction!r}; choose one of {', '.join(PREDICTIONS)}")
        if self.noise_levels not in NOISE_LEVELS:
            raise CourseError(f"unknown noise_levels {self.noise_levels!r}; choose one of {', '.join(NOISE_LEVELS)}")
        if self.steps < 2:
            raise CourseError(f"a diffusion needs at least 2 steps, got {self.steps}")
        if not self.shift > 0:
            raise CourseError(f"the schedule's shift must be > 0 (1 = unshifted), got {self.shift}")
        self.betas = linear_betas(self.steps) if self.kind == "linear" else cosine_betas(self.steps)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, dim=0)
        if self.shift != 1.0:
            self.alphas_cumprod = shift_alphas_cumprod(self.alphas_cumprod, self.shift)
            previous = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
            self.betas = 1 - self.alphas_cumprod / previous
        # float32 copy with a leading 1 (t = -1: the clean image): MPS has no float64, and lookups are per batch
        self._table = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod]).float()
        self._tables: dict[torch.device, torch.Tensor] = {}  # the table copied once to each device that asks

    def _table_on(self, device: torch.device) -> torch.Tensor:
        """The float32 table on `device`, so lookups index where the batch lives (no host round trip per step)."""
        if device not in self._tables:
            self._tables[device] = self._table.to(device)
        return self._tables[device]

    @classmethod
    def from_settings(cls, settings: dict) -> "NoiseSchedule":
        """The schedule a model's settings name (as its checkpoint saved them: `diffusion_steps`, `schedule`,
        `prediction`, `shift`, `noise_levels`; runs saved before prediction types existed were epsilon on the linear
        schedule)."""
        return cls(settings.get("diffusion_steps", 1000), settings.get("schedule", "linear"),
                   settings.get("prediction", "epsilon"), settings.get("shift", 1.0),
                   settings.get("noise_levels", "uniform"))

    def network_time(self, t: torch.Tensor) -> torch.Tensor:
        """What the network is told of step t: the step index itself."""
        return t

    def abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """abar_t for a batch of steps (B,), shaped to broadcast against `like` (B, C, H, W); any t < 0 gives 1
        (the clean image: where the last step of a sampler lands)."""
        index = (torch.as_tensor(t, device=like.device).long() + 1).clamp(min=0)
        return self._table_on(like.device)[index].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio abar / (1 - abar) of steps t: (B,) float32."""
        t = torch.as_tensor(t).long()
        abar = self._table_on(t.device)[t + 1]
        return abar / (1 - abar)

    def sample_timesteps(self, n: int, device: torch.device | str = "cpu",
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """Training steps for a batch: uniform over 0..T-1, or ("lognormal") the step whose sigma is nearest to
        exp(N(-1.2, 1.2^2)), EDM's choice, which spends training on the middle noise levels."""
        if self.noise_levels == "uniform":
            return torch.randint(0, self.steps, (n,), device=device, generator=generator)
        log_sigma = EDM_P_MEAN + EDM_P_STD * torch.randn(n, device=device, generator=generator)
        abar = self._table[1:]
        log_sigma_t = 0.5 * (torch.log1p(-abar) - abar.log())  # (T,) log sigma of every step
        return (log_sigma.cpu()[:, None] - log_sigma_t[None]).abs().argmin(dim=1).to(device)  # the nearest step

    def _edm(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """abar, sigma^2 (VE: (1 - abar)/abar) and sd^2 + sigma^2 of steps t, shaped like `like`."""
        abar = self.abar(t, like)
        sigma2 = (1 - abar) / abar
        return abar, sigma2, sigma2 + self.sigma_data ** 2

    def scale_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network sees of x_t: x_t itself, or for EDM c_in x = x_t / sqrt(1 - abar + abar sd^2), the VE
        point x_t / sqrt(abar) scaled to the unit variance it has when the data's std is sd."""
        if self.prediction != "edm":
            return x_t
        abar = self.abar(t, x_t)
        return x_t / (1 - abar + abar * self.sigma_data ** 2).sqrt()

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output for x_t = add_noise(x0, noise, t)."""
        if self.prediction == "epsilon":
            return noise
        if self.prediction == "edm":  # F = (x0 - c_skip x) / c_out with x = x0 + sigma eps
            _, sigma2, total = self._edm(t, x0)
            sd = self.sigma_data
            return (sigma2.sqrt() * x0 - sd ** 2 * noise) / (sd * total.sqrt())
        abar = self.abar(t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def split(self, x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor,
              clip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's output at x_t -> (x0_hat, eps_hat). `clip` clamps x0_hat to [-1, 1], not eps_hat (as in
        diffusers)."""
        abar = self.abar(t, x_t)
        if self.prediction == "epsilon":
            eps = output
            x0 = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
        elif self.prediction == "edm":  # D = c_skip x + c_out F, x = x_t / sqrt(abar) (VE)
            _, sigma2, total = self._edm(t, x_t)
            sd = self.sigma_data
            x0 = sd ** 2 / total * (x_t / abar.sqrt()) + (sigma2.sqrt() * sd / total.sqrt()) * output
            eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        else:
            x0 = abar.sqrt() * x_t - (1 - abar).sqrt() * output
            eps = abar.sqrt() * output + (1 - abar).sqrt() * x_t
        return (x0.clamp(-1, 1) if clip else x0), eps

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0) in one go: sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
        abar = self.abar(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def timesteps(self, count: int, spacing: str = "leading") -> list[int]:
        """`count` steps from noisy to clean (diffusers' DDIMScheduler `timestep_spacing`, 50 of 1000 steps):
        "leading" 980, 960, .., 0 never visits the noisiest steps; "trailing" 999, 979, .., 19 starts where training
        noise is pure (Lin et al. 2024: better for few steps); "linspace" 999, 979, .., 0 has both ends."""
        if spacing not in SPACINGS:
            raise CourseError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
        if not 1 <= count <= self.steps:
            raise CourseError(f"steps must be between 1 and {self.steps}, got {count}")
        if spacing == "leading":
            stride = self.steps // count
            return [i * stride for i in reversed(range(count))]
        if spacing == "trailing":
            # numpy.arange's float arithmetic (start + i * (second - start)), so that .5 ties round as in diffusers
            delta = (self.steps - self.steps / count) - self.steps
            return [round(self.steps + i * delta) - 1 for i in range(count)]
        if count == 1:
            return [0]  # numpy.linspace of one point: its start (as diffusers)
        stride = (self.steps - 1) / (count - 1)
        return [self.steps - 1] + [round(i * stride) for i in reversed(range(count - 1))]


class FlowSchedule:
    """Rectified flow / flow matching: the straight path x_t = (1 - t) x0 + t eps, t in [0, 1], velocity u = eps - x0.

    `times`: how training draws t, "uniform" or "logit-normal" (t = sigmoid(m + s n), n ~ N(0, 1): SD3's default
    m = 0, s = 1, which spends training on the middle of the path where the velocity is hardest to guess).
    `shift` > 1 moves the sampling grid towards the noisy end (SD3 uses 3 at 1024x1024); `train_steps` only scales the
    time the network is told (1000 t, as diffusers does), so a UNet's sinusoidal embedding sees the same range as
    for a DDPM. No learnt parameters."""

    prediction = "flow"

    def __init__(self, times: str = "logit-normal", shift: float = 1.0, train_steps: int = 1000,
                 logit_mean: float = 0.0, logit_std: float = 1.0):
        if times not in FLOW_TIMES:
            raise CourseError(f"unknown flow-matching times {times!r}; choose one of {', '.join(FLOW_TIMES)}")
        if not shift > 0:
            raise CourseError(f"the schedule's shift must be > 0 (1 = unshifted), got {shift}")
        if not logit_std > 0:
            raise CourseError(f"logit_std must be > 0, got {logit_std}")
        self.times, self.shift, self.steps = times, float(shift), int(train_steps)
        self.logit_mean, self.logit_std = float(logit_mean), float(logit_std)

    def _t(self, t, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t, device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.dim() - 1)))

    def network_time(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.steps

    def sample_timesteps(self, n: int, device: torch.device | str = "cpu",
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """Training times t in (0, 1), (n,) float32: uniform, or logit-normal."""
        if self.times == "uniform":
            return torch.rand(n, device=device, generator=generator)
        return torch.sigmoid(self.logit_mean + self.logit_std * torch.randn(n, device=device, generator=generator))

    def scale_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x_t

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = self._t(t, x0)
        return (1 - t) * x0 + t * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return noise - x0

    def split(self, x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor,
              clip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The velocity at x_t -> (x0_hat, eps_hat): x0 = x_t - t u, eps = x_t + (1 - t) u."""
        t = self._t(t, x_t)
        x0 = x_t - t * output
        return (x0.clamp(-1, 1) if clip else x0), x_t + (1 - t) * output

    def abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The VP schedule this path is a rescaling of: x_t / sqrt((1-t)^2 + t^2) has abar = (1-t)^2 / ((1-t)^2 + t^2)."""
        t = self._t(t, like)
        return (1 - t) ** 2 / ((1 - t) ** 2 + t ** 2)

    def timesteps(self, count: int) -> list[float]:
        """`count` times from noisy to clean, shift(linspace(1, 1/train_steps, count)) (diffusers' flow-matching
        schedulers); the sampler then steps from the last one to t = 0."""
        if not 1 <= count <= self.steps:
            raise CourseError(f"steps must be between 1 and {self.steps}, got {count}")
        grid = torch.linspace(1.0, 1.0 / self.steps, count, dtype=torch.float64)
        grid = self.shift * grid / (1 + (self.shift - 1) * grid)
        return [float(t) for t in grid]


def schedule_from_settings(settings: dict) -> NoiseSchedule | FlowSchedule:
    """The schedule a model's settings name (as its checkpoint saved them): a `FlowSchedule` for prediction "flow"
    (its `noise_levels` are the flow's times, its `shift` the sampling grid's), else a `NoiseSchedule`."""
    if settings.get("prediction") == "flow":
        return FlowSchedule(settings.get("noise_levels", "logit-normal"), settings.get("shift", 1.0),
                            settings.get("diffusion_steps", 1000))
    return NoiseSchedule.from_settings(settings)


def training_loss(schedule: NoiseSchedule, model_fn: EpsFn, x0: torch.Tensor,
                  generator: torch.Generator | None = None, min_snr_gamma: float | None = None) -> torch.Tensor:
    """The simplified DDPM objective: pick a random step per image (`NoiseSchedule.sample_timesteps`), add that much
    noise, predict the schedule's target (the noise, v, or EDM's F). `min_snr_gamma` (e.g. 5) weights each image's
    error by min(SNR, gamma) / SNR for epsilon, / (SNR + 1) for v: both then weigh the x0 error by min(SNR, gamma)
    (Hang et al. 2023). EDM's weighting is built into its preconditioning: the error on F is not reweighted; flow
    matching's into how it draws t (`FlowSchedule.times`): the error on the velocity is not reweighted."""
    if min_snr_gamma is not None and schedule.prediction in ("edm", "flow"):
        name = {"edm": "EDM's preconditioning", "flow": "flow matching"}[schedule.prediction]
        raise CourseError(f"{name} already weights the noise levels (by how it draws them); use min_snr_gamma=None")
    t = schedule.sample_timesteps(x0.shape[0], x0.device, generator)
    noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = schedule.add_noise(x0, noise, t)
    output = model_fn(schedule.scale_input(x_t, t), schedule.network_time(t))
    error = (output.float() - schedule.target(x0, noise, t).float()).pow(2).mean(dim=tuple(range(1, x0.dim())))  # (B,)
    if min_snr_gamma is None:
        return error.mean()
    snr = schedule.snr(t).to(x0.device)
    weight = snr.clamp(max=min_snr_gamma) / (snr + 1 if schedule.prediction == "v" else snr)
    return (weight * error).mean()


def ddpm_step(schedule: NoiseSchedule, output: torch.Tensor, t: int, x_t: torch.Tensor, prev_t: int | None = None,
              noise: torch.Tensor | None = None, clip: bool = True) -> torch.Tensor:
    """One ancestral step x_t -> x_prev of the reverse process (prev_t defaults to t - 1); `output` is the
    network's prediction (eps or v, as the schedule says).

    The mean is the Gaussian posterior q(x_prev | x_t, x0_hat); its variance is the posterior's
    ("fixed small"), and no noise is added on the last step.
    """
    prev_t = t - 1 if prev_t is None else prev_t
    steps = torch.tensor([t]), torch.tensor([prev_t])
    abar_t, abar_prev = schedule.abar(steps[0], x_t), schedule.abar(steps[1], x_t)
    alpha = abar_t / abar_prev  # alpha of the whole jump t -> prev
    x0, _ = schedule.split(x_t, output, steps[0], clip)
    mean = (abar_prev.sqrt() * (1 - alpha) * x0 + alpha.sqrt() * (1 - abar_prev) * x_t) / (1 - abar_t)
    if prev_t < 0:
        return mean
    variance = ((1 - abar_prev) / (1 - abar_t) * (1 - alpha)).clamp(min=1e-20)
    noise = torch.randn_like(x_t) if noise is None else noise
    return mean + variance.sqrt() * noise


def ddim_step(schedule: NoiseSchedule, output: torch.Tensor, t: int, x_t: torch.Tensor, prev_t: int,
              eta: float = 0.0, noise: torch.Tensor | None = None, clip: bool = True) -> torch.Tensor:
    """One DDIM step x_t -> x_prev: jump to x0_hat, then walk back out along the predicted noise direction.

    With `clip`, the noise direction is the one that agrees with the clipped x0_hat (diffusers'
    `use_clipped_model_output=True`): keeping the network's raw eps next to a clipped x0_hat walks out along a
    direction that no longer matches the image, which under strong guidance leaves washed-out, noisy samples."""
    steps = torch.tensor([t]), torch.tensor([prev_t])
    abar_t, abar_prev = schedule.abar(steps[0], x_t), schedule.abar(steps[1], x_t)
    x0, eps = schedule.split(x_t, output, steps[0], clip)
    if clip:
        eps = (x_t - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()
    x_prev = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma ** 2).sqrt() * eps
    if eta > 0:
        noise = torch.randn_like(x_t) if noise is None else noise
        x_prev = x_prev + sigma * noise
    return x_prev


def _lambda(schedule: NoiseSchedule, t: int) -> float:
    """Half the log-SNR of step t, log(sqrt(abar_t) / sqrt(1 - abar_t)): DPM-Solver's time variable (inf at t < 0)."""
    abar = float(schedule._table[max(t, -1) + 1])
    return math.inf if abar >= 1 else 0.5 * (math.log(abar) - math.log1p(-abar))


def dpm_solver_2m_step(schedule: NoiseSchedule, output: torch.Tensor, t: int, x_t: torch.Tensor, prev_t: int,
                       last: tuple[torch.Tensor, int] | None = None,
                       clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One DPM-Solver++(2M) step x_t -> x_prev; returns (x_prev, x0_hat). Pass `last=(x0_hat, t)` of the previous
    step to the next one: the second-order correction reuses it, so 2M costs one network call per step as DDIM does.

    Integrates the diffusion ODE in lambda with x0_hat extrapolated linearly from the last two steps (DDIM holds it
    constant: what this does with `last=None`). `clip` clamps x0_hat before it is used or remembered (diffusers:
    `thresholding=True` with `sample_max_value=1`). Landing on the clean image (prev_t < 0) is always first order.
    """
    x0, _ = schedule.split(x_t, output, torch.tensor([t]), clip)  # (B, C, H, W)
    if prev_t < 0:
        return x0, x0  # abar = 1, h infinite: the step lands on x0_hat
    abar_t, abar_s = float(schedule._table[t + 1]), float(schedule._table[prev_t + 1])
    lambda_t, lambda_s = _lambda(schedule, t), _lambda(schedule, prev_t)
    h = lambda_s - lambda_t
    d = x0
    if last is not None:
        x0_last, t_last = last
        d = x0 + h / (2 * (lambda_t - _lambda(schedule, t_last))) * (x0 - x0_last)
    return (math.sqrt((1 - abar_s) / (1 - abar_t)) * x_t - math.sqrt(abar_s) * math.expm1(-h) * d), x0


def _cat(a, b):
    if isinstance(a, (tuple, list)):
        return tuple(_cat(x, y) for x, y in zip(a, b))
    return torch.cat([a, b])


def guided(eps_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], condition: torch.Tensor,
           null_condition: torch.Tensor, scale: float) -> EpsFn:
    """Classifier-free guidance: eps_u + scale * (eps_c - eps_u). scale 1 = plain conditional model, 0 = unconditional.

    `eps_fn(x, t, condition)` is the network; the conditional and unconditional halves run as one batch of 2B.
    A condition is a tensor (class labels) or a tuple of tensors (text tokens, their mask, a pooled embedding).
    """
    if scale == 1.0:
        return lambda x, t: eps_fn(x, t, condition)
    both_conditions = _cat(condition, null_condition)

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        both = eps_fn(torch.cat([x, x]), torch.cat([t, t]), both_conditions)
        conditional, unconditional = both.chunk(2)
        return unconditional + scale * (conditional - unconditional)

    return eps


@torch.no_grad()
def sample(model_fn: EpsFn, shape: tuple[int, ...], schedule: NoiseSchedule, *, sampler: str = "ddim", steps: int = 50,
           eta: float = 0.0, clip: bool = True, generator: torch.Generator | None = None,
           device: torch.device | str = "cpu", progress: bool = False,
           keep: Callable[[int, torch.Tensor], None] | None = None, spacing: str = "leading") -> torch.Tensor:
    """Run the reverse process from pure noise to images with `steps` network calls.

    Noise is drawn on the CPU from `generator`, so the same seed gives the same images on every device.
    A `FlowSchedule` takes "euler" or "heun" (`steps` grid points; Heun makes 2 steps - 1 network calls), a
    `NoiseSchedule` "ddpm", "ddim" or "dpm++2m". `eta` is DDIM's (ddpm and dpm++2m ignore it); `spacing` picks the visited steps (`NoiseSchedule.timesteps`),
    and each step goes to the next visited one (-1, the clean image, after the last).
    `keep(i, x)` is called after every step (to record a denoising animation).
    """
    flow = isinstance(schedule, FlowSchedule)
    if sampler not in SAMPLERS + FLOW_SAMPLERS:
        raise CourseError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS + FLOW_SAMPLERS)}")
    if flow != (sampler in FLOW_SAMPLERS):
        kinds = ("a flow-matching model", FLOW_SAMPLERS) if flow else ("a diffusion (noise-schedule) model", SAMPLERS)
        raise CourseError(f"sampler {sampler!r} does not fit {kinds[0]}; choose one of {', '.join(kinds[1])}")
    if smoke_enabled():  # make smoke-full: every sampler cut to a few steps (helpers.config.SMOKE)
        steps = min(steps, SMOKE.sample_steps)
    if flow:
        return _sample_flow(model_fn, shape, schedule, sampler, steps, generator, device, progress, keep)
    times = schedule.timesteps(steps, spacing)
    previous = times[1:] + [-1]
    x = torch.randn(shape, generator=generator).to(device)
    iterator = times
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(times, desc=f"{sampler}-{steps}", leave=False, mininterval=0.5)
    last = None  # dpm++2m: (x0_hat, t) of the step before
    for i, t in enumerate(iterator):
        step = torch.full((shape[0],), t, device=device, dtype=torch.long)
        output = model_fn(schedule.scale_input(x, step), schedule.network_time(step))
        prev_t = previous[i]
        wants_noise = (sampler == "ddpm" and prev_t >= 0) or (sampler == "ddim" and eta > 0)
        noise = torch.randn(shape, generator=generator).to(device) if wants_noise else None
        if sampler == "ddpm":
            x = ddpm_step(schedule, output, t, x, prev_t, noise=noise, clip=clip)
        elif sampler == "ddim":
            x = ddim_step(schedule, output, t, x, prev_t, eta=eta, noise=noise, clip=clip)
        else:
            x, x0 = dpm_solver_2m_step(schedule, output, t, x, prev_t, last, clip=clip)
            last = (x0, t)
        if keep is not None:
            keep(i, x)
    return x


def euler_step(velocity: torch.Tensor, t: float, x_t: torch.Tensor, next_t: float) -> torch.Tensor:
    """One Euler step of dx/dt = u from t to next_t (< t): x + (next_t - t) u."""
    return x_t + (next_t - t) * velocity


def heun_step(velocity_fn: EpsFn, velocity: torch.Tensor, t: float, x_t: torch.Tensor, next_t: float,
              batch: int, device) -> torch.Tensor:
    """One Heun step: an Euler predictor to next_t, the velocity there, then the trapezoid of both (second order).
    Into t = 0 it is the Euler step alone (EDM's and diffusers' choice: the velocity at the clean end is not needed)."""
    predicted = euler_step(velocity, t, x_t, next_t)
    if next_t <= 0:
        return predicted
    there = velocity_fn(predicted, torch.full((batch,), next_t, device=device))
    return x_t + (next_t - t) * 0.5 * (velocity + there)


def _sample_flow(model_fn: EpsFn, shape, schedule: FlowSchedule, sampler: str, steps: int, generator, device,
                 progress: bool, keep) -> torch.Tensor:
    times = schedule.timesteps(steps) + [0.0]
    x = torch.randn(shape, generator=generator).to(device)

    def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model_fn(x_t, schedule.network_time(t))

    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc=f"{sampler}-{steps}", leave=False, mininterval=0.5)
    for i in iterator:
        t, next_t = times[i], times[i + 1]
        u = velocity(x, torch.full((shape[0],), t, device=device))
        x = (euler_step(u, t, x, next_t) if sampler == "euler"
             else heun_step(velocity, u, t, x, next_t, shape[0], device))
        if keep is not None:
            keep(i, x)
    return x
