"""Command line of the course: the same code the notebooks call, for headless runs, scripts and CI.

    python -m helpers train vae|text-cvae|judge|clip|celeba-cvae|celeba-gan|face-judge|ldm-autoencoder|ldm|cifar-ddpm|cifar-judge
                            |sketch-cvae|doodle-judge [--text-encoder auto|openai-clip|ours] [--workers N]
                            [--quick] [--epochs N | --time-budget 20m] [--out DIR] [--resume] [--condition attributes|clip]
                            [--image-size 32] [--objective v|epsilon|edm|flow] [--backbone unet|dit]
    python -m helpers generate "Print number 5" [--model text-cvae] [--checkpoint DIR] [--n 16] [--seed 0] [--out DIR]
    python -m helpers generate --model celeba-cvae "a smiling man with eyeglasses" [--condition clip]
    python -m helpers generate --model ldm "a smiling woman" [--guidance 3] [--steps 20] [--sampler dpm++2m|ddim|ddpm]
    python -m helpers generate --model cifar-ddpm "a photo of a cat" [--guidance 3] [--steps 20] [--sampler dpm++2m|ddim|ddpm]
                                              (a flow-matching run: [--sampler euler|heun] [--steps 8])
    python -m helpers generate --model sketch-cvae --prompt "a sketch of a cat"
    python -m helpers reconstruct [--model vae|ldm-autoencoder|sketch-cvae] [--checkpoint DIR] [--n 8] [--out DIR]
    python -m helpers evaluate [--model text-cvae|vae|clip|celeba-cvae|celeba-gan|ldm|cifar-ddpm|sketch-cvae] [--checkpoint DIR]
    python -m helpers models                      # every model, its notebook and what it can do

The commands name no model: each model is declared once, in its track's module, and found through
`helpers.registry`. Mistakes (empty prompt, missing checkpoint, no data offline ...) print one line on stderr and
exit 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SAMPLERS = ("dpm++2m", "ddim", "ddpm")  # helpers.diffusion.SAMPLERS (fast one first), without importing torch for --help
FLOW_SAMPLERS = ("euler", "heun")  # helpers.diffusion.FLOW_SAMPLERS
OBJECTIVES = ("v", "epsilon", "edm", "flow")  # helpers.cifar.OBJECTIVES


def _names(capability: str | None = None) -> list[str]:
    """The registry's model names (those that can `capability`: generate, evaluate, reconstruct)."""
    from helpers.registry import kinds

    return [name for name, item in kinds().items() if capability is None or getattr(item, capability) is not None]


def _config(args):
    from helpers.config import get_config

    return get_config(quick=True if args.quick else None, seed=getattr(args, "seed", 0))


def _run_dir(cfg, args, item) -> tuple[Path, str]:
    """The run folder (--checkpoint/--out if given, else runs/<the variant's folder>) and the command that trains
    it, e.g. `python -m helpers train celeba-cvae --condition clip --out runs/x`."""
    given = getattr(args, "checkpoint", None) if args.command != "train" else args.out
    folder = item.folder(args)
    run = Path(given) if given else cfg.run_dir(folder)
    return run, f"{item.train_command(dict(item.runs()).get(folder, ''))} --out {run}"


def _load(cfg, args, item):
    """The trained model of the run folder, failing at once (one line) when there is no such checkpoint."""
    from helpers.checkpoint import read_index

    run, hint = _run_dir(cfg, args, item)
    read_index(run, train_hint=hint)
    return item.load(cfg, run)


def cmd_train(args) -> None:
    from helpers.errors import CourseError
    from helpers.registry import kind
    from helpers.train import is_main_process, parse_duration

    item, cfg = kind(args.model), _config(args)
    out, _ = _run_dir(cfg, args, item)
    if args.grad_accum is not None:
        if args.grad_accum < 1:
            raise CourseError(f"--grad-accum must be at least 1, got {args.grad_accum}")
        os.environ["COURSE_GRAD_ACCUM"] = str(args.grad_accum)  # every Trainer of this run reads it
    args.budget = None if args.time_budget is None else parse_duration(args.time_budget)  # "abc", 0, -5m: one line
    if (args.objective or args.backbone) and args.model != "cifar-ddpm":
        raise CourseError(f"--objective and --backbone choose the cifar-ddpm's training, not {args.model}'s")
    if args.budget is not None and not item.budgeted:  # the diffusion models take it themselves (not their CLIP)
        os.environ["COURSE_TIME_BUDGET"] = str(args.budget)  # every recipe of this run reads it
    if not is_main_process():  # under a multi-process launcher only rank 0 talks (errors still reach stderr)
        sys.stdout = open(os.devnull, "w")
    print(f"training {args.model} ({cfg}) -> {out}", flush=True)
    item.train(cfg, out, args)
    print(f"checkpoint: {out / 'checkpoint.json'}")
    if item.writes_gif:
        print(f"training GIF: {Path(args.gif) if args.gif else out / 'training.gif'}")


def _save_samples(images, out_dir: Path, stem: str, nrow: int, scale: int = 4) -> tuple[list[Path], Path]:
    """One PNG per sample (enlarged `scale`x) plus one grid, all rendered before anything is written."""
    from helpers.viz import image_grid, save_image

    grid = image_grid(images, nrow=nrow, scale=scale)
    singles = [image_grid(image[None], nrow=1, scale=scale, padding=0) for image in images]
    paths = [save_image(single, out_dir / f"{stem}_{index:02d}.png") for index, single in enumerate(singles)]
    return paths, save_image(grid, out_dir / f"{stem}_grid.png")


def cmd_generate(args) -> None:
    from helpers.errors import CourseError
    from helpers.registry import kind

    item, cfg = kind(args.model), _config(args)
    if args.prompt_option is not None:
        if args.prompt is not None:
            raise CourseError("give the prompt once: either positional or --prompt")
        args.prompt = args.prompt_option
    if args.n < 1 or args.n > 1024:
        raise CourseError(f"--n must be between 1 and 1024, got {args.n}")
    item.check_prompt(args.prompt)  # cheap checks before loading anything
    samples = item.generate(_load(cfg, args, item), args)
    if samples.note:
        print(samples.note)
    out = Path(args.out) if args.out else cfg.outputs_dir
    paths, grid = _save_samples(samples.images, out, samples.stem, nrow=min(8, args.n), scale=samples.scale)
    print(f"wrote {len(paths)} samples to {out}/ ({paths[0].name} ...) and the grid {grid}")


def cmd_reconstruct(args) -> None:
    from helpers.registry import kind

    item, cfg = kind(args.model), _config(args)
    print(item.reconstruct(cfg, _load(cfg, args, item), args))


def cmd_evaluate(args) -> None:
    from helpers.registry import kind

    item, cfg = kind(args.model), _config(args)
    item.evaluate(cfg, _load(cfg, args, item), args)


def cmd_models(args) -> None:
    from helpers.registry import kinds

    for name, item in kinds().items():
        can = [verb for verb in ("generate", "evaluate", "reconstruct") if getattr(item, verb) is not None]
        print(f"{name:16s} notebook {item.notebook}  {item.summary}" + (f"  [{', '.join(can)}]" if can else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model into a run folder")
    train.add_argument("model", choices=_names())
    train.add_argument("--epochs", type=int, help="total epochs (default: the recipe of the mode)")
    train.add_argument("--out", help="run folder (default: runs/<model>)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in the run folder")
    train.add_argument("--gif", help="where to write the training GIF (default: <out>/training.gif)")
    train.add_argument("--condition", choices=("attributes", "clip"), default="attributes",
                       help="celeba-cvae/celeba-gan: condition on the 40 attributes or on our CLIP's text embedding")
    train.add_argument("--text-encoder", choices=("auto", "openai-clip", "ours"), default="auto",
                       help="sketch-cvae: OpenAI's CLIP (needs the hub once), our CLIP trained on the sketch captions, "
                            "or auto (OpenAI's if it loads)")
    train.add_argument("--workers", type=int, default=0, help="sketch-cvae: data-loading worker processes")
    train.add_argument("--grad-accum", type=int, default=None, metavar="N",
                       help="average the gradients of N batches per optimizer step (effective batch = batch x "
                            "processes x N); works under `accelerate launch` too")
    train.add_argument("--time-budget", metavar="DURATION",
                       help="train for this long (90s, 20m, 1.5h) instead of a number of epochs: the run measures "
                            "its speed, then plans its steps and learning-rate schedule to end on time; "
                            "--resume finishes the plan")
    train.add_argument("--image-size", type=int, default=None, choices=(16, 32, 64),
                       help="cifar-ddpm: 16x16 (quick mode's), 32x32 (CIFAR's size, full mode's) or upscaled 64x64")
    train.add_argument("--objective", choices=OBJECTIVES, default=None,
                       help="cifar-ddpm: what the network learns: v (default), epsilon, edm, or flow (rectified flow, "
                            "logit-normal times; sample it with --sampler euler|heun)")
    train.add_argument("--backbone", choices=("unet", "dit"), default=None,
                       help="cifar-ddpm: the network: unet (default) or dit (a diffusion transformer)")
    train.set_defaults(func=cmd_train)

    generate = sub.add_parser("generate", help="generate digits, faces or CIFAR-10 images from a prompt")
    generate.add_argument("prompt", nargs="?", help='e.g. "Print number 5" or "a smiling man with eyeglasses" '
                                                    '(omit for --model vae)')
    generate.add_argument("--prompt", dest="prompt_option", help="the prompt, as an option (same as the positional)")
    generate.add_argument("--model", choices=_names("generate"), default="text-cvae")
    generate.add_argument("--checkpoint", help="run folder (default: runs/<model>)")
    generate.add_argument("--n", type=int, default=16, help="number of samples")
    generate.add_argument("--out", help="output folder (default: outputs/)")
    generate.set_defaults(func=cmd_generate)

    reconstruct = sub.add_parser("reconstruct", help="encode and decode held-out digits with the VAE")
    reconstruct.add_argument("--model", choices=_names("reconstruct"), default="vae")
    reconstruct.add_argument("--checkpoint", help="run folder (default: runs/<model>)")
    reconstruct.add_argument("--n", type=int, default=8)
    reconstruct.add_argument("--out", help="output folder (default: outputs/)")
    reconstruct.set_defaults(func=cmd_reconstruct)

    evaluate = sub.add_parser("evaluate", help="measure a trained model (test loss or prompt accuracy)")
    evaluate.add_argument("--model", choices=_names("evaluate"), default="text-cvae")
    evaluate.add_argument("--checkpoint", help="run folder (default: runs/<model>)")
    evaluate.set_defaults(func=cmd_evaluate)

    models = sub.add_parser("models", help="list the course's models, their notebooks and what each can do")
    models.set_defaults(func=cmd_models, quick=False)

    for command in (generate, evaluate):
        command.add_argument("--guidance", type=float, default=3.0,
                             help="ldm, cifar-ddpm: classifier-free guidance scale (0 unconditional, 1 none, 3 default)")
        command.add_argument("--steps", type=int, default=20,
                             help="ldm, cifar-ddpm: sampling steps (20 for dpm++2m, 50 for ddim, 1000 for ddpm)")
        command.add_argument("--sampler", choices=SAMPLERS + FLOW_SAMPLERS, default=None,
                             help="ldm, cifar-ddpm: DPM-Solver++(2M) (the default), DDIM, or DDPM (the 1,000-step "
                                  "original); a flow-matching run: euler (its default) or heun")
        command.add_argument("--condition", choices=("attributes", "clip"), default="attributes",
                             help="which celeba-cvae/celeba-gan run: attribute- or CLIP-conditioned")
        command.add_argument("--temperature", type=float, default=None,
                             help="sketch-cvae: how far from the prompt's most typical sketch to sample, 0-2 "
                                  "(0 one sketch per prompt, 1 the training sketches' spread; default 0.6)")
    for command in (train, generate, reconstruct, evaluate):
        command.add_argument("--quick", action="store_true", help="quick mode (same as COURSE_QUICK=1)")
        command.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from helpers.errors import CourseError

    try:
        args.func(args)
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last complete checkpoint is kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
