"""ipywidgets apps: type a prompt, move sliders, see the image change (notebooks 01, 02, 04 and 05).

The apps only wire widgets to functions that already exist (`TextToDigit`, a VAE decoder); they render
with matplotlib into an Output widget, so they work in JupyterLab, classic Notebook and Colab.

Every app is a VBox that also carries `app.controls` (name -> widget) and `app.shown`: the image grid it drew
last (`image`, (C, H, W) in [0, 1]), its title, and the one-line `error` it printed instead when the input was
refused. Tests and scripts drive an app by setting `app.controls["prompt"].value` and read `app.shown`.
"""
from __future__ import annotations

from typing import Callable

import torch

from helpers.errors import CourseError
from helpers.viz import image_grid, show


def _app(children: list, controls: dict, redraw: Callable[[], tuple[torch.Tensor, str]]):
    """The VBox of an app: `redraw()` returns (image grid, title) or raises a CourseError; every change of a
    control redraws into the Output widget (the last child) and records what was shown in `app.shown`."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    output = widgets.Output()
    app = widgets.VBox([*children, output])
    app.controls, app.shown = controls, {"image": None, "title": None, "error": None}

    def update(*_):
        with output:
            output.clear_output(wait=True)
            try:
                image, title = redraw()
            except CourseError as error:
                app.shown.update(image=None, title=None, error=str(error))
                print(f"error: {error}")
                return
            app.shown.update(image=image, title=title, error=None)
            show(image, title=title, size=max(3.0, min(10.0, image.shape[-1] / 40)))
            plt.show()

    for control in controls.values():
        control.observe(update, names="value")
    update()
    return app


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

    prompt = widgets.Text(value=default_prompt, description="prompt", continuous_update=False,
                          layout=widgets.Layout(width="420px"))
    seed = widgets.IntSlider(value=0, min=0, max=99, description="seed", continuous_update=False)
    use_sliders = widgets.Checkbox(value=False, description="set the first latent dims by hand")
    sliders = _latent_sliders(min(latent_sliders, generate.latent_dim))

    def redraw():
        z = _overlay(generate.latents(n, seed.value), sliders, use_sliders.value)
        images, digit = generate(prompt.value, z=z)
        return image_grid(images, nrow=n, scale=3), f"read as the digit {digit}"

    controls = {"prompt": prompt, "seed": seed, "use_sliders": use_sliders,
                **{f"z{i}": slider for i, slider in enumerate(sliders)}}
    return _app([prompt, seed, use_sliders, widgets.HBox(sliders[:2]), widgets.HBox(sliders[2:])], controls, redraw)


def latent_app(decode: Callable[[torch.Tensor], torch.Tensor], latent_dim: int, sliders: int = 4):
    """Sliders for the first latent dimensions (the rest fixed by a seed) -> the decoded image, live."""
    import ipywidgets as widgets

    seed = widgets.IntSlider(value=0, min=0, max=99, description="seed", continuous_update=False)
    latents = _latent_sliders(min(sliders, latent_dim))

    def redraw():
        z = torch.randn(1, latent_dim, generator=torch.Generator().manual_seed(seed.value))
        return image_grid(decode(_overlay(z, latents, True)), nrow=1, scale=4), ""

    return _app([seed, *latents], {"seed": seed, **{f"z{i}": s for i, s in enumerate(latents)}}, redraw)


# The attributes the face widget offers as toggles: the ones a 64x64 face shows most clearly.
FACE_TOGGLES = ("Male", "Smiling", "Eyeglasses", "Blond_Hair", "Black_Hair", "Gray_Hair", "Wearing_Hat", "No_Beard",
                "Young", "Wearing_Lipstick", "Bangs", "Bald")


def face_app(generators: dict, n: int = 8, default_prompt: str = "a smiling woman with blond hair"):
    """Notebook 04's widget: pick a model, type a prompt, then force attributes on or off with toggles.

    `generators` maps a name to a `helpers.faces.PromptToFace`. With every toggle at "any" the prompt goes
    to the model as typed; a toggle set to "yes"/"no" overrides what the prompt says about that attribute,
    and the model gets the combined attributes (the CLIP-conditioned model as a sentence, see `prompt_for`).
    """
    import ipywidgets as widgets

    from helpers.data.captions import parse_prompt, prompt_for

    model = widgets.Dropdown(options=list(generators), description="model")
    prompt = widgets.Text(value=default_prompt, description="prompt", continuous_update=False,
                          layout=widgets.Layout(width="420px"))
    seed = widgets.IntSlider(value=0, min=0, max=99, description="seed", continuous_update=False)
    toggles = {name: widgets.ToggleButtons(options=["any", "yes", "no"], value="any", description=name,
                                           style={"button_width": "48px", "description_width": "110px"})
               for name in FACE_TOGGLES}

    def redraw():
        face = generators[model.value]
        forced = {name: t.value == "yes" for name, t in toggles.items() if t.value != "any"}
        if forced:
            wanted = {**(parse_prompt(prompt.value) if prompt.value.strip() else {}), **forced}
            images, title = face.for_wanted(wanted, n=n, seed=seed.value), prompt_for(wanted)
        else:
            images, wanted = face(prompt.value, n=n, seed=seed.value)
            title = f"read as: {', '.join(f'{k}={v}' for k, v in wanted.items())}"
        return image_grid((images + 1) / 2, nrow=n, scale=2), title

    controls = {"model": model, "prompt": prompt, "seed": seed, **toggles}
    return _app([widgets.HBox([model, seed]), prompt, *toggles.values()], controls, redraw)


def diffusion_app(ldm, n: int = 6, default_prompt: str = "a smiling woman with blond hair", max_steps: int = 100):
    """Notebook 05's widget: prompt box + sampler, guidance, steps and seed -> a row of faces from `ldm`
    (a `helpers.ldm.TextToFace`), with the sampling time so the cost of more steps is visible."""
    import time

    import ipywidgets as widgets

    prompt = widgets.Text(value=default_prompt, description="prompt", continuous_update=False,
                          layout=widgets.Layout(width="420px"))
    guidance = widgets.FloatSlider(value=3.0, min=0.0, max=8.0, step=0.5, description="guidance",
                                   continuous_update=False)
    from helpers.diffusion import SAMPLERS

    sampler = widgets.Dropdown(options=SAMPLERS, value="dpm++2m", description="sampler")
    steps = widgets.IntSlider(value=min(20, max_steps), min=5, max=max_steps, step=5, description="steps",
                              continuous_update=False)
    seed = widgets.IntSlider(value=0, min=0, max=99, description="seed", continuous_update=False)

    def redraw():
        start = time.perf_counter()
        images = ldm(prompt.value, n=n, guidance=guidance.value, steps=steps.value, seed=seed.value,
                     sampler=sampler.value)
        title = f"{sampler.value}, w = {guidance.value:g}, {steps.value} steps, {time.perf_counter() - start:.1f} s"
        return image_grid((images + 1) / 2, nrow=n, scale=2), title

    controls = {"prompt": prompt, "sampler": sampler, "guidance": guidance, "steps": steps, "seed": seed}
    return _app([prompt, widgets.HBox([sampler, guidance]), widgets.HBox([steps, seed])], controls, redraw)
