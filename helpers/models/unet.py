"""A UNet that predicts the noise in an image: the network of the diffusion notebooks (05, 06, 07).

    x_t (B, C, H, W), t (B,), class label (B,) and/or text tokens (B, L, D)
      -> stem conv -> [ResBlock x n (+ attention) -> downsample] per level -> middle ((res, attn) x 2)
      -> [ResBlock x n+1 on concat(skip) (+ attention) -> upsample] per level -> norm, SiLU, conv -> eps (B, C, H, W)

- Nothing depends on the image size: levels halve H and W, attention flattens whatever H*W it sees, so
  the same model runs at 32x32 and 64x64 (H and W need only be divisible by 2^(levels-1)).
- The time step enters every residual block through a sinusoidal embedding and an MLP; a class label is
  an embedding *added* to it (index `num_classes` is the learnt "no class" used for classifier-free guidance).
- Text (notebook 07) enters through cross-attention: the image's positions query the token embeddings,
  plus a learnt "null" token that every position can always attend to. Masking out every text token (or
  passing no context) leaves only the null token: the unconditional model classifier-free guidance needs.
  A pooled sentence embedding, if given, is projected and added to the time embedding.
- Attention is `F.scaled_dot_product_attention` (a fused kernel) and only at the levels you name: at
  32x32 a full attention layer costs far more than it helps, at 8x8 it is cheap and links distant parts.
- GroupNorm, not BatchNorm: a batch mixes noise levels, so batch statistics would mix unrelated images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from helpers.errors import CourseError


@dataclass
class UNetConfig:
    in_channels: int = 3
    out_channels: int = 3
    width: int = 64  # channels of the first level; level i has width * mults[i]
    mults: tuple[int, ...] = (1, 2, 2)
    blocks: int | tuple[int, ...] = 2  # residual blocks per level on the way down (one more on the way up);
    # a tuple gives each level its own count: fewer at full resolution, where every block costs the most
    attention_levels: tuple[int, ...] | None = None  # levels (0 = full resolution) with attention; None = lowest
    head_dim: int = 32
    num_classes: int = 0  # 0 = no class conditioning
    context_dim: int = 0  # 0 = no text cross-attention
    pooled_dim: int = 0  # 0 = no pooled text embedding (added to the time embedding, like a class)
    dropout: float = 0.1
    groups: int = 8

    def __post_init__(self):
        self.mults = tuple(self.mults)
        if isinstance(self.blocks, int):
            self.blocks = (self.blocks,) * len(self.mults)
        self.blocks = tuple(self.blocks)
        if len(self.blocks) != len(self.mults) or min(self.blocks) < 1:
            raise CourseError(f"blocks {self.blocks} must be one count >= 1 per level ({len(self.mults)} levels)")
        if self.attention_levels is None:
            self.attention_levels = (len(self.mults) - 1,)
        self.attention_levels = tuple(self.attention_levels)
        bad = [level for level in self.attention_levels if not 0 <= level < len(self.mults)]
        if bad:
            raise CourseError(f"attention_levels {bad} do not exist; this UNet has levels 0..{len(self.mults) - 1}")
        for mult in self.mults:
            if (self.width * mult) % self.groups:
                raise CourseError(f"width*mult = {self.width * mult} is not divisible by groups = {self.groups}")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoids of geometrically spaced frequencies (as in the Transformer's positions): (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, + time(+class) embedding, GroupNorm -> SiLU -> dropout -> conv, + skip."""

    def __init__(self, channels_in: int, channels_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, channels_out)
        self.norm2 = nn.GroupNorm(groups, channels_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: deep UNets train from step one
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head attention of every position over every position (self) or over text tokens (cross)."""

    def __init__(self, channels: int, head_dim: int, groups: int, context_dim: int = 0):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(groups, channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim or channels, 2 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)  # starts as the identity too
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C): no spatial size is baked in
        source = tokens if context is None else context  # (B, L, D)
        q = self.q(tokens).view(b, -1, self.heads, c // self.heads).transpose(1, 2)  # (B, heads, HW, d)
        k, v = self.kv(source).view(b, source.shape[1], 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        mask = None if context_mask is None else context_mask[:, None, None, :].bool()  # True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, HW, d)
        out = self.out(out.transpose(1, 2).reshape(b, h * w, c))
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class Level(nn.Module):
    """The blocks of one resolution: residual blocks, each followed by self- (and cross-) attention if asked."""

    def __init__(self, channels_in: list[int], channels: int, config: UNetConfig, emb_dim: int, attend: bool):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(c, channels, emb_dim, config.groups, config.dropout) for c in channels_in)
        self.attn = nn.ModuleList(Attention(channels, config.head_dim, config.groups) if attend else nn.Identity()
                                  for _ in channels_in)
        self.cross = nn.ModuleList(Attention(channels, config.head_dim, config.groups, config.context_dim)
                                   if attend and config.context_dim else nn.Identity() for _ in channels_in)


class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        w, levels = config.width, len(config.mults)
        emb_dim = 4 * w
        self.time_mlp = nn.Sequential(nn.Linear(w, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # one extra row: the "no class" token that classifier-free guidance trains by dropping labels
        self.class_emb = nn.Embedding(config.num_classes + 1, emb_dim) if config.num_classes else None
        # the token every cross-attention can attend to, with or without text: the "no text" condition
        self.null_context = nn.Parameter(torch.randn(1, 1, config.context_dim) * 0.02) if config.context_dim else None
        self.pooled_proj = nn.Linear(config.pooled_dim, emb_dim) if config.pooled_dim else None
        self.stem = nn.Conv2d(config.in_channels, w, 3, padding=1)

        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, channels = [w], w
        for i, mult in enumerate(config.mults):
            out = w * mult
            blocks = config.blocks[i]
            level = Level([channels] + [out] * (blocks - 1), out, config, emb_dim, i in config.attention_levels)
            self.down.append(level)
            channels = out
            skips += [out] * blocks
            if i < levels - 1:
                self.downsample.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
                skips.append(channels)
        self.mid = Level([channels, channels], channels, config, emb_dim, attend=True)

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, mult in reversed(list(enumerate(config.mults))):
            out = w * mult
            inputs = []
            for _ in range(config.blocks[i] + 1):
                inputs.append(channels + skips.pop())
                channels = out
            self.up.append(Level(inputs, out, config, emb_dim, i in config.attention_levels))
            if i > 0:
                self.upsample.append(nn.Conv2d(channels, channels, 3, padding=1))
        self.head = nn.Sequential(nn.GroupNorm(config.groups, channels), nn.SiLU(),
                                  nn.Conv2d(channels, config.out_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def _run(self, level: Level, h: torch.Tensor, emb: torch.Tensor, context, context_mask, skips=None, outs=None):
        for res, attn, cross in zip(level.res, level.attn, level.cross):
            if skips is not None:
                h = torch.cat([h, skips.pop()], dim=1)
            h = res(h, emb)
            if not isinstance(attn, nn.Identity):
                h = attn(h)
            if context is not None and not isinstance(cross, nn.Identity):
                h = cross(h, context, context_mask)
            if outs is not None:
                outs.append(h)
        return h

    def _with_null_token(self, context: torch.Tensor | None, context_mask: torch.Tensor | None, batch: int):
        null = self.null_context.expand(batch, 1, -1)
        if context is None:
            return null, None
        if context.dim() != 3 or context.shape[0] != batch or context.shape[2] != self.config.context_dim:
            raise CourseError(f"context must be ({batch}, L, {self.config.context_dim}) token embeddings, "
                              f"got {tuple(context.shape)}")
        if context_mask is None:
            context_mask = torch.ones(context.shape[:2], device=context.device)
        ones = torch.ones(batch, 1, device=context.device, dtype=context_mask.dtype)
        return torch.cat([null, context.to(null.dtype)], 1), torch.cat([ones, context_mask], 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
                pooled: torch.Tensor | None = None) -> torch.Tensor:
        """eps_hat for x_t at steps t. Text UNets: context (B, L, D) + mask (B, L) (1 = token), pooled (B, P);
        no context (or an all-zero mask) and no pooled = unconditional."""
        factor = 2 ** (len(self.config.mults) - 1)
        if x.dim() != 4 or x.shape[1] != self.config.in_channels or x.shape[2] % factor or x.shape[3] % factor:
            raise CourseError(f"this UNet takes (B, {self.config.in_channels}, H, W) with H and W divisible by "
                              f"{factor}, got {tuple(x.shape)}; resize the images")
        emb = self.time_mlp(timestep_embedding(t, self.config.width))
        if self.class_emb is not None:
            labels = torch.full_like(t, self.null_class) if class_labels is None else class_labels
            emb = emb + self.class_emb(labels.long())
        if self.pooled_proj is not None:  # no pooled vector = the zero vector (what dropped captions train with)
            pooled = emb.new_zeros(len(x), self.config.pooled_dim) if pooled is None else pooled
            emb = emb + self.pooled_proj(pooled)
        if self.null_context is not None:
            context, context_mask = self._with_null_token(context, context_mask, x.shape[0])
        else:
            context = context_mask = None

        h = self.stem(x)
        skips = [h]
        for i, level in enumerate(self.down):
            h = self._run(level, h, emb, context, context_mask, outs=skips)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        h = self._run(self.mid, h, emb, context, context_mask)
        for i, level in enumerate(self.up):
            h = self._run(level, h, emb, context, context_mask, skips=skips)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.head(h)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
