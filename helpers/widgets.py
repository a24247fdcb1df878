"""ipywidgets apps: type a prompt, move sliders, see the image change (notebooks 01-02).

The apps only wire widgets to functions that already exist (`TextToDigit`, a VAE decoder); they render
with matplotlib into an Output widget, so they work in JupyterLab, classic Notebook and Colab.
"""
from __future__ import annotations

from typing import Callable

import torch

from helpers.errors import CourseError
from helpers.viz import image_grid, show


def _latent_sliders(count: int):
    import ipywidgets as widgets

    return [widgets.FloatSlider(value=0.0, min=-3.0, max=3.0, step=0.1, description=f"z[{i}]",
                                continuous_update=False) for i in range(count)]


def _overlay(z: torch.Tensor, sliders, use: bool) -> torch.Tensor:
    """Replace the first latent dimensions of every sample by the slider values."""
    if use:
        z = z.clone()
        z[:, : len(sliders)] = torch.tensor([s.value for s in sliders])
    return z


def prompt_app(generate: "TextToDigit", n: int = 8, latent_sliders: int = 4, default_prompt: str = "Print number 5"):  # noqa: F821
    """Prompt box + seed slider + sliders for the first latent dimensions -> a live row of generated digits."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    prompt = widgets.Text(value=default_prompt, description="prompt", continuous_update=False,
                          layout=widgets.Layout(width="420px"))
    seed = widgets.IntSlider(value=0, min=0, max=99, description="seed", continuous_update=False)
    use_sliders = widgets.Checkbox(value=False, description="set the first latent dims by hand")
    sliders = _latent_sliders(min(latent_sliders, generate.latent_dim))
    output = widgets.Output()

    def redraw(*_):
        with output:
            output.clear_output(wait=True)
            z = _overlay(generate.latents(n, seed.value), sliders, use_sliders.value)
            try:
                images, digit = generate(prompt.value, z=z)
            except CourseError as error:
                print(f"error: {error}")
                return
            show(image_grid(images, nrow=n, scale=3), title=f"read as the digit {digit}", size=8)
            plt.show()

    for control in (prompt, seed, use_sliders, *sliders):
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([prompt, seed, use_sliders, widgets.HBox(sliders[:2]), widgets.HBox(sliders[2:]), output])


def latent_app(decode: Callable[[torch.Tensor], torch.Tensor], latent_dim: int, sliders: int = 4):
    """Sliders for the first latent dimensions (the rest fixed by a seed) -> the decoded image, live."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    seed = widgets.IntSlider(value=0, min=0, max=99, description="seed", continuous_update=False)
    controls = _latent_sliders(min(sliders, latent_dim))
    output = widgets.Output()

    def redraw(*_):
        with output:
            output.clear_output(wait=True)
            z = torch.randn(1, latent_dim, generator=torch.Generator().manual_seed(seed.value))
            image = decode(_overlay(z, controls, True))
            show(image_grid(image, nrow=1, scale=4), size=3)
            plt.show()

    for control in (seed, *controls):
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([seed, *controls, output])
