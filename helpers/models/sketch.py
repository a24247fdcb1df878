"""The text-to-sketch CVAE of notebook 08: 128x128 one-channel sketches, conditioned on a text embedding.

    sketch (B, 1, 128, 128) --conv stack (stride 2 x 5)--> features (B, 8w, 4, 4) --flatten, concat c--> mu, logvar
    z ~ N(mu, sigma) --concat c--> linear --> (B, 8w, 4, 4) --(upsample + conv + FiLM(c)) x 4, upsample + conv--> ink logits

The condition c (a text embedding, e.g. CLIP's 512-d) is concatenated in both halves: the encoder sees what the
caption says and only has to put in z what it does not (pose, stroke, position); the decoder draws from both.
As in notebook 02's CVAE, three things make the decoder listen to c instead of reading the class off z:
the embedding is centred on the training captions' mean (what is left is *which* sketch, not "a sketch of"),
layer-normalised, and it modulates every decoder stage (FiLM), not only the first layer.
Reconstruction is binary cross-entropy on the ink (each pixel: is there a stroke here?), summed per image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from helpers.errors import CourseError
from helpers.models.vae import FiLM


COND = 128  # size of the learned condition vector the text embedding is mapped to
PRIORS = ("learned", "standard")


@dataclass
class SketchCVAEConfig:
    cond_dim: int
    image_size: int = 128
    latent_dim: int = 64
    width: int = 32  # channels of the first conv; they double up to 8x
    # p(z | c): "learned" (its mean read from c, as in Sohn et al.'s CVAE, and samples drawn with the spread the
    # training codes really have around it, fitted after training: `fit_noise`) or "standard" (N(0, I) whatever
    # the caption; the samples of a short run then collapse to one blob per prompt, measured in notebook 08)
    prior: str = "learned"

    def __post_init__(self):
        if self.image_size % 32:
            raise CourseError(f"image_size {self.image_size} must be a multiple of 32 (five halvings)")
        if self.prior not in PRIORS:
            raise CourseError(f"unknown prior {self.prior!r}; choose one of {', '.join(PRIORS)}")

    @property
    def channels(self) -> list[int]:
        w = self.width
        return [w, 2 * w, 4 * w, 8 * w, 8 * w]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class _Up(nn.Module):
    """Upsample x2, conv, normalise, FiLM by the condition, SiLU."""

    def __init__(self, c_in: int, c_out: int, cond: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1),
                                  nn.GroupNorm(8, c_out, affine=False))
        self.film = FiLM(cond, c_out)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return F.silu(self.film(self.conv(h), cond))


class SketchCVAE(nn.Module):
    def __init__(self, config: SketchCVAEConfig):
        super().__init__()
        self.config = config
        ch = config.channels
        side = config.image_size // 32
        self.side = side
        self.encoder = nn.Sequential(_block(1, ch[0]), *[_block(ch[i], ch[i + 1]) for i in range(4)], nn.Flatten())
        features = ch[-1] * side * side
        # Mean text embedding of the training captions, set before training and saved with the weights.
        self.register_buffer("text_mean", torch.zeros(config.cond_dim))
        self.cond = nn.Sequential(nn.Linear(config.cond_dim, 256), nn.SiLU(), nn.Linear(256, COND), nn.LayerNorm(COND))
        self.to_stats = nn.Linear(features + COND, 2 * config.latent_dim)
        if config.prior == "learned":  # c -> the mean of p(z | c) (unit variance); zero at the start: N(0, I)
            self.prior = nn.Linear(COND, config.latent_dim)
            nn.init.zeros_(self.prior.weight), nn.init.zeros_(self.prior.bias)
        # How the training codes spread around the prior's mean: their mean and the Cholesky factor of their
        # covariance (`fit_noise`); saved with the weights. Until fitted: N(0, I), the prior itself.
        self.register_buffer("noise_mean", torch.zeros(config.latent_dim))
        self.register_buffer("noise_tril", torch.eye(config.latent_dim))
        self.from_latent = nn.Sequential(nn.Linear(config.latent_dim + COND, features), nn.SiLU())
        self.ups = nn.ModuleList([_Up(ch[i], ch[i - 1], COND) for i in range(4, 0, -1)])
        self.out = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(ch[0], 1, 3, padding=1))

    @torch.no_grad()
    def set_text_statistics(self, embeddings: torch.Tensor) -> None:
        """Centre future conditions on the mean of the training captions' embeddings (N, cond_dim)."""
        self.text_mean.copy_(embeddings.float().mean(0))

    def condition(self, cond: torch.Tensor) -> torch.Tensor:
        return self.cond(cond - self.text_mean)

    def _check(self, images: torch.Tensor | None, cond: torch.Tensor) -> None:
        s = self.config.image_size
        if images is not None and (images.dim() != 4 or tuple(images.shape[1:]) != (1, s, s)):
            raise CourseError(f"the sketch CVAE takes (B, 1, {s}, {s}) sketches in [0, 1], got {tuple(images.shape)}; "
                              f"resize them to {s}x{s} grayscale")
        if cond.dim() != 2 or cond.shape[1] != self.config.cond_dim:
            raise CourseError(f"the condition must be (B, {self.config.cond_dim}) text embeddings, got "
                              f"{tuple(cond.shape)}: was this model trained with another text encoder?")

    def encode(self, images: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(images, cond)
        stats = self.to_stats(torch.cat([self.encoder(images), self.condition(cond)], dim=1))
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar.clamp(-20, 10)

    def prior_stats(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (B, latent_dim) of p(z | c): a mean read from c (zeros for the standard prior)
        and unit variance, so the KL keeps every prompt's codes on the same scale as the noise that samples them."""
        zeros = cond.new_zeros(len(cond), self.config.latent_dim)
        return (zeros if self.config.prior == "standard" else self.prior(self.condition(cond))), zeros

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Ink logits (B, 1, S, S); sigmoid them for probabilities."""
        self._check(None, cond)
        c = self.condition(cond)
        h = self.from_latent(torch.cat([z, c], dim=1)).view(len(z), self.config.channels[-1], self.side, self.side)
        for up in self.ups:
            h = up(h, c)
        return self.out(h)

    def forward(self, images: torch.Tensor, cond: torch.Tensor):
        mu, logvar = self.encode(images, cond)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z, cond), mu, logvar

    def kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """KL(q(z | x, c) || p(z | c)) of each latent dimension (B, latent_dim), between diagonal Gaussians."""
        prior_mu, prior_logvar = self.prior_stats(cond)
        return 0.5 * (prior_logvar - logvar + (logvar.exp() + (mu - prior_mu).pow(2)) / prior_logvar.exp() - 1)

    def loss(self, images: torch.Tensor, cond: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """BCE (summed over pixels) + beta * KL, both per image."""
        logits, mu, logvar = self(images, cond)
        bce = F.binary_cross_entropy_with_logits(logits.float(), images.float(), reduction="sum") / len(images)
        kl = self.kl_per_dim(mu.float(), logvar.float(), cond).sum() / len(images)
        return {"loss": bce + beta * kl, "bce": bce.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def residuals(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Posterior means minus the prior's mean (B, latent_dim): what z says that the caption does not."""
        return self.encode(images, cond)[0] - self.prior_stats(cond)[0]

    @torch.no_grad()
    def fit_noise(self, residuals: torch.Tensor) -> None:
        """Sample with a Gaussian fitted to the training codes' residuals (N, latent_dim) instead of N(0, I).

        A short run leaves the codes of real sketches spread wider than the unit-variance prior and along a few
        directions only; N(0, I) noise then lands where no training sketch was and decodes to the average
        sketch of the prompt. Fitting the noise to the codes after training (ex-post density estimation,
        Ghosh et al. 2020) samples where the decoder has learned to draw. The standard prior is never fitted."""
        if self.config.prior == "standard":
            raise CourseError("the standard prior samples from N(0, I); fit_noise needs prior='learned'")
        residuals = residuals.double()
        covariance = torch.cov(residuals.T) + 1e-4 * torch.eye(residuals.shape[1], dtype=torch.float64,
                                                              device=residuals.device)
        self.noise_mean.copy_(residuals.mean(0))
        self.noise_tril.copy_(torch.linalg.cholesky(covariance))

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None, fitted: bool = True,
               temperature: float = 1.0) -> torch.Tensor:
        """Ink probabilities (B, 1, S, S) of z ~ p(z | c) decoded with c; noise from a CPU generator.
        `fitted=False` draws the prior's unit-variance noise instead of the fitted one (notebook 08 compares).
        `temperature` scales the noise: 0 draws the prompt's one most typical sketch, 1 the spread of the training
        codes; in between trades variety for faithfulness to the prompt (as Glow's and BigGAN's truncation do)."""
        if not 0 <= temperature <= 2:
            raise CourseError(f"temperature must be between 0 and 2, got {temperature}")
        noise = temperature * torch.randn(len(cond), self.config.latent_dim, generator=generator).to(cond.device)
        if fitted:
            noise = self.noise_mean + noise @ self.noise_tril.T
        return torch.sigmoid(self.decode(self.prior_stats(cond)[0] + noise, cond))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.encode(images, cond)[0], cond))
