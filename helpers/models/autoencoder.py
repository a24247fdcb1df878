"""Stage 1 of latent diffusion (notebook 07): a KL-regularised autoencoder that squeezes a face into a small latent.

    image (B, 3, 64, 64) in [-1, 1] --encoder--> mean, log-variance (B, 4, 16, 16) --sample--> z
    z --decoder--> image (B, 3, 64, 64)

Every level of the encoder halves the resolution (a stride-2 conv), so `mults=(1, 2, 4)` gives a factor 4:
64x64x3 = 12,288 numbers become 16x16x4 = 1,024, and a diffusion model on z does ~12x less work per step.
The KL term is tiny ("light"): it does not make z a standard normal like a VAE's, it only keeps the
latent space smooth and its scale in check; the diffusion model learns the real distribution of z.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from helpers.errors import CourseError
from helpers.models.clip import ResBlock


@dataclass
class AutoencoderConfig:
    image_size: int = 64
    in_channels: int = 3
    latent_channels: int = 4
    width: int = 32  # channels at full resolution; level i has width * mults[i]
    mults: tuple[int, ...] = (1, 2, 4)  # len(mults) - 1 halvings: (1, 2, 4) -> 64 / 4 = 16
    # residual blocks per level; None = none at full resolution (where they cost the most), one elsewhere
    blocks: int | tuple[int, ...] | None = None

    def __post_init__(self):
        self.mults = tuple(self.mults)
        if self.blocks is None:
            self.blocks = (0,) + (1,) * (len(self.mults) - 1)
        self.blocks = tuple(self.blocks) if isinstance(self.blocks, (tuple, list)) else (self.blocks,) * len(self.mults)
        if len(self.blocks) != len(self.mults) or min(self.blocks) < 0:
            raise CourseError(f"blocks {self.blocks} must be one count >= 0 per level ({len(self.mults)} levels)")
        if self.image_size % self.factor:
            raise CourseError(f"image_size {self.image_size} is not divisible by the downsampling factor {self.factor}")
        if any((self.width * m) % 8 for m in self.mults):
            raise CourseError(f"width*mult must be divisible by 8 (GroupNorm groups), got width {self.width}")

    @property
    def factor(self) -> int:
        return 2 ** (len(self.mults) - 1)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.image_size // self.factor
        return (self.latent_channels, side, side)


class Autoencoder(nn.Module):
    """Conv encoder -> diagonal Gaussian over z -> conv decoder (residual blocks with GroupNorm, no attention)."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        w, mults = config.width, config.mults
        encoder: list[nn.Module] = [nn.Conv2d(config.in_channels, w * mults[0], 3, padding=1)]
        for i, mult in enumerate(mults):
            encoder += [ResBlock(w * mult) for _ in range(config.blocks[i])]
            if i < len(mults) - 1:
                encoder.append(nn.Conv2d(w * mult, w * mults[i + 1], 3, stride=2, padding=1))
        encoder += [nn.GroupNorm(8, w * mults[-1]), nn.SiLU(), nn.Conv2d(w * mults[-1], 2 * config.latent_channels, 3,
                                                                         padding=1)]
        self.encoder = nn.Sequential(*encoder)

        decoder: list[nn.Module] = [nn.Conv2d(config.latent_channels, w * mults[-1], 3, padding=1)]
        for i in reversed(range(len(mults))):
            decoder += [ResBlock(w * mults[i]) for _ in range(config.blocks[i])]
            if i > 0:
                decoder += [nn.Upsample(scale_factor=2.0, mode="nearest"),
                            nn.Conv2d(w * mults[i], w * mults[i - 1], 3, padding=1)]
        decoder += [nn.GroupNorm(8, w * mults[0]), nn.SiLU(), nn.Conv2d(w * mults[0], config.in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*decoder)

    def _check(self, images: torch.Tensor) -> None:
        c, s = self.config.in_channels, self.config.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (c, s, s):
            raise CourseError(f"this autoencoder takes (B, {c}, {s}, {s}) images in [-1, 1], got {tuple(images.shape)}; "
                              f"resize the images to {s}x{s}")

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) in [-1, 1] -> mean and log-variance, each (B, latent_channels, S/f, S/f)."""
        self._check(images)
        mean, logvar = self.encoder(images).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_channels, S/f, S/f) -> (B, 3, S, S), unbounded (clamp to [-1, 1] to show it)."""
        if z.dim() != 4 or tuple(z.shape[1:]) != self.config.latent_shape:
            raise CourseError(f"this decoder takes latents (B, {', '.join(map(str, self.config.latent_shape))}), "
                              f"got {tuple(z.shape)}")
        return self.decoder(z)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        mean, logvar = self.encode(images)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + (0.5 * logvar).exp() * noise
        return self.decode(z), mean, logvar

    def loss(self, images: torch.Tensor, kl_weight: float) -> dict[str, torch.Tensor]:
        """L1 reconstruction (sharper than squared error) + kl_weight * KL(q(z|x) || N(0, I)), both per element."""
        recon, mean, logvar = self(images)
        l1 = F.l1_loss(recon, images)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        mse = F.mse_loss(recon.detach().clamp(-1, 1), images)
        return {"loss": l1 + kl_weight * kl, "l1": l1.detach(), "kl": kl.detach(), "psnr": psnr_from_mse(mse)}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Encode to the mean and decode: what the latent keeps of an image, clamped to [-1, 1]."""
        return self.decode(self.encode(images)[0]).clamp(-1, 1)


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2, so the peak signal power is 4)."""
    return 10 * torch.log10(4.0 / mse.clamp(min=1e-10))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-image PSNR (dB) of two batches in [-1, 1]; 30 dB and up is hard to tell apart by eye at 64x64."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return float(psnr_from_mse(mse).mean())
