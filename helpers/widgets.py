"""ipywidgets apps: type a prompt, move sliders, see the image change (notebooks 01, 02, 04, 07, 08 and 09).

The apps only wire widgets to functions that already exist (`TextToDigit`, a VAE decoder); they render
with matplotlib into an Output widget, so they work in JupyterLab, classic Notebook and Colab.

Every app is a VBox that also carries `app.controls` (name -> widget) and `app.shown`: the image grid it drew
last (`image`, (C, H, W) in [0, 1]), its title, and the one-line `error` it printed instead when the input was
refused. Tests and scripts drive an app by setting `app.controls["prompt"].value` and read `app.shown`.
"""
from __future__ import annotations

from typing import Callable, Sequence

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
    app.refresh = update  # redraw now (for a control that is not in `controls`)
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
    """Notebook 07's widget: prompt box + sampler, guidance, steps and seed -> a row of faces from `ldm`
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


def model_app(cfg, n: int = 8, names: Sequence[str] | None = None):
    """Notebook 09's widget: every generator trained under `cfg.runs_dir`, found through the model registry (no
    model is named here). Pick one, type a prompt (each model starts from an example it draws well), move the seed;
    guidance and steps reach the diffusion models. The models are loaded on first use and kept. `names` keeps only
    those run folders (e.g. ["sketch-cvae"] for notebook 08's own model)."""
    import shlex

    import ipywidgets as widgets

    from helpers.__main__ import build_parser
    from helpers.checkpoint import read_index
    from helpers.registry import kinds

    trained = {}  # run folder -> (kind, the options that trained this variant)
    for item in kinds().values():
        for folder, options in item.runs() if item.generate is not None else ():
            try:
                read_index(cfg.run_dir(folder))
            except CourseError:  # not trained (or damaged: notebook 09's inventory says how to retrain it)
                continue
            if names is None or folder in names:
                trained[folder] = (item, options)
    if not trained:
        raise CourseError(f"no trained generator in {cfg.runs_dir}: run notebooks 01-08 first (or "
                          f"python -m helpers train <model>; python -m helpers models lists them)")
    prompted = [folder for folder, (item, _) in trained.items() if item.example is not None]
    model = widgets.Dropdown(options=list(trained), value=(prompted or list(trained))[0], description="model")
    prompt = widgets.Text(description="prompt", continuous_update=False, layout=widgets.Layout(width="420px"))
    seed = widgets.IntSlider(value=0, min=0, max=99, description="seed", continuous_update=False)
    guidance = widgets.FloatSlider(value=3.0, min=0.0, max=8.0, step=0.5, description="guidance",
                                   continuous_update=False)
    steps = widgets.IntSlider(value=20, min=5, max=100, step=5, description="steps", continuous_update=False)
    loaded = {}

    def follow_model(change=None):
        """A new model starts from its example prompt (none for an unconditional model): one redraw."""
        example = trained[model.value][0].example or ""
        prompt.disabled = not example
        if prompt.value != example:
            prompt.value = example  # the prompt's observer redraws
        elif change is not None:
            app.refresh()

    follow_model()

    def redraw():
        item, variant = trained[model.value]
        text = prompt.value if item.example is not None else None
        item.check_prompt(text)  # one line, before anything is loaded
        options = build_parser().parse_args(["generate", "--model", item.name, *shlex.split(variant), "--n", str(n),
                                             "--seed", str(seed.value), "--guidance", str(guidance.value),
                                             "--steps", str(steps.value)])
        options.prompt = text
        if model.value not in loaded:
            loaded[model.value] = item.load(cfg, cfg.run_dir(model.value))
        samples = item.generate(loaded[model.value], options)
        return image_grid(samples.images, nrow=n, scale=max(1, samples.scale // 2)), samples.note or model.value

    controls = {"prompt": prompt, "seed": seed, "guidance": guidance, "steps": steps}
    app = _app([widgets.HBox([model, seed]), prompt, widgets.HBox([guidance, steps])], controls, redraw)
    model.observe(follow_model, names="value")
    app.controls["model"] = model
    return app
