"""Conditional generators of 64x64 faces and the attribute judge that grades them (notebook 04).

Every model here takes a condition vector `c` (B, cond_dim) and does not care where it comes from: the 40
CelebA attributes (+1 / -1, 0 = unspecified) or a CLIP text embedding of a caption.

- `FaceCVAE`: a conditional VAE. q(z | x, c) and p(x | z, c) with a Gaussian decoder, so its loss is a
  summed squared error plus the KL term. The condition enters the encoder *and* every decoder stage (FiLM).
- `FaceGAN`: a conditional DCGAN. The generator gets c concatenated to its noise and, through conditional
  batch norm, in every stage; the discriminator is a projection discriminator (its logit gains
  <embed(c), features>). `gan_loss_fn` trains both nets with the course's one `Trainer`, one optimizer and
  one backward pass per step.
- `AttributeJudge`: a CNN with 40 logits, trained on real faces, that says which attributes a face shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.parametrizations import spectral_norm

from helpers.models.vae import FiLM, check_image_size, reparameterize

# The Gaussian decoder's fixed standard deviation on the [-1, 1] pixel scale. The negative log-likelihood of
# an image is then sum((x - mean)^2) / (2 * PIXEL_SIGMA^2) + const; with PIXEL_SIGMA^2 = 1/2 it is exactly
# the summed squared error. Smaller sigma = sharper reconstructions but a weaker prior (worse samples); this
# is the same trade-off as a beta-VAE with beta = 2 * PIXEL_SIGMA^2 = 1 on the summed squared error.
PIXEL_SIGMA = 0.5 ** 0.5
HINGE, NON_SATURATING = "hinge", "non-saturating"


def _groups(channels: int) -> int:
    """GroupNorm groups: 8 where the channel count allows (any width that is a multiple of 8), else fewer."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


def _check_stages(image_size: int, stages: int = 4) -> None:
    if image_size % 2 ** stages:
        raise ValueError(f"image_size must be divisible by {2 ** stages} ({stages} stride-2 stages), got {image_size}")


def _check_condition(cond: torch.Tensor, cond_dim: int) -> None:
    if cond.dim() != 2 or cond.shape[1] != cond_dim:
        raise ValueError(f"expected a condition of shape (B, {cond_dim}), got {tuple(cond.shape)}")


# ------------------------------------------------------------------------------------------------ CVAE
@dataclass
class FaceCVAEConfig:
    image_size: int = 64  # divisible by 16: the encoder halves it four times (64 -> 4)
    channels: int = 3
    cond_dim: int = 40  # 40 attributes, or the size of a text embedding
    latent_dim: int = 64
    width: int = 32  # channels of the first stage; the others use 2x, 4x, 8x
    cond_hidden: int = 128  # size of the learned condition features every FiLM layer reads


class _Stage(nn.Module):
    """4x4 conv that halves (or, with `up`, transposed conv that doubles) the size -> GroupNorm -> FiLM -> SiLU."""

    def __init__(self, in_channels: int, out_channels: int, cond_hidden: int, up: bool):
        super().__init__()
        conv = nn.ConvTranspose2d if up else nn.Conv2d
        self.conv = conv(in_channels, out_channels, 4, stride=2, padding=1)
        self.norm = nn.GroupNorm(_groups(out_channels), out_channels)
        self.film = FiLM(cond_hidden, out_channels)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return F.silu(self.film(self.norm(self.conv(h)), cond))


class FaceCVAE(nn.Module):
    """Conditional VAE for RGB images in [-1, 1].

    Why the condition has to be *strong* (see helpers/models/cvae.py and notebook 02): a decoder that can
    read everything from z learns to ignore c. Here c is (1) seen by the encoder at every stage, so z only
    needs to carry what c does not say (pose, background, lighting), and (2) injected by FiLM into every
    decoder stage after normalisation, so it can change colours and shapes at every resolution.
    """

    def __init__(self, config: FaceCVAEConfig):
        super().__init__()
        _check_stages(config.image_size)
        self.config = config
        w, hidden = config.width, config.cond_hidden
        self.side = config.image_size // 16  # (S/16) x (S/16) at the bottleneck
        self.condition = nn.Sequential(nn.Linear(config.cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        # No layer works at full resolution: on a CPU the memory traffic of (B, w, S, S) activations costs
        # more than the convolutions themselves.
        encoder_channels = (config.channels, w, 2 * w, 4 * w, 8 * w)
        self.down = nn.ModuleList([_Stage(a, b, hidden, up=False) for a, b in zip(encoder_channels, encoder_channels[1:])])
        bottleneck = 8 * w * self.side ** 2
        self.to_stats = nn.Linear(bottleneck + hidden, 2 * config.latent_dim)
        self.from_latent = nn.Linear(config.latent_dim + hidden, bottleneck)
        self.start_norm = nn.GroupNorm(_groups(8 * w), 8 * w)
        self.start_film = FiLM(hidden, 8 * w)
        decoder_channels = (8 * w, 4 * w, 2 * w, w)
        self.up = nn.ModuleList([_Stage(a, b, hidden, up=True) for a, b in zip(decoder_channels, decoder_channels[1:])])
        self.out = nn.ConvTranspose2d(w, config.channels, 4, stride=2, padding=1)  # (B, w, S/2, S/2) -> (B, C, S, S)

    def condition_features(self, cond: torch.Tensor) -> torch.Tensor:
        _check_condition(cond, self.config.cond_dim)
        return self.condition(cond)  # (B, cond_hidden)

    def encode(self, images: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu, logvar of q(z | x, c), each (B, latent_dim)."""
        check_image_size(images, self.config.channels, self.config.image_size)
        h_cond = self.condition_features(cond)
        h = images
        for stage in self.down:
            h = stage(h, h_cond)  # (B, w, S/2, S/2) -> ... -> (B, 8w, S/16, S/16)
        mu, logvar = self.to_stats(torch.cat([h.flatten(1), h_cond], dim=1)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Mean of p(x | z, c): (B, C, S, S), unbounded (clamp to [-1, 1] to show it)."""
        h_cond = self.condition_features(cond)
        h = self.from_latent(torch.cat([z, h_cond], dim=1)).view(-1, 8 * self.config.width, self.side, self.side)
        h = F.silu(self.start_film(self.start_norm(h), h_cond))
        for stage in self.up:
            h = stage(h, h_cond)  # (B, 4w, S/8, S/8) -> ... -> (B, w, S/2, S/2)
        return self.out(h)

    def forward(self, images: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(images, cond)
        return self.decode(reparameterize(mu, logvar), cond), mu, logvar

    def loss(self, images: torch.Tensor, cond: torch.Tensor, kl_weight: float = 1.0) -> dict[str, torch.Tensor]:
        """Negative ELBO per image: Gaussian reconstruction term (summed over pixels) + kl_weight * KL."""
        recon, mu, logvar = self(images, cond)
        batch = images.shape[0]
        recon_nll = (recon - images).pow(2).sum() / (2 * PIXEL_SIGMA ** 2) / batch
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / batch
        return {"loss": recon_nll + kl_weight * kl, "recon": recon_nll.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """One image in [-1, 1] per condition row; temperature scales z (below 1: safer, less varied faces)."""
        device = next(self.parameters()).device
        z = torch.randn(cond.shape[0], self.config.latent_dim, generator=generator).to(device) * temperature
        return self.decode(z, cond.to(device)).clamp(-1, 1)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean: the model's best copy of `images` (B, C, S, S) in [-1, 1]."""
        device = next(self.parameters()).device
        cond = cond.to(device)
        mu, _ = self.encode(images.to(device), cond)
        return self.decode(mu, cond).clamp(-1, 1)


# ------------------------------------------------------------------------------------------------- GAN
@dataclass
class FaceGANConfig:
    image_size: int = 64  # divisible by 16: the generator starts at S/16 and doubles four times
    channels: int = 3
    cond_dim: int = 40
    noise_dim: int = 100
    width: int = 64  # channels of the last generator / first discriminator stage; the others use 2x, 4x, 8x


class _ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own scale/shift; the scale and shift come from the condition instead."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.film = FiLM(cond_dim, channels)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.film(self.norm(h), cond)


class FaceGenerator(nn.Module):
    """DCGAN generator: [noise, c] -> (B, C, S, S) in [-1, 1] through transposed convolutions."""

    def __init__(self, config: FaceGANConfig):
        super().__init__()
        self.config = config
        w, self.side = config.width, config.image_size // 16
        self.project = nn.Linear(config.noise_dim + config.cond_dim, 8 * w * self.side ** 2)
        channels = (8 * w, 4 * w, 2 * w, w)
        self.norms = nn.ModuleList([_ConditionalBatchNorm(c, config.cond_dim) for c in channels])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(a, b, 4, stride=2, padding=1) for a, b in zip(channels, channels[1:])])
        self.out = nn.ConvTranspose2d(w, config.channels, 4, stride=2, padding=1)

    def forward(self, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([noise, cond], dim=1)).view(-1, 8 * self.config.width, self.side, self.side)
        for index, norm in enumerate(self.norms):
            h = F.relu(norm(h, cond))
            if index < len(self.ups):
                h = self.ups[index](h)  # (B, 8w, S/16, S/16) -> ... -> (B, w, S/2, S/2)
        return torch.tanh(self.out(h))  # (B, C, S, S)


class FaceDiscriminator(nn.Module):
    """Projection discriminator: logit = psi(phi(x)) + <embed(c), phi(x)>, every layer spectrally normalised.

    phi(x) is a conv feature vector of the image. The inner product is what makes the GAN conditional: an
    image can only score high if its features agree with the condition. Spectral norm keeps the
    discriminator 1-Lipschitz-ish, so its gradients stay useful to the generator; it has no batch norm,
    so real, fake and mismatched batches can be scored in one call without affecting each other.
    """

    def __init__(self, config: FaceGANConfig):
        super().__init__()
        self.config = config
        w = config.width
        channels = (config.channels, w, 2 * w, 4 * w, 8 * w)
        self.convs = nn.ModuleList([spectral_norm(nn.Conv2d(a, b, 4, stride=2, padding=1))
                                    for a, b in zip(channels, channels[1:])])
        self.linear = spectral_norm(nn.Linear(8 * w, 1))
        self.embed = spectral_norm(nn.Linear(config.cond_dim, 8 * w, bias=False))

    def forward(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = images
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)  # ... -> (B, 8w, S/16, S/16)
        features = h.sum(dim=(2, 3))  # (B, 8w)
        return self.linear(features).squeeze(1) + (self.embed(cond) * features).sum(1)  # (B,) logits


class FaceGAN(nn.Module):
    """Holds both nets so one optimizer (the Trainer's) and one checkpoint cover them."""

    def __init__(self, config: FaceGANConfig):
        super().__init__()
        _check_stages(config.image_size)
        self.config = config
        self.generator = FaceGenerator(config)
        self.discriminator = FaceDiscriminator(config)

    def generate(self, cond: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable generator call (training); `sample` is the no-grad one for showing images."""
        _check_condition(cond, self.config.cond_dim)
        if noise is None:
            noise = torch.randn(cond.shape[0], self.config.noise_dim, device=cond.device)
        return self.generator(noise, cond)

    def forward(self, cond: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.generate(cond, noise)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One image in [-1, 1] per condition row, with batch norm in eval mode (its running statistics)."""
        device = next(self.parameters()).device
        noise = torch.randn(cond.shape[0], self.config.noise_dim, generator=generator).to(device)
        was_training = self.generator.training
        self.generator.eval()
        try:
            return self.generate(cond.to(device), noise)
        finally:
            self.generator.train(was_training)

    def discriminate_frozen(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Discriminator logits whose gradient reaches `images` but none of the discriminator's parameters.

        functional_call runs the same module with detached copies of its parameters: the generator loss can
        then share one backward pass with the discriminator loss without pushing the discriminator towards
        "call fakes real".
        """
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, frozen, (images, cond))


def gan_terms(model: FaceGAN, images: torch.Tensor, cond: torch.Tensor, *, loss: str = HINGE,
              mismatch_weight: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The discriminator loss, the generator loss (both with their graphs) and detached logits to log.

        d_loss = real(D(x, c)) + (1 - m) * fake(D(G(z, c).detach(), c)) + m * fake(D(x, c'))
        g_loss = real(D_frozen(G(z, c), c))
    where real(l) = max(0, 1 - l) and fake(l) = max(0, 1 + l) for the hinge loss, softplus(-l) and
    softplus(l) for the non-saturating one; c' is the batch's conditions shifted by one (a real face with
    someone else's condition: it teaches D to check the condition, not only realism), m = `mismatch_weight`.
    `fake.detach()` keeps d_loss from moving G; `discriminate_frozen` keeps g_loss from moving D.
    """
    if loss not in (HINGE, NON_SATURATING):
        raise ValueError(f"loss must be {HINGE!r} or {NON_SATURATING!r}, got {loss!r}")
    batch = images.shape[0]
    fake = model.generate(cond)  # (B, C, S, S), gradient flows to G
    use_mismatch = mismatch_weight > 0 and batch > 1
    scored = [images, fake.detach()] + ([images] if use_mismatch else [])
    conds = [cond, cond] + ([cond.roll(1, dims=0)] if use_mismatch else [])
    logits = model.discriminator(torch.cat(scored), torch.cat(conds))  # one call: D has no batch statistics
    real_logit, fake_logit = logits[:batch], logits[batch:2 * batch]
    # Per-image penalties: "this should score as real" / "this should score as fake".
    if loss == HINGE:
        real_penalty, fake_penalty = (lambda l: F.relu(1 - l)), (lambda l: F.relu(1 + l))
    else:
        real_penalty, fake_penalty = (lambda l: F.softplus(-l)), (lambda l: F.softplus(l))
    real_term, fake_term = real_penalty(real_logit).mean(), fake_penalty(fake_logit).mean()
    if use_mismatch:
        # Pairs whose shifted condition happens to equal their own (same attributes) are no mismatch.
        differs = ((cond - conds[2]).abs().amax(dim=1) > 1e-6).float()  # (B,)
        mismatch = (fake_penalty(logits[2 * batch:]) * differs).sum() / differs.sum().clamp(min=1)
        d_loss = real_term + (1 - mismatch_weight) * fake_term + mismatch_weight * mismatch
    else:
        d_loss = real_term + fake_term
    g_logit = model.discriminate_frozen(fake, cond)
    # The hinge generator loss is the plain -logit (SNGAN); max(0, 1 - l) would stop pushing past 1.
    g_loss = -g_logit.mean() if loss == HINGE else real_penalty(g_logit).mean()
    logs = {"d_real": real_logit.detach().mean(), "d_fake": fake_logit.detach().mean()}
    if use_mismatch:
        logs["d_mismatch"] = logits[2 * batch:].detach().mean()
    return d_loss, g_loss, logs


def gan_losses(model: FaceGAN, images: torch.Tensor, cond: torch.Tensor, *, loss: str = HINGE,
               mismatch_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """What one Trainer step minimises: `loss` = d_loss + g_loss (one backward pass updates both nets at
    once, each only by its own loss), plus detached d_loss, g_loss and mean logits for the logs."""
    d_loss, g_loss, logs = gan_terms(model, images, cond, loss=loss, mismatch_weight=mismatch_weight)
    return {"loss": d_loss + g_loss, "d_loss": d_loss.detach(), "g_loss": g_loss.detach(), **logs}


def gan_loss_fn(condition_fn: Callable, *, loss: str = HINGE, mismatch_weight: float = 0.5) -> Callable:
    """A Trainer `loss_fn(trainer, batch)` for a FaceGAN; `condition_fn(trainer, batch)` gives c (B, cond_dim).

    The batch's first element is the images (B, C, S, S) in [-1, 1]."""

    def loss_fn(trainer, batch) -> dict[str, torch.Tensor]:
        return gan_losses(trainer.model, batch[0], condition_fn(trainer, batch), loss=loss, mismatch_weight=mismatch_weight)

    return loss_fn


# ------------------------------------------------------------------------------------------------ judge
@dataclass
class AttributeJudgeConfig:
    image_size: int = 64
    n_attributes: int = 40
    width: int = 32  # channels of the first stage; the others use 2x, 4x, 8x


class AttributeJudge(nn.Module):
    """Four conv stages (each halves the size first, so no layer runs at full resolution) + global average
    pool -> one logit per attribute.

    Trained on real faces with a per-attribute balanced loss; a logit > 0 means "shows the attribute".
    """

    def __init__(self, config: AttributeJudgeConfig):
        super().__init__()
        self.config = config
        w = config.width
        layers, channels = [], (3, w, 2 * w, 4 * w, 8 * w)
        for a, b in zip(channels, channels[1:]):  # each stage: (B, a, s, s) -> (B, b, s/2, s/2)
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU(),
                       nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, 8w)
        self.head = nn.Linear(8 * w, config.n_attributes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_image_size(images, 3, self.config.image_size)
        return self.head(self.features(images))  # (B, n_attributes) logits
