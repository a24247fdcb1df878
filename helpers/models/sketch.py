"""The text-to-sketch CVAE of notebook 07: 128x128 one-channel sketches, conditioned on a text embedding.

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


@dataclass
class SketchCVAEConfig:
    cond_dim: int
    image_size: int = 128
    latent_dim: int = 64
    width: int = 32  # channels of the first conv; they double up to 8x

    def __post_init__(self):
        if self.image_size % 32:
            raise CourseError(f"image_size {self.image_size} must be a multiple of 32 (five halvings)")

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

    def loss(self, images: torch.Tensor, cond: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """BCE (summed over pixels) + beta * KL, both per image."""
        logits, mu, logvar = self(images, cond)
        bce = F.binary_cross_entropy_with_logits(logits.float(), images.float(), reduction="sum") / len(images)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / len(images)
        return {"loss": bce + beta * kl, "bce": bce.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(len(cond), self.config.latent_dim, generator=generator).to(cond.device)
        return torch.sigmoid(self.decode(z, cond))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.encode(images, cond)[0], cond))
