"""A small CLIP (notebook 03): a text transformer and an image CNN trained to agree, from scratch.

    caption tokens -> TextTransformer -> mean over real tokens -> Linear -> unit vector t   (embed_dim)
    64x64 face     -> ImageEncoder (CNN) -> global average pool -> Linear -> unit vector v (embed_dim)

Training pulls each image's vector towards its own caption's vector and away from every other caption
in the batch (and vice versa): the symmetric InfoNCE loss over the B x B matrix of cosine similarities,
scaled by a learnable inverse temperature `exp(logit_scale)`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class CLIPConfig:
    vocab_size: int  # size of the caption tokenizer's vocabulary (index 0 is padding)
    max_tokens: int = 40  # captions are cut to this many tokens (they rarely exceed 30)
    text_width: int = 128  # transformer width
    text_layers: int = 3
    text_heads: int = 4
    image_size: int = 64
    image_width: int = 32  # channels of the CNN stem; each of the 3 stages doubles it
    embed_dim: int = 128  # the shared space both encoders project into
    init_temperature: float = 0.07  # CLIP's starting temperature; learnt from there, capped at 1/100


class TextTransformer(nn.Module):
    """Token + position embeddings, pre-norm transformer blocks, final LayerNorm; padding is masked out."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.text_width, padding_idx=0)
        self.position = nn.Parameter(torch.randn(config.max_tokens, config.text_width) * 0.01)
        block = nn.TransformerEncoderLayer(config.text_width, config.text_heads, dim_feedforward=4 * config.text_width,
                                           dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, config.text_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.text_width)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids and (B, T) mask (1 = real token) -> (B, T, text_width) token states."""
        states = self.token(ids) + self.position[: ids.shape[1]]
        states = self.blocks(states, src_key_padding_mask=mask == 0)
        return self.norm(states)


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ImageEncoder(nn.Module):
    """A residual CNN: a stride-2 stem (64 -> 32), then 3 stages that each halve the resolution (-> 4)
    and double the channels. No convolution runs at full resolution: on a CPU that alone halves the cost."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        w = config.image_width
        layers: list[nn.Module] = [nn.Conv2d(3, w, 4, stride=2, padding=1)]
        channels = w
        for stage in range(1, 4):
            out = w * 2 ** stage
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), ResBlock(out)]
            channels = out
        layers += [nn.GroupNorm(8, channels), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> (B, out_channels) pooled features (also what FID/KID are computed on)."""
        return self.body(images).mean(dim=(2, 3))


class CLIPModel(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.text = TextTransformer(config)
        self.image = ImageEncoder(config)
        self.text_projection = nn.Linear(config.text_width, config.embed_dim, bias=False)
        self.image_projection = nn.Linear(self.image.out_channels, config.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))

    def text_tokens(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-token states (B, T, text_width): what a cross-attention UNet reads (notebook 07)."""
        return self.text(ids, mask)

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool_text(self.text(ids, mask), mask)

    def pool_text(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states (B, T, text_width) -> the unit sentence vector (B, embed_dim) of the shared space."""
        weights = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # mean over real tokens only
        return F.normalize(self.text_projection(pooled), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_projection(self.image(images)), dim=-1)

    def temperature(self) -> float:
        return float(1.0 / self.logit_scale.exp())

    def forward(self, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                same_caption: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Symmetric InfoNCE: row i of the similarity matrix should peak at column i, and so should column i.

        Captions built from attributes repeat: two faces in a batch can get the very same sentence. Then
        both columns are right answers, so `same_caption` (B, B, bool) spreads the target over them instead
        of punishing the model for a tie that no model could break.
        """
        image_vectors, text_vectors = self.encode_image(images), self.encode_text(ids, mask)
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        logits = scale * image_vectors @ text_vectors.T  # (B, B): image i vs caption j
        if same_caption is None:
            same_caption = torch.eye(len(images), dtype=torch.bool, device=images.device)
        targets = same_caption.float() / same_caption.sum(1, keepdim=True)  # symmetric, rows sum to 1
        loss_image = F.cross_entropy(logits, targets)  # each image picks its caption
        loss_text = F.cross_entropy(logits.T, targets)  # each caption picks its image
        accuracy = same_caption.gather(1, logits.argmax(1, keepdim=True)).float().mean()
        return {"loss": (loss_image + loss_text) / 2, "batch_accuracy": accuracy.detach(),
                "temperature": (1.0 / scale).detach()}
