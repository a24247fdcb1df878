"""The MNIST track of notebooks 01-02, above models and the training loop: what the CLI and notebooks call.

- `train_vae`, `train_text_cvae`: data + model + Trainer + callbacks for one run folder.
- `PromptBank`: the embeddings of every training phrasing, and `interpret` which refuses prompts that
  name no digit or several, judged by `PromptReader`, a small classifier on the prompt's embedding.
- `TextToDigit`: prompt -> images, the object behind `python -m helpers generate` and the widget.
"""
from __future__ import annotations

import functools
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from helpers.checkpoint import read_checkpoint
from helpers.config import CourseConfig, Recipe, seed_everything
from helpers.data.mnist import DigitSplits, load_mnist
from helpers.data.prompts import DIGIT_WORDS, PromptSet, digit_prompts, refusal_prompts
from helpers.errors import CourseError
from helpers.text.prompts import check_prompt
from helpers.models.cvae import TextCVAE, TextCVAEConfig, text_cvae_loss
from helpers.models.vae import ConvVAE, ConvVAEConfig, elbo_loss
from helpers.registry import ModelKind, Samples, slug
from helpers.text.encoders import TextEncoder, cached_embeddings, load_text_encoder
from helpers.train import Checkpointing, Evaluate, GifFrames, KLAnnealing, ProgressBar, Trainer
from helpers.viz import image_grid

AUX_WEIGHT = 1.0  # weight of the digit-from-condition cross-entropy (notebook 02, "why the decoder ignores text")
GIF_PROMPT = "Print number {}"  # the fixed prompt of the training GIF, filled with each digit's word
GIF_SEEDS = 6


@functools.lru_cache(maxsize=4)
def _cached_digits(cfg: CourseConfig) -> DigitSplits:
    return load_mnist(cfg)


def digit_data(cfg: CourseConfig) -> DigitSplits:
    """MNIST splits for this mode, loaded once per process."""
    return _cached_digits(cfg)


# ----------------------------------------------------------------------------------------------- VAE
@torch.no_grad()
def vae_test_loss(model: ConvVAE, images: torch.Tensor) -> dict[str, float]:
    """Negative ELBO per held-out image (BCE summed over pixels + KL), with one z sample per image."""
    device = next(model.parameters()).device
    totals = {"recon": 0.0, "kl": 0.0}
    for start in range(0, len(images), 500):
        batch = images[start:start + 500].to(device)
        logits, mu, logvar = model(batch)
        terms = elbo_loss(logits, batch, mu, logvar)
        for key in totals:
            totals[key] += float(terms[key]) * len(batch)
    recon, kl = totals["recon"] / len(images), totals["kl"] / len(images)
    return {"test_loss": recon + kl, "test_recon": recon, "test_kl": kl}


def vae_loss_fn(trainer: Trainer, batch) -> dict[str, torch.Tensor]:
    images, _ = batch
    logits, mu, logvar = trainer.model(images)
    return elbo_loss(logits, images, mu, logvar, trainer.kl_weight)


def train_vae(cfg: CourseConfig, out: str | Path | None = None, *, epochs: int | None = None,
              time_budget: float | str | None = None,
              latent_dim: int | None = None, resume: bool = False, gif_path: str | Path | None = None,
              progress: bool = True, recipe_name: str = "vae") -> Trainer:
    """Train the conv VAE of notebook 01 into `out` (default runs/<recipe_name>); returns the finished Trainer.

    recipe_name "vae-2d" is the 2-D latent VAE of the latent map."""
    recipe = cfg.recipe(recipe_name, epochs=epochs, latent_dim=latent_dim)
    out = Path(out or cfg.run_dir(recipe_name))
    data = digit_data(cfg)
    seed_everything(cfg.seed)
    model = ConvVAE(ConvVAEConfig(latent_dim=recipe.latent_dim, width=recipe.width))
    fixed_z = torch.randn(64, recipe.latent_dim, generator=torch.Generator().manual_seed(1234))

    def render(model: ConvVAE) -> torch.Tensor:
        return image_grid(torch.sigmoid(model.decode(fixed_z.to(next(model.parameters()).device))), nrow=8)

    callbacks = [
        Evaluate(lambda model: vae_test_loss(model, data.heldout_images)),
        GifFrames(render, out / "frames", gif_path or out / "training.gif", every=recipe.gif_every),
        Checkpointing(out, "vae", resume=resume, extra={"mode": cfg.mode, "recipe": asdict(recipe), "data": data.source}),
    ]
    if progress:
        callbacks.append(ProgressBar(("loss", "recon", "kl")))
    trainer = Trainer(model, vae_loss_fn, data.train_set(), epochs=recipe.epochs, batch_size=recipe.batch_size,
                      lr=recipe.lr, device=cfg.device, callbacks=callbacks, seed=cfg.seed, time_budget=time_budget)
    trainer.fit()
    return trainer


def load_vae(run_dir: str | Path, device: torch.device | str = "cpu") -> ConvVAE:
    checkpoint = read_checkpoint(run_dir, "vae")
    return checkpoint.rebuild(ConvVAE).to(device)


# ------------------------------------------------------------------------------------- prompts -> text
DIGIT_EXAMPLE = 'ask for a digit, e.g. "Print number 5"'  # what an empty prompt is told to write


class PromptBank:
    """Every training phrasing of every digit, embedded once (and cached on disk)."""

    def __init__(self, encoder: TextEncoder, cache_dir: str | Path, prompts: PromptSet | None = None):
        self.encoder = encoder
        self.prompts = prompts or digit_prompts("train")
        self.cache_dir = Path(cache_dir)
        self.embeddings = cached_embeddings(encoder, self.prompts.prompts, self.cache_dir)  # (P, 384)
        self.digits = torch.tensor(self.prompts.digits)  # (P,)
        self.by_digit = [torch.nonzero(self.digits == d).squeeze(1) for d in range(10)]

    def embed(self, prompts: list[str]) -> torch.Tensor:
        return self.encoder.encode(prompts)

    def random_for(self, labels: torch.Tensor) -> torch.Tensor:
        """One random training phrasing per label (uses the global torch RNG, saved in checkpoints)."""
        labels = labels.cpu()
        counts = torch.tensor([len(ix) for ix in self.by_digit])
        picks = (torch.rand(len(labels)) * counts[labels]).long()
        rows = torch.stack([self.by_digit[int(d)][int(p)] for d, p in zip(labels, picks)])
        return self.embeddings[rows]

    def interpret(self, prompt: str) -> tuple[int, torch.Tensor]:
        """The digit a prompt asks for and its embedding (1, 384); CourseError if it names none or several."""
        check_prompt(prompt, DIGIT_EXAMPLE)
        embedding = self.embed([prompt.strip()])
        verdict = int(self.reader.classify(embedding)[0])
        if verdict == NO_DIGIT:
            raise CourseError(f"{prompt!r} does not ask for a digit; this model draws the digits 0-9, "
                              'e.g. "Print number 5" or "Can you show me what seven looks like?"')
        if verdict == SEVERAL_DIGITS:
            raise CourseError(f"{prompt!r} is ambiguous: it names more than one digit; ask for one digit at a time, "
                              'e.g. "Print number 5"')
        return verdict, embedding

    @functools.cached_property
    def reader(self) -> "PromptReader":
        return PromptReader.fit(self)


NO_DIGIT, SEVERAL_DIGITS = 10, 11  # the two extra answers of the prompt reader besides the digits 0-9


class PromptReader(torch.nn.Module):
    """Reads a prompt embedding as one of: digit 0-9, no digit (10), several digits (11).

    No keyword rules: a small classifier on the frozen sentence embedding, fitted in a second on the
    training phrasings of the digits, the same templates filled with things that are not digits
    ("Draw a cat"), off-topic sentences, and pairs of digits ("3 or 4"). It is checked on held-out
    templates, things and pairs (tests/test_prompts.py, notebook 02).
    """

    def __init__(self, text_dim: int, text_mean: torch.Tensor):
        super().__init__()
        self.register_buffer("text_mean", text_mean.clone())
        self.net = torch.nn.Sequential(torch.nn.Linear(text_dim, 128), torch.nn.SiLU(), torch.nn.Linear(128, 12))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.net(embeddings - self.text_mean)  # (B, 12) logits

    @torch.no_grad()
    def classify(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self(embeddings.to(self.text_mean.device)).argmax(1).cpu()

    @classmethod
    def fit(cls, bank: "PromptBank", steps: int = 300, seed: int = 0) -> "PromptReader":
        none, several = refusal_prompts("train", seed)
        refusals = cached_embeddings(bank.encoder, none + several, bank.cache_dir)
        inputs = torch.cat([bank.embeddings, refusals])
        targets = torch.cat([bank.digits, torch.full((len(none),), NO_DIGIT), torch.full((len(several),), SEVERAL_DIGITS)])
        # Weight the classes equally: there are fewer refusal examples per class than digit phrasings overall.
        weights = 1.0 / torch.bincount(targets, minlength=12).float()
        generator_state = torch.get_rng_state()
        torch.manual_seed(seed)
        reader = cls(inputs.shape[1], bank.embeddings.mean(0))
        optimizer = torch.optim.Adam(reader.parameters(), lr=3e-3, weight_decay=1e-4)
        with torch.enable_grad():  # may be first called from inside a no_grad generation call
            for _ in range(steps):
                loss = F.cross_entropy(reader(inputs), targets, weight=weights * len(weights) / weights.sum())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        torch.set_rng_state(generator_state)  # fitting the reader must not change what training samples next
        return reader.eval()


def prompt_bank(cfg: CourseConfig) -> PromptBank:
    return PromptBank(load_text_encoder("minilm"), cfg.data_root / "cache")


# --------------------------------------------------------------------------------------- text CVAE
def text_cvae_loss_fn(bank: PromptBank, aux_weight: float):
    def loss_fn(trainer: Trainer, batch) -> dict[str, torch.Tensor]:
        images, labels = batch
        text = bank.random_for(labels).to(images.device)  # (B, 384): a random training phrasing of each label
        return text_cvae_loss(trainer.model, images, text, labels, trainer.kl_weight, aux_weight)
    return loss_fn


def gif_prompts() -> list[str]:
    return [GIF_PROMPT.format(word) for word in DIGIT_WORDS]


def train_text_cvae(cfg: CourseConfig, out: str | Path | None = None, *, epochs: int | None = None,
                    time_budget: float | str | None = None,
                    resume: bool = False, gif_path: str | Path | None = None, progress: bool = True,
                    aux_weight: float = AUX_WEIGHT, kl_warmup_epochs: int | None = None,
                    latent_dim: int | None = None, bank: PromptBank | None = None) -> Trainer:
    """Train the text-prompted CVAE of notebook 02 into `out` (default runs/text-cvae)."""
    recipe = cfg.recipe("text-cvae", epochs=epochs, kl_warmup_epochs=kl_warmup_epochs, latent_dim=latent_dim)
    out = Path(out or cfg.run_dir("text-cvae"))
    data = digit_data(cfg)
    bank = bank or prompt_bank(cfg)
    seed_everything(cfg.seed)
    model = TextCVAE(TextCVAEConfig(text_dim=bank.embeddings.shape[1], latent_dim=recipe.latent_dim, width=recipe.width))
    model.set_text_statistics(bank.embeddings)
    gif_text = bank.embed(gif_prompts()).repeat_interleave(GIF_SEEDS, 0)  # (10*seeds, 384), digit-major
    gif_z = torch.randn(GIF_SEEDS, recipe.latent_dim, generator=torch.Generator().manual_seed(1234)).repeat(10, 1)

    def render(model: TextCVAE) -> torch.Tensor:
        device = next(model.parameters()).device
        images = model.generate(gif_text.to(device), gif_z.to(device))  # (60, 1, 28, 28), digit-major
        by_seed = images.view(10, GIF_SEEDS, *images.shape[1:]).transpose(0, 1).reshape_as(images)
        return image_grid(by_seed, nrow=10)  # one column per digit, one row per seed

    callbacks = [
        KLAnnealing(recipe.kl_warmup_epochs),
        GifFrames(render, out / "frames", gif_path or out / "training.gif", every=recipe.gif_every),
        Checkpointing(out, "text-cvae", resume=resume,
                      extra={"mode": cfg.mode, "recipe": asdict(recipe), "data": data.source,
                             "text_encoder": bank.encoder.name, "aux_weight": aux_weight}),
    ]
    if progress:
        callbacks.append(ProgressBar(("loss", "recon", "kl", "aux")))
    trainer = Trainer(model, text_cvae_loss_fn(bank, aux_weight), data.train_set(), epochs=recipe.epochs,
                      batch_size=recipe.batch_size, lr=recipe.lr, device=cfg.device, callbacks=callbacks, seed=cfg.seed,
                      time_budget=time_budget)
    trainer.fit()
    return trainer


class TextToDigit:
    """Prompt -> digit images: checks the prompt, embeds it, samples z, decodes."""

    def __init__(self, model: TextCVAE, bank: PromptBank):
        self.model, self.bank = model.eval(), bank

    @classmethod
    def from_checkpoint(cls, run_dir: str | Path, cfg: CourseConfig, bank: PromptBank | None = None) -> "TextToDigit":
        checkpoint = read_checkpoint(run_dir, "text-cvae")
        model = checkpoint.rebuild(TextCVAE).to(cfg.device)
        return cls(model, bank or prompt_bank(cfg))

    @property
    def latent_dim(self) -> int:
        return self.model.config.latent_dim

    def latents(self, n: int, seed: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def __call__(self, prompt: str, n: int = 16, seed: int = 0, z: torch.Tensor | None = None,
                 check: bool = True) -> tuple[torch.Tensor, int]:
        """(n, 1, 28, 28) images in [0, 1] and the digit the prompt was read as."""
        if n < 1:
            raise CourseError(f"n must be at least 1, got {n}")
        if check:
            digit, embedding = self.bank.interpret(prompt)
        else:
            embedding = self.bank.embed([prompt])
            digit = int(self.bank.reader.classify(embedding)[0])
        z = self.latents(n, seed) if z is None else z
        device = next(self.model.parameters()).device
        return self.model.generate(embedding.expand(len(z), -1).to(device), z.to(device)).cpu(), digit

    @torch.no_grad()
    def for_embeddings(self, embeddings: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model.generate(embeddings.to(device), z.to(device)).cpu()


# ------------------------------------------------------------------------------------------ the registry's entries
def _cli_train_vae(cfg: CourseConfig, out: Path, options) -> None:
    trainer = train_vae(cfg, out, epochs=options.epochs, resume=options.resume, gif_path=options.gif)
    print(f"held-out loss (BCE-sum + KL per image): {trainer.history[-1]['test_loss']:.2f}")


def _evaluate_vae(cfg: CourseConfig, model: ConvVAE, options) -> None:
    result = vae_test_loss(model, digit_data(cfg).heldout_images)
    print(f"held-out loss (BCE-sum + KL per image): {result['test_loss']:.2f} "
          f"(recon {result['test_recon']:.2f}, KL {result['test_kl']:.2f})")


@torch.no_grad()
def _reconstruct_vae(cfg: CourseConfig, model: ConvVAE, options) -> str:
    from helpers.viz import save_image

    originals = digit_data(cfg).heldout_images[: options.n]
    mu, _ = model.encode(originals.to(next(model.parameters()).device))
    recon = torch.sigmoid(model.decode(mu)).cpu()
    path = save_image(image_grid(torch.cat([originals, recon]), nrow=options.n, scale=4),
                      Path(options.out or cfg.outputs_dir) / "vae_reconstructions.png")
    return f"top row: held-out digits, bottom row: reconstructions -> {path}"


@torch.no_grad()
def _draw_vae(model: ConvVAE, prompts: list[str], seed: int) -> torch.Tensor:
    """Unconditional: it cannot read a prompt, so it draws whatever it draws, one digit per prompt."""
    z = torch.randn(len(prompts), model.config.latent_dim, generator=torch.Generator().manual_seed(seed))
    return torch.sigmoid(model.decode(z.to(next(model.parameters()).device))).cpu()


def _generate_digits(model: TextToDigit, options) -> Samples:
    images, digit = model(options.prompt, n=options.n, seed=options.seed)
    return Samples(images, f"{slug(options.prompt)}_seed{options.seed}", note=f"read {options.prompt!r} as the digit {digit}")


def _evaluate_text_cvae(cfg: CourseConfig, model: TextToDigit, options) -> None:
    from helpers.digit_judge import (judge_report, load_or_train_judge, pixel_baseline, prompt_accuracy,
                                     prompt_accuracy_line)

    judge, judge_accuracy = load_or_train_judge(cfg)
    baseline = pixel_baseline(cfg)
    print(judge_report(cfg, judge_accuracy, baseline))
    for split in ("train", "heldout"):
        result = prompt_accuracy(model, judge, digit_prompts(split), baseline=baseline)
        per_digit = " ".join(f"{d}:{v:.0%}" for d, v in result["per_digit"].items())
        print(f"{prompt_accuracy_line(split, result, baseline)} ({per_digit})")


def _measure_text_cvae(cfg: CourseConfig, model: TextToDigit, n: int, seed: int) -> dict:
    from helpers.digit_judge import load_or_train_judge, pixel_baseline, prompt_accuracy

    judge, judge_accuracy = load_or_train_judge(cfg)
    baseline = pixel_baseline(cfg)
    start = time.perf_counter()
    result = prompt_accuracy(model, judge, digit_prompts("heldout"), samples_per_prompt=n, seed=seed,
                             baseline=baseline)
    return {"metric": "prompt accuracy, held-out templates", "value": result["accuracy"], "n": result["n_images"],
            "baseline": result["baseline_accuracy"], "baseline_name": baseline.name,
            "judge": judge_accuracy, "judge_n": len(digit_data(cfg).heldout_labels),
            "ms_per_sample": 1000 * (time.perf_counter() - start) / result["n_images"]}


# Training settings of each model in each mode (`cfg.recipe(name)` reads them; see helpers.config.Recipe).
RECIPES: dict[str, dict[str, Recipe]] = {
    # quick: 5,000 real digits on a 2-core CPU; full: 60,000 MNIST digits on a GPU (or a patient CPU).
    "vae": {
        "quick": Recipe(epochs=8, batch_size=32, lr=2e-3, width=16, latent_dim=20),
        "full": Recipe(epochs=30, batch_size=128, lr=1e-3, width=32, latent_dim=20),
    },
    "vae-2d": {  # the 2-D latent VAE of notebook 01's latent map
        "quick": Recipe(epochs=8, batch_size=32, lr=2e-3, width=16, latent_dim=2),
        "full": Recipe(epochs=15, batch_size=128, lr=1e-3, width=32, latent_dim=2),
    },
    "text-cvae": {
        "quick": Recipe(epochs=15, batch_size=64, lr=2e-3, width=16, latent_dim=4, kl_warmup_epochs=1),
        "full": Recipe(epochs=30, batch_size=128, lr=1e-3, width=32, latent_dim=4, kl_warmup_epochs=2),
    },
}


KINDS = (
    ModelKind("vae", "01", "a convolutional VAE of MNIST digits", train=_cli_train_vae,
              load=lambda cfg, run: load_vae(run, cfg.device),
              generate=lambda model, o: Samples(model.sample(o.n, generator=torch.Generator().manual_seed(o.seed)).cpu(),
                                                f"vae_seed{o.seed}"),
              evaluate=_evaluate_vae, reconstruct=_reconstruct_vae, domain="digits", draw=_draw_vae,
              measure=lambda cfg, model, n, seed: {
                  "metric": "held-out loss (BCE + KL per digit; lower is better)",
                  "value": vae_test_loss(model, digit_data(cfg).heldout_images)["test_loss"]},
              writes_gif=True),
    ModelKind("text-cvae", "02", "a text-prompted CVAE of digits (MiniLM sentence embeddings, FiLM)",
              train=lambda cfg, out, o: train_text_cvae(cfg, out, epochs=o.epochs, resume=o.resume, gif_path=o.gif),
              load=lambda cfg, run: TextToDigit.from_checkpoint(run, cfg), example="Print number 5",
              read_prompt=lambda text: check_prompt(text, DIGIT_EXAMPLE),
              generate=_generate_digits, evaluate=_evaluate_text_cvae, domain="digits",
              draw=lambda model, prompts, seed: torch.cat([model(p, n=1, seed=seed)[0] for p in prompts]),
              measure=_measure_text_cvae, writes_gif=True),
)
