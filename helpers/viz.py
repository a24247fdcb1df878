"""Pictures of results: one grid function, one GIF writer, loss curves (used by every notebook and the CLI)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from helpers.files import write_atomic


def image_grid(images: torch.Tensor, nrow: int = 8, scale: int = 2, padding: int = 2) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] (or uint8 in [0, 255]) -> one (3, H', W') image, each cell enlarged `scale`x.

    Models of colour images work in [-1, 1]: pass `(images + 1) / 2`.
    """
    if images.dtype == torch.uint8:
        images = images.float() / 255
    images = images.detach().float().cpu().clamp(0, 1)
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    if scale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    return make_grid(images, nrow=nrow, padding=padding, pad_value=0.25)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(C, H, W) in [0, 1] -> PIL image."""
    array = (image.detach().float().cpu().clamp(0, 1) * 255).round().byte()
    if array.shape[0] == 1:
        return Image.fromarray(array[0].numpy(), mode="L")
    return Image.fromarray(array.permute(1, 2, 0).numpy())


def titled(image: torch.Tensor, title: str, bar: int = 14) -> torch.Tensor:
    """Put a black strip with `title` above a (3, H, W) image (used to number GIF frames)."""
    pil = to_pil(image).convert("RGB")
    canvas = Image.new("RGB", (pil.width, pil.height + bar), "black")
    canvas.paste(pil, (0, bar))
    ImageDraw.Draw(canvas).text((3, 1), title, fill="white")
    return torch.from_numpy(np.array(canvas)).permute(2, 0, 1).float() / 255


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write a (C, H, W) image in [0, 1] as PNG atomically (no half-written file if interrupted)."""
    return write_atomic(path, lambda tmp: to_pil(image).save(tmp, format="PNG"))


def write_gif(frames: Sequence[str | Path | torch.Tensor], path: str | Path, fps: float = 3.0,
              hold_last: int = 4) -> Path:
    """Animated GIF from PNG files or (C, H, W) tensors; the last frame is shown `hold_last` times longer."""
    import imageio.v3 as iio

    arrays = []
    for frame in frames:
        pil = Image.open(frame).convert("RGB") if isinstance(frame, (str, Path)) else to_pil(frame).convert("RGB")
        arrays.append(np.asarray(pil))
    durations = [1000 / fps] * (len(arrays) - 1) + [1000 / fps * hold_last]
    if len(durations) == 1:  # Pillow wants a number, not a list, for a single frame
        durations = durations[0]
    return write_atomic(path, lambda tmp: iio.imwrite(tmp, np.stack(arrays), extension=".gif", duration=durations,
                                                      loop=0))


def plot_losses(history: list[dict[str, float]], keys: Sequence[str] = ("loss",), ax=None, title: str = ""):
    """Per-epoch curves of `keys` from a Trainer history; returns the matplotlib axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    epochs = [record["epoch"] for record in history]
    for key in keys:
        values = [record.get(key, float("nan")) for record in history]
        ax.plot(epochs, values, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def show(image: torch.Tensor, title: str = "", ax=None, size: float = 5):
    """Display a (C, H, W) image in a notebook."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(size, size * image.shape[1] / image.shape[2]))
    ax.imshow(image.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    return ax


def labelled_grid(images: torch.Tensor, labels: Sequence[str], ncol: int, scale: int = 2,
                  label_width: int = 190) -> torch.Tensor:
    """Rows of `ncol` images (B = len(labels) * ncol, in [0, 1]) with each row's label written on its left."""
    if len(images) != len(labels) * ncol:
        raise ValueError(f"{len(images)} images do not make {len(labels)} rows of {ncol}")
    grid = to_pil(image_grid(images, nrow=ncol, scale=scale))
    canvas = Image.new("RGB", (grid.width + label_width, grid.height), "white")
    canvas.paste(grid, (label_width, 0))
    draw, row_height = ImageDraw.Draw(canvas), grid.height / len(labels)
    for row, label in enumerate(labels):
        lines, line = [], ""
        for word in label.split():  # wrap to the label column (~6 px per character of the default font)
            if line and len(line) + 1 + len(word) > label_width // 6 - 1:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
        top = row * row_height + row_height / 2 - 6 * len(lines)
        for index, text in enumerate(lines):
            draw.text((4, top + 12 * index), text, fill="black")
    return torch.from_numpy(np.array(canvas)).permute(2, 0, 1).float() / 255


def show_figure(name: str, width: int = 900):
    """Show one of the committed figures/ (the architecture diagrams): from the checkout when there is one, else from
    the repository on GitHub, since Colab and Kaggle install the package without its figures."""
    from IPython.display import Image as Picture, display

    from helpers.config import REPO_ROOT, REPOSITORY

    path = REPO_ROOT / "figures" / name
    if path.exists():
        return display(Picture(filename=str(path), width=width))
    return display(Picture(url=f"https://raw.githubusercontent.com/{REPOSITORY}/main/figures/{name}", width=width))
