"""Command line of the course: the same code the notebooks call, for headless runs, scripts and CI.

    python -m helpers train vae|text-cvae|judge|clip|celeba-cvae|celeba-gan|face-judge|ldm-autoencoder|ldm|cifar-ddpm|cifar-judge
                            |sketch-cvae|doodle-judge [--text-encoder auto|openai-clip|ours] [--workers N]
                            [--quick] [--epochs N | --time-budget 20m] [--out DIR] [--resume] [--condition attributes|clip]
                            [--image-size 32]
    python -m helpers generate "Print number 5" [--model text-cvae] [--checkpoint DIR] [--n 16] [--seed 0] [--out DIR]
    python -m helpers generate --model celeba-cvae "a smiling man with eyeglasses" [--condition clip]
    python -m helpers generate --model ldm "a smiling woman" [--guidance 3] [--steps 20] [--sampler dpm++2m|ddim|ddpm]
    python -m helpers generate --model cifar-ddpm "a photo of a cat" [--guidance 3] [--steps 20] [--sampler dpm++2m|ddim|ddpm]
    python -m helpers generate --model sketch-cvae --prompt "a sketch of a cat"
    python -m helpers reconstruct [--model vae|ldm-autoencoder|sketch-cvae] [--checkpoint DIR] [--n 8] [--out DIR]
    python -m helpers evaluate [--model text-cvae|vae|clip|celeba-cvae|celeba-gan|ldm|cifar-ddpm] [--checkpoint DIR]

Mistakes (empty prompt, missing checkpoint, no data offline ...) print one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

FACE_MODELS = ("celeba-cvae", "celeba-gan")
TRAINABLE = ("vae", "text-cvae", "judge", "clip", *FACE_MODELS, "face-judge", "ldm-autoencoder", "ldm", "cifar-ddpm",
             "cifar-judge", "sketch-cvae", "doodle-judge")
GENERATORS = ("text-cvae", "vae", *FACE_MODELS, "ldm", "cifar-ddpm", "sketch-cvae")
EVALUABLE = (*GENERATORS, "clip")
SAMPLERS = ("dpm++2m", "ddim", "ddpm")  # helpers.diffusion.SAMPLERS (fast one first), without importing torch for --help
BUDGETED = ("ldm", "cifar-ddpm")  # trained to a time budget by default (the mode's), --time-budget changes it


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "prompt"


def _sampling_tag(args) -> str:
    """'dpmpp2m20_w3_seed0': sampler, steps, guidance and seed in a file name ("+" spelt "p")."""
    return f"{_slug(args.sampler.replace('+', 'p'))}{args.steps}_w{args.guidance:g}_seed{args.seed}"


def _config(args):
    from helpers.config import get_config

    return get_config(quick=True if args.quick else None, seed=getattr(args, "seed", 0))


def _run_dir(cfg, args) -> Path:
    """--checkpoint/--out if given, else runs/<model> (runs/<model>-clip for a CLIP-conditioned face model)."""
    given = getattr(args, "checkpoint", None) if args.command != "train" else args.out
    if given:
        return Path(given)
    if args.model in FACE_MODELS:
        from helpers.faces import run_name

        return cfg.run_dir(run_name(args.model, args.condition))
    return cfg.run_dir(args.model)


def cmd_train(args) -> None:
    from helpers import digits
    from helpers.errors import CourseError
    from helpers.train import is_main_process

    cfg = _config(args)
    out = _run_dir(cfg, args)
    if args.grad_accum is not None:
        if args.grad_accum < 1:
            raise CourseError(f"--grad-accum must be at least 1, got {args.grad_accum}")
        os.environ["COURSE_GRAD_ACCUM"] = str(args.grad_accum)  # every Trainer of this run reads it
    budget = None
    if args.time_budget is not None:
        from helpers.train import parse_duration

        budget = parse_duration(args.time_budget)  # refuses "abc", 0, -5m ... with one line
        if args.model not in BUDGETED:  # the diffusion models take it as an argument (not their autoencoder, CLIP)
            os.environ["COURSE_TIME_BUDGET"] = str(budget)  # every Trainer of this run reads it
    if not is_main_process():  # under a multi-process launcher only rank 0 talks (errors still reach stderr)
        sys.stdout = open(os.devnull, "w")
    print(f"training {args.model} ({cfg}) -> {out}", flush=True)
    if args.model == "vae":
        trainer = digits.train_vae(cfg, out, epochs=args.epochs, resume=args.resume, gif_path=args.gif)
        print(f"held-out loss (BCE-sum + KL per image): {trainer.history[-1]['test_loss']:.2f}")
    elif args.model == "text-cvae":
        digits.train_text_cvae(cfg, out, epochs=args.epochs, resume=args.resume, gif_path=args.gif)
    elif args.model == "clip":
        from helpers.clip import train_clip

        trainer = train_clip(cfg, out, epochs=args.epochs, resume=args.resume)
        if trainer.history:
            print(f"held-out zero-shot balanced accuracy (mean of 40 attributes): "
                  f"{trainer.history[-1]['zero_shot_mean']:.3f}; full report: python -m helpers evaluate --model clip")
    elif args.model in FACE_MODELS:
        from helpers.faces import train_faces

        face = train_faces(cfg, args.model, args.condition, out, epochs=args.epochs, resume=args.resume,
                           gif_path=args.gif)
        print(f"trained {face.name} for {face.train_seconds:.0f} s; measure it with "
              f"`python -m helpers evaluate --model {args.model} --condition {args.condition}`")
    elif args.model == "ldm-autoencoder":
        from helpers.ldm import train_autoencoder

        _, history = train_autoencoder(cfg, out, epochs=args.epochs, resume=args.resume)
        if history:
            print(f"held-out reconstruction PSNR: {history[-1]['heldout_psnr']:.2f} dB; "
                  f"next: `python -m helpers train ldm`")
    elif args.model == "ldm":
        from helpers.ldm import train_ldm

        ldm = train_ldm(cfg, out, epochs=args.epochs, resume=args.resume, gif_path=args.gif, time_budget=budget)
        print(f"trained {ldm.parameters / 1e6:.1f}M-parameter latent UNet for {ldm.train_seconds:.0f} s; draw with "
              f"`python -m helpers generate --model ldm \"a smiling woman\"`, measure with "
              f"`python -m helpers evaluate --model ldm`")
    elif args.model == "cifar-ddpm":
        from helpers.cifar import train_cifar_ddpm

        ddpm = train_cifar_ddpm(cfg, out, epochs=args.epochs, image_size=args.image_size, resume=args.resume,
                                gif_path=args.gif, time_budget=budget)
        print(f"trained {ddpm.parameters / 1e6:.1f}M-parameter UNet for {ddpm.train_seconds:.0f} s; draw with "
              f"`python -m helpers generate --model cifar-ddpm \"a photo of a cat\"`, measure with "
              f"`python -m helpers evaluate --model cifar-ddpm`")
    elif args.model == "sketch-cvae":
        from helpers.sketch import train_sketch_cvae

        sketch = train_sketch_cvae(cfg, out, epochs=args.epochs, resume=args.resume, gif_path=args.gif,
                                   text_encoder=args.text_encoder, num_workers=args.workers,
                                   persistent_workers=args.workers > 0)
        print(f"trained for {sketch.train_seconds:.0f} s with {sketch.extra['text_encoder']} text embeddings; held-out "
              f"reconstruction BCE {sketch.history[-1]['heldout_bce']:.1f} per sketch; draw with `python -m helpers "
              f"generate --model sketch-cvae --prompt \"a sketch of a cat\"`")
    elif args.model == "doodle-judge":
        from helpers.sketch import train_doodle_judge

        _, accuracy = train_doodle_judge(cfg, out=out, epochs=args.epochs, progress=True)
        print(f"judge accuracy on held-out doodles: {accuracy:.2%}")
    elif args.model == "cifar-judge":
        from helpers.cifar_judge import train_cifar_judge

        _, accuracy = train_cifar_judge(cfg, out=out, epochs=args.epochs, progress=True)
        print(f"judge accuracy on held-out CIFAR-10 images: {accuracy:.2%}")
    elif args.model == "face-judge":
        from helpers.faces import reliable, train_face_judge

        _, accuracy = train_face_judge(cfg, out, epochs=args.epochs, progress=True)
        print(f"held-out balanced accuracy, mean of 40 attributes: {sum(accuracy.values()) / len(accuracy):.3f}; "
              f"reliable (>= 0.8): {', '.join(reliable(accuracy)) or 'none'}")
    else:
        from helpers.digit_judge import train_judge

        _, accuracy = train_judge(cfg, out, epochs=args.epochs, progress=True)
        print(f"judge accuracy on held-out digits: {accuracy:.2%}")
    print(f"checkpoint: {out / 'checkpoint.json'}")
    if args.model not in ("judge", "clip", "face-judge", "cifar-judge", "ldm-autoencoder", "doodle-judge"):
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

    cfg = _config(args)
    if args.prompt_option is not None:
        if args.prompt is not None:
            raise CourseError("give the prompt once: either positional or --prompt")
        args.prompt = args.prompt_option
    if args.n < 1 or args.n > 1024:
        raise CourseError(f"--n must be between 1 and 1024, got {args.n}")
    checkpoint = _run_dir(cfg, args)
    out = Path(args.out) if args.out else cfg.outputs_dir
    scale = 4
    if args.model in FACE_MODELS:
        from helpers.faces import PromptToFace, read_prompt

        if args.prompt is None:
            raise CourseError(f'{args.model} needs a prompt, e.g. python -m helpers generate --model {args.model} '
                              '"a smiling man with eyeglasses"')
        read_prompt(args.prompt)  # cheap checks before loading anything
        face = PromptToFace.from_checkpoint(checkpoint, cfg)
        images, wanted = face(args.prompt, n=args.n, seed=args.seed)
        images, scale = (images + 1) / 2, 2
        stem = f"{face.name}_{_slug(args.prompt)}_seed{args.seed}"
        print(f"read {args.prompt!r} as: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in wanted.items()))
    elif args.model == "sketch-cvae":
        from helpers.checkpoint import read_index
        from helpers.sketch import KIND, TextToSketch, check_sketch_prompt

        if args.prompt is None:
            raise CourseError('sketch-cvae needs a prompt, e.g. python -m helpers generate --model sketch-cvae '
                              '--prompt "a sketch of a cat"')
        check_sketch_prompt(args.prompt)
        read_index(checkpoint, KIND)
        sketch = TextToSketch.from_checkpoint(checkpoint, cfg)
        images, scale = 1 - sketch(args.prompt, n=args.n, seed=args.seed), 1
        stem = f"sketch_{_slug(args.prompt)}_seed{args.seed}"
    elif args.model == "ldm":
        from helpers.checkpoint import read_index
        from helpers.ldm import KIND, TextToFace

        if args.prompt is None or not args.prompt.strip():
            raise CourseError('ldm needs a prompt describing a face, e.g. python -m helpers generate --model ldm '
                              '"a smiling woman with blond hair"')
        read_index(checkpoint, KIND)  # fail on a missing checkpoint before loading anything else
        ldm = TextToFace.from_checkpoint(checkpoint, cfg)
        images = ldm(args.prompt, n=args.n, guidance=args.guidance, steps=args.steps, sampler=args.sampler,
                     seed=args.seed, progress=True)
        images, scale = (images + 1) / 2, 2
        stem = f"ldm_{_slug(args.prompt)}_{_sampling_tag(args)}"
    elif args.model == "cifar-ddpm":
        from helpers.cifar import KIND, ClassToImage
        from helpers.data.cifar10 import CIFAR10_CLASSES
        from helpers.checkpoint import read_index

        if args.prompt is None:
            raise CourseError('cifar-ddpm needs a prompt naming a CIFAR-10 class, e.g. python -m helpers generate '
                              '--model cifar-ddpm "a photo of a cat"')
        read_index(checkpoint, KIND)  # fail on a missing checkpoint before loading the text encoder
        ddpm = ClassToImage.from_checkpoint(checkpoint, cfg.device)
        images, label = ddpm(args.prompt, n=args.n, guidance=args.guidance, steps=args.steps, sampler=args.sampler,
                             seed=args.seed, progress=True)
        images, scale = (images + 1) / 2, 4
        stem = f"cifar_{CIFAR10_CLASSES[label]}_{_sampling_tag(args)}"
        print(f"read {args.prompt!r} as the class {CIFAR10_CLASSES[label]}")
    elif args.model == "text-cvae":
        from helpers.checkpoint import read_index
        from helpers.digits import DIGIT_EXAMPLE, TextToDigit
        from helpers.text.prompts import check_prompt

        if args.prompt is None:
            raise CourseError('text-cvae needs a prompt, e.g. python -m helpers generate "Print number 5"')
        check_prompt(args.prompt, DIGIT_EXAMPLE)  # cheap checks before loading anything
        read_index(checkpoint, "text-cvae")  # fail on a missing checkpoint before loading the text encoder
        generator = TextToDigit.from_checkpoint(checkpoint, cfg)
        images, digit = generator(args.prompt, n=args.n, seed=args.seed)
        stem = f"{_slug(args.prompt)}_seed{args.seed}"
        print(f"read {args.prompt!r} as the digit {digit}")
    else:
        import torch

        from helpers.digits import load_vae

        if args.prompt is not None:
            raise CourseError("the vae is unconditional: drop the prompt, or use --model text-cvae")
        model = load_vae(checkpoint, cfg.device)
        images = model.sample(args.n, generator=torch.Generator().manual_seed(args.seed)).cpu()
        stem = f"vae_seed{args.seed}"
    paths, grid = _save_samples(images, out, stem, nrow=min(8, args.n), scale=scale)
    print(f"wrote {len(paths)} samples to {out}/ ({paths[0].name} ...) and the grid {grid}")


def cmd_reconstruct(args) -> None:
    import torch

    from helpers.digits import digit_data, load_vae
    from helpers.viz import image_grid, save_image

    cfg = _config(args)
    if args.model == "sketch-cvae":
        from helpers.sketch import TextToSketch, sketch_data

        sketch = TextToSketch.from_checkpoint(Path(args.checkpoint) if args.checkpoint else cfg.run_dir(args.model), cfg)
        data = sketch_data(cfg)
        originals = data.test_images[: args.n]
        recon = sketch.reconstruct(originals, data.test_captions[: args.n])
        path = save_image(image_grid(1 - torch.cat([originals.float() / 255, recon]), nrow=args.n, scale=1),
                          Path(args.out or cfg.outputs_dir) / "sketch_reconstructions.png")
        print(f"top row: held-out sketches ({data.source}), bottom row: reconstructions -> {path}")
        return
    if args.model == "ldm-autoencoder":
        from helpers.clip import face_data
        from helpers.ldm import load_autoencoder, reconstruction_grid, reconstruction_psnr

        autoencoder = load_autoencoder(Path(args.checkpoint) if args.checkpoint else cfg.run_dir(args.model), cfg.device)
        faces = face_data(cfg)
        path = save_image(reconstruction_grid(autoencoder, faces.test_images[: args.n]),
                          Path(args.out or cfg.outputs_dir) / "ldm_autoencoder_reconstructions.png")
        print(f"held-out PSNR {reconstruction_psnr(autoencoder, faces.test_images):.2f} dB over "
              f"{len(faces.test_images)} faces ({faces.source}); top row faces, bottom row decoded -> {path}")
        return
    checkpoint = Path(args.checkpoint) if args.checkpoint else cfg.run_dir("vae")
    model = load_vae(checkpoint, cfg.device)
    data = digit_data(cfg)
    originals = data.heldout_images[: args.n]
    with torch.no_grad():
        mu, _ = model.encode(originals.to(cfg.device))
        recon = torch.sigmoid(model.decode(mu)).cpu()
    path = save_image(image_grid(torch.cat([originals, recon]), nrow=args.n, scale=4),
                      Path(args.out or cfg.outputs_dir) / "vae_reconstructions.png")
    print(f"top row: held-out digits, bottom row: reconstructions -> {path}")


def cmd_evaluate(args) -> None:
    from helpers import digits
    from helpers.data.prompts import digit_prompts

    cfg = _config(args)
    checkpoint = _run_dir(cfg, args)
    if args.model in FACE_MODELS:
        from helpers import faces
        from helpers.clip import face_data, load_clip

        face = faces.PromptToFace.from_checkpoint(checkpoint, cfg)
        data = face_data(cfg)
        clip = face.condition.encoder if face.condition.name == "clip" else load_clip(cfg)
        judge, accuracy = faces.load_or_train_face_judge(cfg, data)
        print(f"judge: {len(faces.reliable(accuracy))} attributes with held-out balanced accuracy >= "
              f"{faces.JUDGE_MIN}: {', '.join(faces.reliable(accuracy))}")
        rows = {"real held-out faces": faces.real_reference(judge, accuracy, clip, data, seed=cfg.seed),
                face.name: faces.evaluate_faces(face, judge, accuracy, clip, data, seed=cfg.seed, inception=True)}
        print(faces.comparison_table(rows))
        if "inception_skipped" in rows[face.name]:
            print(f"standard FID skipped: {rows[face.name]['inception_skipped']}")
        else:
            print(f"standard FID (torchmetrics, FID-Inception weights, {rows[face.name]['inception_n']} faces): "
                  f"{rows[face.name]['inception_fid']:.2f}")
        return
    if args.model == "sketch-cvae":
        from helpers import sketch as sketches

        model = sketches.TextToSketch.from_checkpoint(checkpoint, cfg)
        data = sketches.sketch_data(cfg)
        judge, judge_accuracy = sketches.load_or_train_doodle_judge(cfg, data)
        result = sketches.evaluate_sketches(model, judge, data, seed=args.seed)
        print(f"judge accuracy on held-out real doodles: {judge_accuracy:.2%}")
        print(f"judged class accuracy of {result['n']} generated sketches: {result['class_accuracy']:.1%} ("
              + ", ".join(f"{c} {v:.0%}" for c, v in result["per_class"].items()) + ")")
        print(f"held-out reconstruction BCE: {result['heldout_bce']:.1f} per sketch "
              f"({result['bce_per_pixel']:.4f} per pixel)")
        return
    if args.model == "ldm":
        from helpers import faces, ldm
        from helpers.clip import face_data

        model = ldm.TextToFace.from_checkpoint(checkpoint, cfg)
        data = face_data(cfg)
        judge, accuracy = faces.load_or_train_face_judge(cfg, data)
        judged = faces.reliable(accuracy)
        real = ldm.real_attribute_rates(judge, judged, data)
        print(f"judge reads {len(judged)} attributes reliably; real held-out faces show the single-attribute "
              f"prompts' attributes {sum(real.values()) / max(len(real), 1):.1%} of the time (unprompted rate)")
        for guidance in sorted({1.0, args.guidance}):
            result = ldm.attribute_accuracy(model, judge, judged, guidance=guidance, steps=args.steps,
                                            sampler=args.sampler, seed=args.seed)
            print(f"{result['sampler']}, guidance {guidance:g}: prompted-attribute accuracy "
                  f"{result['attribute_accuracy']:.1%} ({result['n']} faces, {result['ms_per_image']:.0f} ms/face); "
                  + ", ".join(f"{p.replace('a photo of ', '')} {v:.0%}" for p, v in result["per_prompt"].items()))
        fid = ldm.sample_fid(model, model.clip, data, guidance=args.guidance, steps=args.steps, sampler=args.sampler,
                             seed=args.seed)
        print(f"FID on our CLIP's image features ({fid['n']} faces from held-out captions): {fid['fid_clip']:.2f}")
        return
    if args.model == "cifar-ddpm":
        from helpers import cifar
        from helpers.cifar_judge import load_or_train_cifar_judge

        ddpm = cifar.ClassToImage.from_checkpoint(checkpoint, cfg.device)
        data = cifar.cifar_data(cfg, ddpm.image_size)
        if ddpm.extra.get("data") != data.source:
            print(f"note: trained on {ddpm.extra.get('data')}, measured against {data.source}")
        judge, judge_accuracy = load_or_train_cifar_judge(cfg, data)
        print(f"judge accuracy on held-out images ({data.source}): {judge_accuracy:.2%}")
        real = cifar.real_reference(judge, data)
        print(f"real images:  judged class accuracy {real['class_accuracy']:.2%}, FID (judge features) "
              f"{real['fid_own']:.2f}")
        # quick: 20 samples per class with the 20-step solver, well under a minute on a CPU; full: the 10,000
        # samples the standard FID wants (FID is biased upwards at small N), which a GPU draws in seconds
        result = cifar.evaluate_ddpm(ddpm, judge, data, per_class=20 if cfg.quick else cfg.samples(1000),
                                     guidance=args.guidance,
                                     steps=args.steps, sampler=args.sampler, seed=args.seed, inception=True)
        print(f"{result['sampler']}, guidance {result['guidance']:g}, {result['n']} samples: judged class accuracy "
              f"{result['class_accuracy']:.2%}, FID (judge features) {result['fid_own']:.2f}, "
              f"KID {result['kid_own'][0]:.4f} ± {result['kid_own'][1]:.4f}, {result['ms_per_image']:.0f} ms/image")
        print("per class: " + " ".join(f"{c}:{v:.0%}" for c, v in result["per_class"].items()))
        if result.get("fid_inception") is None:
            print(f"standard FID skipped: {result.get('fid_inception_skipped')}")
        else:
            print(f"standard FID (torchmetrics, FID-Inception weights, {result['fid_inception_n']} samples): "
                  f"{result['fid_inception']:.2f}")
        return
    if args.model == "clip":
        from helpers.clip import evaluate_clip, face_data, load_clip

        encoder = load_clip(cfg, checkpoint)
        faces = face_data(cfg)
        scores = evaluate_clip(encoder, faces.test_images, faces.test_attrs)
        print(f"held-out faces: {len(faces.test_images)} ({faces.source}); chance R@10 {scores['chance_at_10']:.3f}")
        for direction in ("text_to_image", "image_to_text"):
            print(f"{direction:14s} " + "  ".join(f"R@{k} {v:.3f}" for k, v in scores[direction].items()))
        ranked = sorted(scores["zero_shot"].items(), key=lambda kv: -kv[1])
        print("zero-shot balanced accuracy: " + ", ".join(f"{a} {v:.2f}" for a, v in ranked))
        print(f"zero-shot mean over 40 attributes: {scores['zero_shot_mean']:.3f}")
        return
    if args.model == "vae":
        model = digits.load_vae(checkpoint, cfg.device)
        result = digits.vae_test_loss(model, digits.digit_data(cfg).heldout_images)
        print(f"held-out loss (BCE-sum + KL per image): {result['test_loss']:.2f} "
              f"(recon {result['test_recon']:.2f}, KL {result['test_kl']:.2f})")
        return
    from helpers.digit_judge import load_or_train_judge, prompt_accuracy

    generator = digits.TextToDigit.from_checkpoint(checkpoint, cfg)
    judge, judge_accuracy = load_or_train_judge(cfg)
    print(f"judge accuracy on held-out real digits: {judge_accuracy:.2%}")
    for split in ("train", "heldout"):
        result = prompt_accuracy(generator, judge, digit_prompts(split))
        per_digit = " ".join(f"{d}:{v:.0%}" for d, v in result["per_digit"].items())
        print(f"prompt accuracy, {split} templates: {result['accuracy']:.2%} of {result['n_images']} images ({per_digit})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model into a run folder")
    train.add_argument("model", choices=TRAINABLE)
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
    train.set_defaults(func=cmd_train)

    generate = sub.add_parser("generate", help="generate digits, faces or CIFAR-10 images from a prompt")
    generate.add_argument("prompt", nargs="?", help='e.g. "Print number 5" or "a smiling man with eyeglasses" '
                                                    '(omit for --model vae)')
    generate.add_argument("--prompt", dest="prompt_option", help="the prompt, as an option (same as the positional)")
    generate.add_argument("--model", choices=GENERATORS, default="text-cvae")
    generate.add_argument("--checkpoint", help="run folder (default: runs/<model>)")
    generate.add_argument("--n", type=int, default=16, help="number of samples")
    generate.add_argument("--out", help="output folder (default: outputs/)")
    generate.set_defaults(func=cmd_generate)

    reconstruct = sub.add_parser("reconstruct", help="encode and decode held-out digits with the VAE")
    reconstruct.add_argument("--model", choices=("vae", "ldm-autoencoder", "sketch-cvae"), default="vae")
    reconstruct.add_argument("--checkpoint", help="run folder (default: runs/<model>)")
    reconstruct.add_argument("--n", type=int, default=8)
    reconstruct.add_argument("--out", help="output folder (default: outputs/)")
    reconstruct.set_defaults(func=cmd_reconstruct)

    evaluate = sub.add_parser("evaluate", help="measure a trained model (test loss or prompt accuracy)")
    evaluate.add_argument("--model", choices=EVALUABLE, default="text-cvae")
    evaluate.add_argument("--checkpoint", help="run folder (default: runs/<model>)")
    evaluate.set_defaults(func=cmd_evaluate)

    for command in (generate, evaluate):
        command.add_argument("--guidance", type=float, default=3.0,
                             help="ldm, cifar-ddpm: classifier-free guidance scale (0 unconditional, 1 none, 3 default)")
        command.add_argument("--steps", type=int, default=20,
                             help="ldm, cifar-ddpm: sampling steps (20 for dpm++2m, 50 for ddim, 1000 for ddpm)")
        command.add_argument("--sampler", choices=SAMPLERS, default="dpm++2m",
                             help="ldm, cifar-ddpm: DPM-Solver++(2M) (fast), DDIM, or DDPM (the 1,000-step original)")
        command.add_argument("--condition", choices=("attributes", "clip"), default="attributes",
                             help="which celeba-cvae/celeba-gan run: attribute- or CLIP-conditioned")
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
