"""Draw the course's architecture diagrams: the diffusion UNet, CLIP's two towers, the latent-diffusion pipeline.

    python scripts/draw_diagrams.py              # writes figures/diagram_{unet,clip,ldm}.png
    python scripts/draw_diagrams.py --out DIR    # somewhere else

The numbers on the diagrams (channel multipliers, latent shape, sampler, guidance, token limits ...) are read from
the code's own defaults and settings when the script runs, so a changed default shows up on the next drawing.
Matplotlib only (Agg): rounded boxes (FancyBboxPatch) and arrows (FancyArrowPatch), one palette for all three.
"""
from __future__ import annotations

import argparse
import inspect
import sys
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DPI = 110
INK, MUTED, LINE = "#1e293b", "#475569", "#334155"
# one palette for every diagram: (fill, edge)
PALETTE = {
    "data": ("#f1f5f9", "#64748b"),  # tensors going in and out
    "conv": ("#dbeafe", "#1d4ed8"),  # convolutions, residual blocks, the CNN
    "attn": ("#ffedd5", "#c2410c"),  # self-attention
    "text": ("#ede9fe", "#6d28d9"),  # captions, tokens, the text transformer, cross-attention
    "cond": ("#dcfce7", "#15803d"),  # time step and class conditioning
    "noise": ("#fef9c3", "#a16207"),  # noise, schedules, samplers
    "loss": ("#fee2e2", "#b91c1c"),  # losses
    "panel": ("#f8fafc", "#cbd5e1"),  # background of a group of boxes
}


# ------------------------------------------------------------------------------------------ what the code says
@dataclass(frozen=True)
class Facts:
    # the UNet's defaults (helpers/models/unet.py)
    width: int
    mults: tuple[int, ...]
    blocks: tuple[int, ...]
    attention_levels: tuple[int, ...]
    head_dim: int
    num_classes: int  # notebook 05's class-conditional UNet
    ddpm_attention: tuple[tuple[int, ...], ...]  # notebook 05's attention levels (quick, full)
    predictions: tuple[str, ...]  # what notebooks 05 and 07 train their UNets to predict
    # notebook 07 (helpers/ldm.py, helpers/models/autoencoder.py)
    image_size: int
    latent_shape: tuple[int, int, int]
    ae_factor: int
    ldm_attention: tuple[int, ...]
    p_uncond: float
    prediction: str
    min_snr_gamma: float | None
    schedule: str
    diffusion_steps: int
    pooled: bool
    sampler: str
    sample_steps: int
    guidance: float
    spacing: str
    attributes: int  # CelebA's yes/no attributes, the material of every caption
    # CLIP (helpers/models/clip.py, helpers/clip.py)
    clip_width: dict[str, int]  # CNN stem channels per mode; the text transformer is 4x as wide
    embed_dim: int
    max_tokens: int
    text_layers: int
    text_heads: int
    init_temperature: float
    vocab_size: int


def read_facts() -> Facts:
    from helpers import cifar, ldm
    from helpers.clip import RECIPES, CaptionTokenizer
    from helpers.data.celeba import ATTRIBUTES
    from helpers.models.autoencoder import AutoencoderConfig
    from helpers.models.clip import CLIPConfig
    from helpers.models.unet import UNetConfig

    unet = UNetConfig()
    full = ldm.SETTINGS["full"]
    autoencoder = AutoencoderConfig(latent_channels=full.latent_channels, mults=full.ae_mults)
    generate = inspect.signature(ldm.TextToFace.generate).parameters
    clip = CLIPConfig(vocab_size=1)
    embed = {RECIPES["clip"][mode].latent_dim for mode in ("quick", "full")}
    if len(embed) != 1:
        raise SystemExit(f"the CLIP's embedding size differs between modes ({embed}): update the CLIP diagram")
    return Facts(
        width=unet.width, mults=tuple(unet.mults), blocks=tuple(unet.blocks),
        attention_levels=tuple(unet.attention_levels), head_dim=unet.head_dim,
        num_classes=len(cifar.CIFAR10_CLASSES),
        ddpm_attention=tuple(cifar.SETTINGS[mode].attention_levels for mode in ("quick", "full")),
        predictions=tuple(sorted({settings.prediction for module in (cifar, ldm)
                                  for settings in module.SETTINGS.values()})),
        image_size=autoencoder.image_size, latent_shape=autoencoder.latent_shape, ae_factor=autoencoder.factor,
        ldm_attention=tuple(full.attention_levels), p_uncond=full.p_uncond, prediction=full.prediction,
        min_snr_gamma=full.min_snr_gamma, schedule=full.schedule, diffusion_steps=full.diffusion_steps,
        pooled=full.pooled, attributes=len(ATTRIBUTES), sampler=generate["sampler"].default, sample_steps=generate["steps"].default,
        guidance=generate["guidance"].default, spacing=generate["spacing"].default,
        clip_width={mode: RECIPES["clip"][mode].width for mode in ("quick", "full")}, embed_dim=embed.pop(),
        max_tokens=clip.max_tokens, text_layers=clip.text_layers, text_heads=clip.text_heads,
        init_temperature=clip.init_temperature,
        vocab_size=inspect.signature(CaptionTokenizer.train).parameters["vocab_size"].default)


# ------------------------------------------------------------------------------------------ drawing kit
@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def left(self) -> float:
        return self.x

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y

    @property
    def top(self) -> float:
        return self.y + self.h

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    def side(self, name: str, at: float = 0.5) -> tuple[float, float]:
        """A point on one side: `at` runs from left to right (top, bottom) or bottom to top (left, right)."""
        if name == "left":
            return self.left, self.y + at * self.h
        if name == "right":
            return self.right, self.y + at * self.h
        if name == "top":
            return self.x + at * self.w, self.top
        return self.x + at * self.w, self.bottom


def canvas(width: float, height: float):
    """A figure whose data units are inches: (0, 0) bottom left, (width, height) top right."""
    fig = plt.figure(figsize=(width, height), dpi=DPI, facecolor="white")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    return fig, ax


def title(ax, width: float, y: float, text: str) -> None:
    ax.text(width / 2, y, text, ha="center", va="center", fontsize=14, fontweight="bold", color=INK)


def box(ax, x: float, y: float, w: float, h: float, head: str, body: str = "", kind: str = "data", *,
        size: float = 8.5, head_size: float = 9.5, dashed: bool = False, lw: float = 1.3, z: float = 2) -> Box:
    """A rounded box with a bold first line and smaller lines under it, all centred."""
    face, edge = PALETTE[kind]
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.08", fc=face, ec=edge, lw=lw,
                                ls=(0, (4, 2)) if dashed else "-", zorder=z))
    if body:
        lines = body.count("\n") + 1
        block = head_size * 1.3 / 72 + lines * size * 1.3 / 72  # inches of text
        top = y + h / 2 + block / 2
        ax.text(x + w / 2, top, head, ha="center", va="top", fontsize=head_size, fontweight="bold", color=INK,
                zorder=z + 1)
        ax.text(x + w / 2, top - head_size * 1.35 / 72, body, ha="center", va="top", fontsize=size, color=INK,
                linespacing=1.3, zorder=z + 1)
    else:
        ax.text(x + w / 2, y + h / 2, head, ha="center", va="center", fontsize=head_size, fontweight="bold",
                color=INK, zorder=z + 1)
    return Box(x, y, w, h)


def panel(ax, x: float, y: float, w: float, h: float, label: str) -> None:
    """A light background grouping boxes, its name in the top left corner."""
    face, edge = PALETTE["panel"]
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.12", fc=face, ec=edge, lw=1.0,
                                zorder=0))
    ax.text(x + 0.15, y + h - 0.12, label, ha="left", va="top", fontsize=10.5, fontweight="bold", color=MUTED,
            zorder=1)


def route(ax, *points: tuple[float, float], color: str = LINE, lw: float = 1.4, dashed: bool = False,
          head: bool = True, z: float = 1.5) -> None:
    """An arrow along straight segments through `points`; the head sits on the last one."""
    style = (0, (4, 2.5)) if dashed else "-"
    for a, b in pairwise(points[:-1]):
        ax.plot([a[0], b[0]], [a[1], b[1]], color=color, lw=lw, ls=style, solid_capstyle="butt", zorder=z)
    ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>" if head else "-", mutation_scale=12,
                                 color=color, lw=lw, linestyle=style, shrinkA=0, shrinkB=0, zorder=z))


def note(ax, x: float, y: float, text: str, *, size: float = 8.5, color: str = MUTED, ha: str = "left",
         va: str = "center", bold: bool = False, style: str = "normal") -> None:
    ax.text(x, y, text, ha=ha, va=va, fontsize=size, color=color, linespacing=1.3,
            fontweight="bold" if bold else "normal", fontstyle=style, zorder=4)


def plus(ax, x: float, y: float, r: float = 0.14, kind: str = "cond") -> None:
    face, edge = PALETTE[kind]
    ax.add_patch(Circle((x, y), r, fc=face, ec=edge, lw=1.3, zorder=3))
    ax.text(x, y, "+", ha="center", va="center", fontsize=12, fontweight="bold", color=edge, zorder=4)


def chips(ax, x: float, y: float, w: float, names: list[tuple[str, str, bool]], repeat: str) -> list[Box]:
    """A row of small boxes joined by arrows, `repeat` ("× 2") after them: the inside of one UNet level."""
    gap, tail, h = 0.16, 0.42, 0.36
    chip_w = (w - tail - gap * (len(names) - 1)) / len(names)
    out = []
    for i, (name, kind, dashed) in enumerate(names):
        left = x + i * (chip_w + gap)
        out.append(box(ax, left, y, chip_w, h, name, kind=kind, head_size=8, dashed=dashed, lw=1.1, z=3))
        if i:
            route(ax, (left - gap, y + h / 2), (left, y + h / 2), lw=1.0, z=3.5)
    note(ax, x + w - tail / 2, y + h / 2, repeat, size=9.5, color=INK, ha="center", bold=True)
    return out


def level_list(levels: tuple[int, ...]) -> str:
    """(2,) -> "level 2", (1, 2) -> "levels 1 and 2"."""
    if len(levels) == 1:
        return f"level {levels[0]}"
    return "levels " + ", ".join(map(str, levels[:-1])) + f" and {levels[-1]}"


def resolution(level: int) -> str:
    return "H × W" if level == 0 else f"H/{2 ** level} × W/{2 ** level}"


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, facecolor="white")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ the UNet
def draw_unet(facts: Facts, path: Path) -> Path:
    W, H = 12.0, 10.6
    fig, ax = canvas(W, H)
    width, levels = facts.width, len(facts.mults)
    emb = 4 * width
    purple, green = PALETTE["text"][1], PALETTE["cond"][1]
    title(ax, W, H - 0.3, "The diffusion UNet (helpers/models/unet.py): x_t and its step t in, "
                          "the predicted noise or velocity out")
    ddpm = " / ".join(level_list(levels) for levels in sorted(set(facts.ddpm_attention)))
    note(ax, W / 2, H - 0.65, f"drawn with UNetConfig's defaults: width {width}, mults {facts.mults}, "
         f"{facts.blocks[0]} ResBlocks a level on the way down, attention at the lowest level "
         f"(notebook 07 attends at {level_list(facts.ldm_attention)}, notebook 05 at {ddpm})", size=8.5, ha="center")

    # --- the embedding every residual block adds: time step (+ class label | + pooled text)
    row1, row2 = H - 1.6, H - 2.4
    t_box = box(ax, 0.35, row2, 1.3, 0.55, "step t", "(B,)", kind="cond")
    sin_box = box(ax, 1.95, row2, 2.4, 0.55, "sinusoidal embedding", f"(B, {width}): width = {width}", kind="cond")
    mlp = box(ax, 4.65, row2, 3.2, 0.55, "time MLP",
              f"Linear {width}→{emb} · SiLU · Linear {emb}→{emb}", kind="cond")
    px, py = 8.25, row2 + 0.275
    plus(ax, px, py)
    emb_box = box(ax, 8.65, row2, 3.0, 0.55, f"emb (B, {emb})", "added inside every ResBlock", kind="cond")
    route(ax, t_box.side("right"), sin_box.side("left"))
    route(ax, sin_box.side("right"), mlp.side("left"))
    route(ax, mlp.side("right"), (px - 0.14, py))
    route(ax, (px + 0.14, py), emb_box.side("left"))
    class_box = box(ax, 4.65, row1, 3.2, 0.6, "notebook 05 · class label y",
                    f"Embedding({facts.num_classes} + 1, {emb}); row {facts.num_classes} = \"no class\"",
                    kind="cond", dashed=True)
    pooled_box = box(ax, 8.65, row1, 3.0, 0.6, "notebook 07 · pooled text vector",
                     f"(B, P) → Linear(P, {emb}); zeros = no text", kind="text", dashed=True)
    route(ax, class_box.side("bottom", 0.93), (px - 0.1, py + 0.1))
    route(ax, pooled_box.side("bottom", 0.06), (px + 0.1, py + 0.1))

    # --- the U: down path on the left, up path on the right, the middle at the bottom
    col_w, left_x, right_x = 3.3, 0.35, W - 0.35 - 3.3
    level_h, pitch = 0.92, 1.45
    x_in = box(ax, left_x, H - 3.55, col_w, 0.75, "x_t (B, C, H, W)",
               "noisy image (notebook 05)\nor noisy latent (notebook 07)", kind="data")
    predicted = " and ".join(f'"{p}"' for p in facts.predictions)
    out = box(ax, right_x, H - 3.55, col_w, 0.75, "prediction (B, C, H, W)",
              f"velocity v (both notebooks: prediction = {predicted})\nor noise ε (prediction = \"epsilon\")",
              kind="data")
    stem = box(ax, left_x, H - 4.3, col_w, 0.5, f"stem: conv 3×3, C → {width}", kind="conv")
    head = box(ax, right_x, H - 4.3, col_w, 0.5, f"GroupNorm · SiLU · conv 3×3, {width} → C", kind="conv")
    route(ax, x_in.side("bottom", 0.5), stem.side("top", 0.5))
    route(ax, head.side("top", 0.5), out.side("bottom", 0.5))

    downs, ups = [], []
    for i, mult in enumerate(facts.mults):
        y = H - 4.6 - level_h - i * pitch
        channels = width * mult
        attend = i in facts.attention_levels
        head_text = f"level {i} · {resolution(i)} · {channels} ch (×{mult})"
        for side, x, count in (("down", left_x, facts.blocks[i]), ("up", right_x, facts.blocks[i] + 1)):
            b = box(ax, x, y, col_w, level_h, "", kind="panel")
            note(ax, b.cx, b.top - 0.2, head_text + (" · up" if side == "up" else ""), size=9, color=INK,
                 ha="center", bold=True)
            names = [("ResBlock", "conv", False)]
            if attend:
                names += [("self-attn", "attn", False), ("cross-attn", "text", True)]
            chips(ax, x + 0.15, y + 0.12, col_w - 0.3 if attend else 2.0, names, f"× {count}")
            (downs if side == "down" else ups).append(b)
    mid = box(ax, W / 2 - col_w / 2, downs[-1].bottom - 1.1, col_w, level_h, "", kind="panel")
    note(ax, mid.cx, mid.top - 0.2, f"middle · {resolution(levels - 1)} · {width * facts.mults[-1]} ch",
         size=9, color=INK, ha="center", bold=True)
    mid_chips = chips(ax, mid.x + 0.15, mid.y + 0.12, col_w - 0.3,
                      [("ResBlock", "conv", False), ("self-attn", "attn", False), ("cross-attn", "text", True)],
                      "× 2")

    route(ax, stem.side("bottom", 0.5), downs[0].side("top", 0.5))
    route(ax, ups[0].side("top", 0.5), head.side("bottom", 0.5))
    for i in range(levels - 1):
        route(ax, downs[i].side("bottom", 0.5), downs[i + 1].side("top", 0.5))
        note(ax, downs[i].cx + 0.1, (downs[i].bottom + downs[i + 1].top) / 2, "downsample: conv 3×3, stride 2")
        route(ax, ups[i + 1].side("top", 0.5), ups[i].side("bottom", 0.5))
        note(ax, ups[i].cx - 0.1, (ups[i].bottom + ups[i + 1].top) / 2, "upsample: nearest ×2, conv 3×3",
             ha="right")
    low = 0.2  # the bottom of the U joins the last level's boxes near their lower edge, under the skips
    route(ax, downs[-1].side("right", low), (mid.x + 0.5, downs[-1].y + low * level_h), mid.side("top", 0.5 / col_w))
    route(ax, mid.side("top", 1 - 0.5 / col_w), (mid.right - 0.5, ups[-1].y + low * level_h), ups[-1].side("left", low))

    # skips: each down level hands over its entry tensor and every ResBlock's output; the up level concatenates
    # one to the input of each of its ResBlocks, the last one first
    for i, (d, u) in enumerate(zip(downs, ups)):
        for k in (-1, 0, 1):
            yk = d.cy + 0.1 + 0.13 * k
            route(ax, (d.right, yk), (u.left, yk), color=MUTED, lw=1.1, dashed=True)
        source = "stem" if i == 0 else "downsample"
        note(ax, W / 2, d.cy + 0.37, f"{facts.blocks[i] + 1} skips: {source} + {facts.blocks[i]} ResBlock outputs",
             size=8.5, ha="center")

    # --- text tokens into every cross-attention (notebook 07)
    text_box = box(ax, W / 2 - 2.2, 0.15, 4.4, 0.62, "notebook 07 · text tokens (B, L, D)",
                   "CLIP token states + mask, plus a learnt null token", kind="text", dashed=True)
    chip_w = (col_w - 0.3 - 0.42 - 2 * 0.16) / 3  # as `chips` lays them out: the cross-attn chip is the third
    cross_down = downs[-1].x + 0.15 + 2 * (chip_w + 0.16) + chip_w / 2
    cross_up = ups[-1].x + 0.15 + 2 * (chip_w + 0.16) + chip_w / 2
    route(ax, text_box.side("left"), (cross_down, text_box.cy), (cross_down, downs[-1].bottom), color=purple)
    route(ax, text_box.side("right"), (cross_up, text_box.cy), (cross_up, ups[-1].bottom), color=purple)
    route(ax, (mid_chips[2].cx, text_box.top), (mid_chips[2].cx, mid.bottom), color=purple)
    note(ax, left_x + 0.05, mid.cy - 0.1, "notebook 05 (CIFAR-10): the class\nlabel joins emb; no text, no "
         "cross-attn", size=8.5, color=green)
    note(ax, cross_up - 0.2, mid.cy - 0.1, "notebook 07 (face latents): text\ntokens through cross-attn, the "
         "pooled\nvector joins emb", size=8.5, color=purple, ha="right")

    # --- legend, between the arms of the U
    lx, ly = W / 2 - 2.25, x_in.top - 0.2
    entries = [
        ("ResBlock", "conv", False, "GroupNorm · SiLU · conv 3×3, + emb,\nGroupNorm · SiLU · dropout · conv 3×3, + input"),
        ("self-attn", "attn", False, f"every position attends to every position\n(heads of {facts.head_dim} channels)"),
        ("cross-attn", "text", True, "the positions attend to the text tokens;\nonly in a UNet with a context_dim"),
        ("", "", False, "skip: concatenated to one up ResBlock's\ninput, the last one first"),
    ]
    for k, (name, kind, dashed, text) in enumerate(entries):
        yk = ly - k * 0.43
        if name:
            box(ax, lx, yk - 0.16, 0.95, 0.32, name, kind=kind, head_size=8.5, dashed=dashed, lw=1.1)
        else:
            route(ax, (lx, yk), (lx + 0.95, yk), color=MUTED, lw=1.1, dashed=True)
        note(ax, lx + 1.1, yk, text, size=8, color=INK)
    return save(fig, path)


# ------------------------------------------------------------------------------------------ CLIP
def draw_clip(facts: Facts, path: Path) -> Path:
    W, H = 12.0, 7.4
    fig, ax = canvas(W, H)
    quick, full = facts.clip_width["quick"], facts.clip_width["full"]
    e, size = facts.embed_dim, facts.image_size
    title(ax, W, H - 0.3, "CLIP from scratch (helpers/models/clip.py, helpers/clip.py): two towers that learn to agree")

    # --- image tower
    iy, ih = H - 2.25, 1.15
    panel(ax, 0.2, iy - 0.35, 8.1, ih + 0.75, "image tower")
    faces = box(ax, 0.4, iy, 1.5, ih, "N faces", f"(N, 3, {size}, {size})\nin [-1, 1],\nrandom h-flip", kind="data")
    cnn = box(ax, 2.15, iy, 3.55, ih, "CNN image encoder",
              f"conv 4×4 stride 2 ({size} → {size // 2}), w channels\n"
              f"3 × [conv 4×4 stride 2 + ResBlock]: → {size // 16}×{size // 16}, 8w\n"
              "GroupNorm · SiLU · global average pool\n"
              f"w = {full} (full mode) / {quick} (quick mode)", kind="conv")
    iproj = box(ax, 5.95, iy, 2.15, ih, "image projection", f"Linear 8w → {e}, no bias\nL2-normalise\n→ v (N, {e})",
                kind="conv")
    route(ax, faces.side("right"), cnn.side("left"))
    route(ax, cnn.side("right"), iproj.side("left"))

    # --- text tower
    ty, th = 0.45, 1.35
    panel(ax, 0.2, ty - 0.25, 11.6, th + 0.72, "text tower")
    caps = box(ax, 0.4, ty, 1.85, th, "N captions", "a fresh random\ncaption per face\nand batch, built\n"
               f"from its {facts.attributes} attributes", kind="data")
    tok = box(ax, 2.5, ty, 2.0, th, "WordPiece tokenizer",
              f"trained on our own\ncaptions, {facts.vocab_size} tokens,\nlower-cased\n"
              f"→ ids, mask (N, T ≤ {facts.max_tokens})", kind="text")
    tf = box(ax, 4.75, ty, 2.65, th, "text transformer",
             f"token + learnt position embedding\n{facts.text_layers} pre-norm layers, {facts.text_heads} heads, "
             "GELU,\nwidth 4w, padding masked out\nfinal LayerNorm → (N, T, 4w)", kind="text")
    pool = box(ax, 7.65, ty, 1.75, th, "mean pool", "average of the\nreal tokens' states\n(mask = 1)\n→ (N, 4w)",
               kind="text")
    tproj = box(ax, 9.65, ty, 1.95, th, "text projection", f"Linear 4w → {e},\nno bias\nL2-normalise\n→ t (N, {e})",
                kind="text")
    for a, b in ((caps, tok), (tok, tf), (tf, pool), (pool, tproj)):
        route(ax, a.side("right"), b.side("left"))
    note(ax, tf.cx, tf.top + 0.08, "token states (N, T, 4w): also the context of notebook 07's UNet",
         size=8, color=PALETTE["text"][1], ha="center", va="bottom", style="italic")

    # --- the N x N matrix: row i = image i, column j = caption j
    n, cell = 6, 0.4
    sim = Box(8.55, 2.8, W - 0.2 - 8.55, H - 0.7 - 2.8)
    panel(ax, sim.x, sim.y, sim.w, sim.h, "similarity matrix")
    mx, my = sim.x + (sim.w - n * cell) / 2 + 0.15, sim.y + 0.4
    mat_top = my + n * cell
    green = PALETTE["cond"][1]
    for r in range(n):
        for c in range(n):
            match = r == c
            ax.add_patch(Rectangle((mx + c * cell, mat_top - (r + 1) * cell), cell, cell,
                                   fc="#bbf7d0" if match else "#ffffff", ec=green if match else "#cbd5e1",
                                   lw=1.6 if match else 0.8, zorder=2 + match))
        note(ax, mx - 0.08, mat_top - (r + 0.5) * cell, f"v{r + 1}", size=8.5, color=INK, ha="right")
        note(ax, mx + (r + 0.5) * cell, my - 0.15, f"t{r + 1}", size=8.5, color=INK, ha="center")
    note(ax, sim.cx, mat_top + 0.66, "N × N logits = s · v tᵀ", size=10, color=INK, ha="center", bold=True)
    note(ax, sim.cx, mat_top + 0.1, "v tᵀ: cosines (unit vectors)\ngreen diagonal: the matching pairs",
         size=8, color=green, ha="center", va="bottom")
    # v comes in from the left (one row per image), t from below (one column per caption)
    row1 = mat_top - cell / 2
    route(ax, (iproj.right, row1), (mx - 0.35, row1))
    note(ax, (iproj.right + mx - 0.35) / 2, row1 + 0.14, "rows", size=8, ha="center")
    route(ax, (mx + n * cell / 2, tproj.top), (mx + n * cell / 2, my - 0.3))
    note(ax, mx + n * cell / 2 + 0.1, (tproj.top + sim.y) / 2 + 0.02, "columns", size=8)

    # --- loss and the learnt scale, between the towers
    loss = box(ax, 2.15, 2.95, 5.3, 1.4, "symmetric cross-entropy (InfoNCE)",
               "row i (image i): softmax over the captions, target caption i\n"
               "column j (caption j): softmax over the images, target image j\n"
               "loss = (cross-entropy over rows + over columns) / 2\n"
               "faces that drew the very same caption share the target", kind="loss")
    temp = box(ax, 0.4, 2.95, 1.5, 1.4, "learnt scale s", f"exp(logit_scale)\nstarts at 1/{facts.init_temperature:g}\n"
               "capped at 100\n(temperature 1/s)", kind="noise")
    route(ax, (sim.x, loss.cy), loss.side("right"), color=PALETTE["loss"][1])
    bend = (loss.top + iy - 0.35) / 2  # between the loss box and the image tower
    route(ax, temp.side("top"), (temp.cx, bend), (sim.x, bend), color=PALETTE["noise"][1], dashed=True)
    note(ax, (loss.x + loss.right) / 2, bend + 0.12, "s multiplies every logit", size=8,
         color=PALETTE["noise"][1], ha="center")
    return save(fig, path)


# ------------------------------------------------------------------------------------------ latent diffusion
def draw_ldm(facts: Facts, path: Path) -> Path:
    W, H = 12.0, 9.3
    fig, ax = canvas(W, H)
    c, s, _ = facts.latent_shape
    size = facts.image_size
    latent, image = f"({c}, {s}, {s})", f"(3, {size}, {size})"
    purple, red, amber = PALETTE["text"][1], PALETTE["loss"][1], PALETTE["noise"][1]
    title(ax, W, H - 0.3, f"Latent diffusion (helpers/ldm.py): text-to-face in a {s}×{s}×{c} autoencoder latent")

    # --- training
    top = H - 0.65
    panel(ax, 0.2, top - 4.05, 11.6, 4.05, "training (stage 2: the autoencoder and our CLIP were trained first, "
                                           "and stay frozen)")
    ry, bh = top - 1.75, 1.2
    face = box(ax, 0.4, ry, 1.45, bh, "face", f"{image}\nin [-1, 1]", kind="data")
    enc = box(ax, 2.1, ry, 2.05, bh, "AE encoder", f"stride-2 convs: {size} → {s}\nmean, log-var {latent}\n"
              "keeps the mean", kind="conv")
    z0 = box(ax, 4.4, ry, 1.75, bh, "latent z0", f"{latent}\n× latent_scale\n(1 / std of the\ntraining latents)",
             kind="data")
    noise = box(ax, 6.4, ry, 2.25, bh, "add noise at step t",
                f"t ~ U{{0..{facts.diffusion_steps - 1}}}, ε ~ N(0, I)\nz_t = √ᾱ_t z0 + √(1-ᾱ_t) ε\n"
                f"{facts.schedule} schedule", kind="noise")
    unet = box(ax, 8.9, ry, 1.35, bh, "UNet", f"cross-attn\nat {level_list(facts.ldm_attention)}\n+ middle",
               kind="conv")
    lossb = box(ax, 10.45, ry, 1.2, bh, "loss", f"MSE(v̂, v)\nmin-SNR-{facts.min_snr_gamma:g}\nweights",
                kind="loss")
    for a, b in ((face, enc), (enc, z0), (z0, noise), (noise, unet)):
        route(ax, a.side("right"), b.side("left"))
    route(ax, unet.side("right"), lossb.side("left"), color=red)
    note(ax, (unet.right + lossb.left) / 2, unet.cy + 0.15, "v̂", size=9, color=red, ha="center")
    note(ax, 0.4, ry - 0.22, "every training face is encoded once, mirrored too (a random flip picks one), "
         "and cached: the UNet trains on the latents", size=8)
    note(ax, lossb.right, ry - 0.22, "target v = √ᾱ_t ε − √(1-ᾱ_t) z0", size=8, color=red, ha="right")

    # text condition in training
    cy = top - 3.85
    cap = box(ax, 0.4, cy, 2.5, 1.0, "a fresh caption per face", f"each step, from its {facts.attributes} "
              "attributes:\n\"a smiling woman with blond hair\"", kind="data")
    clip_box = box(ax, 3.2, cy, 2.75, 1.0, "our CLIP's text tower", "notebook 03, frozen:\n"
                   "WordPiece → text transformer", kind="text")
    cond = box(ax, 6.25, cy, 2.35, 1.0, "condition", "token states (T, D) + mask\npooled vector"
               + (" (→ time emb)" if facts.pooled else ""), kind="text")
    drop = box(ax, 8.9, cy, 2.75, 1.0, f"caption dropout, p = {facts.p_uncond:g}",
               "mask → 0, pooled → 0: only the\nUNet's null token is left", kind="text", dashed=True)
    route(ax, cap.side("right"), clip_box.side("left"))
    route(ax, clip_box.side("right"), cond.side("left"))
    route(ax, cond.side("right"), drop.side("left"))
    route(ax, (unet.cx, drop.top), unet.side("bottom"), color=purple)
    note(ax, unet.cx - 0.08, (drop.top + unet.bottom) / 2 - 0.08, "text", size=8, color=purple, ha="right")

    # --- sampling
    stop = top - 4.25
    panel(ax, 0.2, 0.2, 11.6, stop - 0.2, "sampling (TextToFace.generate's defaults, with the UNet's EMA weights)")
    sy = stop - 2.2
    z_t = box(ax, 0.4, sy, 1.6, 1.2, "start", f"z_T ~ N(0, I)\n{latent}", kind="noise")
    sampler = facts.sampler.replace("dpm++2m", "DPM-Solver++(2M)").replace("ddim", "DDIM").replace("ddpm", "DDPM")
    loop = box(ax, 2.3, sy, 3.9, 1.2, f"{facts.sample_steps} × {sampler} steps",
               f"{facts.spacing} spacing of the {facts.diffusion_steps} training steps\n"
               "each: one UNet pass on [cond ; null] (batch 2B)\n"
               f"v̂ = v̂_null + w (v̂_cond − v̂_null), w = {facts.guidance:g}", kind="noise")
    zhat = box(ax, 6.5, sy, 1.5, 1.2, "ẑ0", f"{latent}\n÷ latent_scale", kind="data")
    dec = box(ax, 8.3, sy, 1.75, 1.2, "AE decoder", f"nearest ×2 + conv,\ntwice: {s} → {size}\nclamp to [-1, 1]",
              kind="conv")
    out = box(ax, 10.3, sy, 1.35, 1.2, "face", image, kind="data")
    for a, b in ((z_t, loop), (loop, zhat), (zhat, dec), (dec, out)):
        route(ax, a.side("right"), b.side("left"))
    # the loop over the sampler box
    hop = loop.top + 0.25
    route(ax, loop.side("top", 0.8), (loop.x + 0.8 * loop.w, hop), (loop.x + 0.2 * loop.w, hop),
          loop.side("top", 0.2), color=amber)
    note(ax, loop.cx, hop + 0.12, "z_t → z_s, from noisy to clean", size=8, ha="center", color=amber)

    py = 0.45
    prompt = box(ax, 0.4, py, 2.5, 0.9, "prompt", "\"a smiling woman with blond hair\"", kind="data")
    pclip = box(ax, 3.2, py, 2.75, 0.9, "our CLIP's text tower", "→ cond: tokens, mask, pooled", kind="text")
    null = box(ax, 6.25, py, 2.35, 0.9, "null condition", "all zeros: every token masked\nout, pooled vector = 0\n(guidance's unconditional half)",
               kind="text", dashed=True)
    route(ax, prompt.side("right"), pclip.side("left"))
    route(ax, pclip.side("right"), null.side("left"), color=purple, dashed=True)  # null_like: zeros of cond's shapes
    route(ax, pclip.side("top", 0.6), (pclip.x + 0.6 * pclip.w, loop.bottom), color=purple)
    elbow = (null.top + loop.bottom) / 2
    route(ax, null.side("top", 0.2), (null.x + 0.2 * null.w, elbow), (loop.x + 0.93 * loop.w, elbow),
          loop.side("bottom", 0.93), color=purple, dashed=True)
    return save(fig, path)


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "figures"), help="folder for the PNGs (default: figures/)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    facts = read_facts()
    paths = [draw_unet(facts, out / "diagram_unet.png"), draw_clip(facts, out / "diagram_clip.png"),
             draw_ldm(facts, out / "diagram_ldm.png")]
    for path in paths:
        print(f"{path} ({path.stat().st_size / 1024:.0f} KB)")
    return paths


if __name__ == "__main__":
    main()
