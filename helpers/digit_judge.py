"""Judging generated images with numbers (notebooks 01-02): a digit-judge CNN and prompt accuracy.

The judge is a small CNN trained on the *training* split of the real digits; its accuracy on the held-out
split is printed next to every score it gives, so a reader knows how far to trust it.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from helpers.checkpoint import load_or_train, read_checkpoint
from helpers.config import CourseConfig, Recipe, seed_everything
from helpers.data.prompts import PromptSet
from helpers.digits import TextToDigit, digit_data
from helpers.metrics import PooledPixelBaseline, format_accuracy, judge_line
from helpers.models.judge import DigitJudge, DigitJudgeConfig
from helpers.registry import ModelKind
from helpers.train import Checkpointing, Evaluate, ProgressBar, Trainer


def train_judge(cfg: CourseConfig, out: str | Path | None = None, *, epochs: int | None = None,
                progress: bool = False) -> tuple[DigitJudge, float]:
    """Train the digit judge on the training split (light augmentation); returns it and its held-out accuracy."""
    recipe = cfg.recipe("judge", epochs=epochs)
    out = Path(out or cfg.run_dir("judge"))
    data = digit_data(cfg)
    seed_everything(cfg.seed)
    model = DigitJudge(DigitJudgeConfig(width=recipe.width))

    def loss_fn(trainer: Trainer, batch) -> dict[str, torch.Tensor]:
        images, labels = batch
        # Small random shifts: generated digits are not centred exactly like MNIST's.
        shift = torch.randint(-2, 3, (2,)).tolist()
        images = torch.roll(images, shifts=shift, dims=(2, 3))
        return {"loss": F.cross_entropy(trainer.model(images), labels)}

    callbacks = [Evaluate(lambda m: {"heldout_accuracy": judge_accuracy(m, data.heldout_images, data.heldout_labels)}),
                 Checkpointing(out, "judge", extra={"mode": cfg.mode, "data": data.source})]
    if progress:
        callbacks.append(ProgressBar())
    trainer = Trainer(model, loss_fn, data.train_set(), epochs=recipe.epochs, batch_size=recipe.batch_size,
                      lr=recipe.lr, device=cfg.device, callbacks=callbacks, seed=cfg.seed)
    history = trainer.fit()
    return model.eval(), history[-1]["heldout_accuracy"]


@torch.no_grad()
def judge_digits(judge: DigitJudge, images: torch.Tensor) -> torch.Tensor:
    """Predicted digit of every image (B, 1, 28, 28) -> (B,)."""
    device = next(judge.parameters()).device
    judge.eval()
    return torch.cat([judge(images[i:i + 500].to(device)).argmax(1).cpu() for i in range(0, len(images), 500)])


def judge_accuracy(judge: DigitJudge, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((judge_digits(judge, images) == labels.cpu()).float().mean())


def load_or_train_judge(cfg: CourseConfig, out: str | Path | None = None) -> tuple[DigitJudge, float]:
    """Reuse the judge in `out` (default runs/judge) if it was trained on the same data, else train it."""
    out = Path(out or cfg.run_dir("judge"))

    def load(run_dir: Path) -> tuple[DigitJudge, float]:
        checkpoint = read_checkpoint(run_dir, "judge")
        judge = checkpoint.rebuild(DigitJudge).to(cfg.device)
        return judge, checkpoint.index["extra"]["history"][-1]["heldout_accuracy"]

    return load_or_train(out, "judge", mode=cfg.mode, source=digit_data(cfg).source, load=load,
                         train=lambda: train_judge(cfg, out))


def pixel_baseline(cfg: CourseConfig) -> PooledPixelBaseline:
    """The trivial baseline printed beside the judge: a classifier on a digit's 4x4 mean pixels (16 numbers), fitted
    on the training digits in a second or two."""
    data = digit_data(cfg)
    return PooledPixelBaseline(data.train_images, data.train_labels)


def judge_report(cfg: CourseConfig, judge_accuracy: float, baseline: PooledPixelBaseline) -> str:
    """"judge reads 98.0% (n=1,000, 95% CI ...) of held-out real digits; a 4x4 mean-pixel classifier reads 70.0%"."""
    data = digit_data(cfg)
    return judge_line(judge_accuracy, len(data.heldout_labels), "held-out real digits", baseline.name,
                      baseline.accuracy(data.heldout_images, data.heldout_labels))


@torch.no_grad()
def prompt_accuracy(generator: TextToDigit, judge: DigitJudge, prompts: PromptSet, samples_per_prompt: int = 10,
                    seed: int = 0, baseline: PooledPixelBaseline | None = None) -> dict:
    """Fraction of generated images the judge reads as the requested digit, overall and per digit, and the number of
    images; with a `baseline` (`pixel_baseline`), the share of the same images it reads as the requested digit."""
    embeddings = generator.bank.embed(list(prompts.prompts))  # (P, 384)
    wanted = torch.tensor(prompts.digits).repeat_interleave(samples_per_prompt)
    z = torch.randn(len(wanted), generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    conditions = embeddings.repeat_interleave(samples_per_prompt, 0)  # (P * samples, 384)
    images = torch.cat([generator.for_embeddings(conditions[i:i + 2000], z[i:i + 2000])
                        for i in range(0, len(wanted), 2000)])
    judged = judge_digits(judge, images)
    correct = (judged == wanted).float()
    per_digit = {d: float(correct[wanted == d].mean()) for d in range(10)}
    result = {"accuracy": float(correct.mean()), "per_digit": per_digit, "n_images": len(wanted)}
    if baseline is not None:
        result["baseline_accuracy"] = baseline.accuracy(images, wanted)
    return result


def prompt_accuracy_line(split: str, result: dict, baseline: PooledPixelBaseline) -> str:
    """"prompt accuracy, heldout phrasings: 91.0% (n=2,000, 95% CI ...); the 4x4 mean-pixel classifier reads 60.1%"."""
    return (f"prompt accuracy, {split} phrasings: {format_accuracy(result['accuracy'], result['n_images'])}; "
            f"the {baseline.name} reads {result['baseline_accuracy']:.1%} of them (chance 10%)")


def _cli_train_judge(cfg: CourseConfig, out: Path, options) -> None:
    _, accuracy = train_judge(cfg, out, epochs=options.epochs, progress=True)
    print(judge_report(cfg, accuracy, pixel_baseline(cfg)))


# Training settings of each model in each mode (`cfg.recipe(name)` reads them; see helpers.config.Recipe).
RECIPES: dict[str, dict[str, Recipe]] = {
    "judge": {
        "quick": Recipe(epochs=12, batch_size=64, lr=2e-3, width=32, latent_dim=0),
        "full": Recipe(epochs=4, batch_size=128, lr=2e-3, width=32, latent_dim=0),
    },
}


KINDS = (ModelKind("judge", "02", "the digit classifier that judges generated digits", train=_cli_train_judge),)
