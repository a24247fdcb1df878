"""Text-conditioned convolutional VAE for digits (notebook 02).

q(z | x, c) and p(x | z, c), where c comes from a frozen sentence embedding of the prompt. Three parts
make the decoder actually listen to the text (notebook 02 explains why a plain CVAE does not):
- the prompt embedding is centred on the mean prompt, so what remains is mostly *which digit*, not wording;
- a small condition network maps it to `cond_dim` features, trained with an auxiliary digit-classification
  head, so the condition separates the ten digits cleanly from the first epochs on;
- the condition enters the encoder (concatenated) and every decoder block (FiLM), not only the first layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from helpers.models.vae import ConvDecoder, ConvEncoder, check_image_size, elbo_loss, reparameterize


@dataclass
class TextCVAEConfig:
    text_dim: int = 384  # size of the sentence embedding (all-MiniLM-L6-v2)
    cond_dim: int = 64  # size of the learned condition vector
    latent_dim: int = 16
    width: int = 32
    image_size: int = 28
    in_channels: int = 1
    num_classes: int = 10  # outputs of the auxiliary head that reads the digit off the condition


class TextCVAE(nn.Module):
    def __init__(self, config: TextCVAEConfig):
        super().__init__()
        self.config = config
        # Mean prompt embedding, set from the training prompts before training (saved with the weights).
        self.register_buffer("text_mean", torch.zeros(config.text_dim))
        self.condition = nn.Sequential(
            nn.Linear(config.text_dim, 256), nn.SiLU(), nn.Linear(256, config.cond_dim), nn.LayerNorm(config.cond_dim),
        )
        self.class_head = nn.Linear(config.cond_dim, config.num_classes)
        self.encoder = ConvEncoder(config.in_channels, config.width, config.image_size)
        self.to_stats = nn.Sequential(
            nn.Linear(self.encoder.out_features + config.cond_dim, 256), nn.SiLU(), nn.Linear(256, 2 * config.latent_dim),
        )
        self.decoder = ConvDecoder(config.latent_dim + config.cond_dim, config.in_channels, config.width,
                                   config.image_size, cond_dim=config.cond_dim)

    @torch.no_grad()
    def set_text_statistics(self, prompt_embeddings: torch.Tensor) -> None:
        """Centre future conditions on the mean of the training prompts' embeddings (N, text_dim)."""
        self.text_mean.copy_(prompt_embeddings.mean(0))

    def condition_from_text(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        if text_embeddings.dim() != 2 or text_embeddings.shape[1] != self.config.text_dim:
            raise ValueError(f"expected text embeddings of shape (B, {self.config.text_dim}), "
                             f"got {tuple(text_embeddings.shape)}")
        return self.condition(text_embeddings - self.text_mean)  # (B, cond_dim)

    def encode(self, images: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image_size(images, self.config.in_channels, self.config.image_size)
        features = torch.cat([self.encoder(images), cond], dim=1)
        mu, logvar = self.to_stats(features).chunk(2, dim=1)  # (B, latent) each
        return mu, logvar

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Pixel logits (B, C, S, S); apply sigmoid for images."""
        return self.decoder(torch.cat([z, cond], dim=1), cond)

    def forward(self, images: torch.Tensor, text_embeddings: torch.Tensor):
        cond = self.condition_from_text(text_embeddings)
        mu, logvar = self.encode(images, cond)
        return self.decode(reparameterize(mu, logvar), cond), mu, logvar, self.class_head(cond)

    @torch.no_grad()
    def generate(self, text_embeddings: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] for each (embedding, z) pair: (B, text_dim), (B, latent) -> (B, C, S, S)."""
        return torch.sigmoid(self.decode(z, self.condition_from_text(text_embeddings)))


def text_cvae_loss(model: TextCVAE, images: torch.Tensor, text_embeddings: torch.Tensor, labels: torch.Tensor,
                   kl_weight: float, aux_weight: float) -> dict[str, torch.Tensor]:
    """Negative ELBO plus aux_weight * cross-entropy of the digit read off the condition."""
    logits, mu, logvar, class_logits = model(images, text_embeddings)
    terms = elbo_loss(logits, images, mu, logvar, kl_weight)
    aux = F.cross_entropy(class_logits, labels)
    terms["loss"] = terms["loss"] + aux_weight * aux
    terms["aux"] = aux.detach()
    return terms
