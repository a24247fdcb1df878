"""A diffusion transformer (DiT, Peebles & Xie 2023): the backbone of today's text-to-image models, for notebook 05's
classes.

    x_t (B, C, H, W) -> patchify (a p x p conv with stride p: one token per patch, (H/p)(W/p) tokens)
      + fixed 2-D sine-cosine positions -> [DiT block] x depth -> final layer -> unpatchify -> output (B, C, H, W)
    condition c = MLP(sinusoidal(t)) + class embedding (index `num_classes`: the learnt "no class" of guidance)

- A DiT block is a pre-norm transformer block whose LayerNorms have no learnt scale or shift of their own: c sets
  them ("adaptive LayerNorm"), and c also sets a gate on each residual branch. The linear layer that maps c to the
  six numbers per channel (shift, scale and gate for attention and for the MLP) starts at zero ("adaLN-zero"), so
  every block starts as the identity: the network is a stack of identities at initialisation and learns to
  depart from it, which DiT found trains better than cross-attention or in-context conditioning.
- The final layer is zero-initialised too: the untrained network predicts 0 (for v or the flow's velocity, a
  small constant error instead of a random one).
- Nothing depends on the image size: the positions are computed for whatever (H/p, W/p) grid arrives.
- Same call as the UNet (`model(x, t, class_labels)`), so the same training loop, samplers and checkpoints serve
  both; `helpers.cifar` picks one by its `backbone` setting.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from helpers.errors import CourseError
from helpers.models.unet import timestep_embedding


@dataclass
class DiTConfig:
    in_channels: int = 3
    out_channels: int = 3
    patch: int = 2  # pixels per token side: 16x16 images with patch 2 are 64 tokens
    width: int = 96  # channels of every token
    depth: int = 6  # DiT blocks
    heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 0  # 0 = no class conditioning

    def __post_init__(self):
        for name in ("in_channels", "out_channels", "patch", "width", "depth", "heads"):
            if int(getattr(self, name)) < 1:
                raise CourseError(f"DiT {name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise CourseError(f"DiT width {self.width} must split into {self.heads} heads of an even size")
        if self.width % 4:
            raise CourseError(f"DiT width {self.width} must be divisible by 4 (2-D sine-cosine positions)")
        if self.num_classes < 0:
            raise CourseError(f"num_classes must be >= 0, got {self.num_classes}")


def positions_2d(height: int, width: int, dim: int, device=None) -> torch.Tensor:
    """Fixed sine-cosine positions of a (height x width) token grid, (height*width, dim): half the channels encode the
    row, half the column (as DiT and MAE)."""
    quarter = dim // 4
    frequencies = 1.0 / 10_000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    rows = torch.arange(height, device=device, dtype=torch.float32)[:, None] * frequencies  # (H, dim/4)
    cols = torch.arange(width, device=device, dtype=torch.float32)[:, None] * frequencies  # (W, dim/4)
    rows = torch.cat([rows.sin(), rows.cos()], dim=1)[:, None].expand(height, width, dim // 2)
    cols = torch.cat([cols.sin(), cols.cos()], dim=1)[None].expand(height, width, dim // 2)
    return torch.cat([rows, cols], dim=-1).reshape(height * width, dim)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x (B, N, D) normalised, then scaled by (1 + scale) and shifted, both (B, D) from the condition."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """x + gate_a * Attention(adaLN(x)), then x + gate_m * MLP(adaLN(x)); shifts, scales and gates from c."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.ada = nn.Linear(width, 6 * width)  # adaLN-zero: zero weights and bias, so the block starts as identity
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.ada(F.silu(c)).chunk(6, dim=1)
        b, n, d = x.shape
        q, k, v = self.qkv(modulate(self.norm1(x), shift_a, scale_a)).view(b, n, 3, self.heads, d // self.heads) \
            .permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + gate_a[:, None] * self.proj(attended)
        return x + gate_m[:, None] * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class DiT(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Conv2d(c.in_channels, c.width, kernel_size=c.patch, stride=c.patch)
        self.time_mlp = nn.Sequential(nn.Linear(c.width, c.width), nn.SiLU(), nn.Linear(c.width, c.width))
        self.class_emb = nn.Embedding(c.num_classes + 1, c.width) if c.num_classes else None
        self.blocks = nn.ModuleList(DiTBlock(c.width, c.heads, c.mlp_ratio) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(c.width, 2 * c.width)
        self.out = nn.Linear(c.width, c.patch * c.patch * c.out_channels)
        for layer in (self.final_ada, self.out):  # zero: the untrained network outputs 0
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        p, (b, _, height, width) = self.config.patch, x.shape
        if height % p or width % p:
            raise CourseError(f"a DiT with patch {p} needs image sides divisible by {p}, got {height}x{width}")
        tokens = self.embed(x)  # (B, D, H/p, W/p)
        rows, cols = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2) + positions_2d(rows, cols, self.config.width, x.device).to(x.dtype)
        c = self.time_mlp(timestep_embedding(t, self.config.width).to(x.dtype))
        if self.class_emb is not None:
            labels = torch.full_like(t, self.null_class) if class_labels is None else class_labels
            c = c + self.class_emb(labels.long())
        for block in self.blocks:
            tokens = block(tokens, c)
        shift, scale = self.final_ada(F.silu(c)).chunk(2, dim=1)
        patches = self.out(modulate(self.norm(tokens), shift, scale))  # (B, N, p*p*C)
        out_c = self.config.out_channels
        return patches.view(b, rows, cols, p, p, out_c).permute(0, 5, 1, 3, 2, 4).reshape(b, out_c, height, width)
