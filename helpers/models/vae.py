"""Convolutional VAE for 28x28 digits (notebook 01), and the building blocks the CVAE reuses.

The encoder maps an image to the mean and log-variance of q(z|x); the decoder maps z to Bernoulli
logits of every pixel. Training minimises the negative ELBO per image:
    BCE(x, decoder(z)) summed over pixels + kl_weight * KL(q(z|x) || N(0, I)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ConvVAEConfig:
    latent_dim: int = 20
    width: int = 32  # channels at 28x28; 14x14 and 7x7 use 2x and 4x
    image_size: int = 28  # must be divisible by 4 (two stride-2 steps)
    in_channels: int = 1


def check_image_size(images: torch.Tensor, channels: int, size: int) -> None:
    """Fail with a clear message, not a shape error from deep inside a layer."""
    if images.dim() != 4 or images.shape[1] != channels or images.shape[-2:] != (size, size):
        raise ValueError(f"expected images of shape (B, {channels}, {size}, {size}), got {tuple(images.shape)}; "
                         f"resize them to {size}x{size} first")


class ConvEncoder(nn.Module):
    """(B, C, S, S) -> features (B, 4*width * (S/4)^2), optionally concatenated with a condition vector."""

    def __init__(self, in_channels: int, width: int, image_size: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.SiLU(),  # (B, 2w, S/2, S/2)
            nn.Conv2d(2 * width, 4 * width, 4, stride=2, padding=1), nn.SiLU(),  # (B, 4w, S/4, S/4)
            nn.Flatten(),
        )
        self.out_features = 4 * width * (image_size // 4) ** 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class FiLM(nn.Module):
    """Feature-wise scale and shift from a condition vector: h * (1 + gamma(c)) + beta(c)."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(cond)[:, :, None, None].chunk(2, dim=1)
        return h * (1 + gamma) + beta


class ConvDecoder(nn.Module):
    """z (B, in_dim) -> pixel logits (B, C, S, S). With cond_dim > 0 every block is FiLM-modulated by the condition."""

    def __init__(self, in_dim: int, out_channels: int, width: int, image_size: int, cond_dim: int = 0):
        super().__init__()
        self.width, self.side = width, image_size // 4
        self.fc = nn.Linear(in_dim, 4 * width * self.side ** 2)
        self.up1 = nn.ConvTranspose2d(4 * width, 2 * width, 4, stride=2, padding=1)  # (B, 2w, S/2, S/2)
        self.up2 = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)  # (B, w, S, S)
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)
        self.films = nn.ModuleList([FiLM(cond_dim, c) for c in (4 * width, 2 * width, width)]) if cond_dim else None

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(z).view(-1, 4 * self.width, self.side, self.side)  # (B, 4w, S/4, S/4)
        for index, layer in enumerate((None, self.up1, self.up2)):
            if layer is not None:
                h = layer(h)
            if self.films is not None:
                h = self.films[index](h, cond)
            h = F.silu(h)
        return self.out(h)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I): the sample stays differentiable in mu and sigma."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def elbo_loss(logits: torch.Tensor, images: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
              kl_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Per-image averages of the summed pixel BCE and the KL term; `loss` is what training minimises."""
    batch = images.shape[0]
    recon = F.binary_cross_entropy_with_logits(logits, images, reduction="sum") / batch
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / batch
    return {"loss": recon + kl_weight * kl, "recon": recon.detach(), "kl": kl.detach(), "elbo": (recon + kl).detach()}


class ConvVAE(nn.Module):
    def __init__(self, config: ConvVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config.in_channels, config.width, config.image_size)
        self.to_stats = nn.Linear(self.encoder.out_features, 2 * config.latent_dim)
        self.decoder = ConvDecoder(config.latent_dim, config.in_channels, config.width, config.image_size)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image_size(images, self.config.in_channels, self.config.image_size)
        mu, logvar = self.to_stats(self.encoder(images)).chunk(2, dim=1)  # (B, latent) each
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits; apply sigmoid for images."""
        return self.decoder(z)

    def forward(self, images: torch.Tensor):
        mu, logvar = self.encode(images)
        return self.decode(reparameterize(mu, logvar)), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        return torch.sigmoid(self.decode(z))
