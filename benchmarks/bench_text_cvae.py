"""Prompt accuracy of the text-prompted CVAE (notebook 02) against a seed-style plain CVAE, with ablations.

Every model trains on the same digits with the same training phrasings, and is judged on held-out
phrasings it never saw (and on the training phrasings) by the digit-judge CNN: the fraction of generated
images the judge reads as the requested digit. "swap" measures whether the decoder follows the text: a
held-out real digit is encoded with its own prompt, then decoded with the prompt of every other digit.

    COURSE_QUICK=1 python -m benchmarks.bench_text_cvae [--only ours] [--seed-epochs 55 --tag seed3min]
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import nn

from benchmarks._common import stopwatch, write_results
from helpers.config import get_config, seed_everything
from helpers.data.prompts import DIGIT_WORDS, digit_prompts
from helpers.digits import TextToDigit, digit_data, prompt_bank, train_text_cvae
from helpers.digit_judge import judge_digits, load_or_train_judge, prompt_accuracy
from helpers.models.vae import elbo_loss, reparameterize
from helpers.train import KLAnnealing, Trainer


@dataclass
class SeedCVAEConfig:
    text_dim: int = 384
    latent_dim: int = 20
    hidden: int = 512


class SeedCVAE(nn.Module):
    """The seed project's recipe: conv 32-64 encoder, raw 384-d text embedding concatenated to the flattened
    features and to z, 512-unit hidden layers, 20-d latent."""

    def __init__(self, config: SeedCVAEConfig):
        super().__init__()
        self.config = config
        self.conv = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(), nn.Flatten())
        self.enc = nn.Sequential(nn.Linear(64 * 49 + config.text_dim, config.hidden), nn.ReLU(),
                                 nn.Linear(config.hidden, 2 * config.latent_dim))
        self.dec = nn.Sequential(nn.Linear(config.latent_dim + config.text_dim, config.hidden), nn.ReLU(),
                                 nn.Linear(config.hidden, 64 * 49), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
                                 nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1), nn.ReLU(),
                                 nn.ConvTranspose2d(32, 1, 3, 2, 1, output_padding=1))

    def encode(self, images, text):
        return self.enc(torch.cat([self.conv(images), text], 1)).chunk(2, dim=1)

    def decode(self, z, text):
        return self.dec(torch.cat([z, text], 1))

    def forward(self, images, text):
        mu, logvar = self.encode(images, text)
        return self.decode(reparameterize(mu, logvar), text), mu, logvar


class SeedGenerator:
    """The same interface prompt_accuracy uses for TextToDigit."""

    def __init__(self, model: SeedCVAE, bank):
        self.model, self.bank, self.latent_dim = model.eval(), bank, model.config.latent_dim

    @torch.no_grad()
    def for_embeddings(self, embeddings, z):
        return torch.sigmoid(self.model.decode(z, embeddings))

    @torch.no_grad()
    def encode_mean(self, images, embeddings):
        return self.model.encode(images, embeddings)[0]


def train_seed_style(cfg, bank, epochs: int) -> SeedGenerator:
    data = digit_data(cfg)
    seed_everything(cfg.seed)

    def loss_fn(trainer, batch):
        images, labels = batch
        logits, mu, logvar = trainer.model(images, bank.random_for(labels))
        return elbo_loss(logits, images, mu, logvar, trainer.kl_weight)

    # The seed anneals the KL weight from 0 over the first 15% of training (30 of 200 epochs).
    trainer = Trainer(SeedCVAE(SeedCVAEConfig()), loss_fn, data.train_set(), epochs=epochs, batch_size=64, lr=1e-3,
                      device=cfg.device, callbacks=[KLAnnealing(max(1, round(0.15 * epochs)))], seed=cfg.seed)
    trainer.fit()
    return SeedGenerator(trainer.model, bank)


@torch.no_grad()
def swap_accuracy(generator, judge, cfg, bank, per_digit: int = 10) -> float:
    """Encode held-out digits with their own prompt, decode the mean z with each other digit's prompt."""
    data = digit_data(cfg)
    picks = torch.cat([torch.nonzero(data.heldout_labels == d).squeeze(1)[:per_digit] for d in range(10)])
    images, labels = data.heldout_images[picks], data.heldout_labels[picks]
    prompts = bank.embed([f"Print number {word}" for word in DIGIT_WORDS])  # (10, 384)
    if isinstance(generator, TextToDigit):
        model = generator.model
        mu = model.encode(images, model.condition_from_text(prompts[labels]))[0]
    else:
        mu = generator.encode_mean(images, prompts[labels])
    targets = torch.arange(10).repeat(len(picks))  # every image x every digit
    swapped = generator.for_embeddings(prompts[targets], mu.repeat_interleave(10, 0))
    keep = targets != labels.repeat_interleave(10)
    return float((judge_digits(judge, swapped)[keep] == targets[keep]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=["seed", "ours", "no-aux", "latent16"],
                        default=["seed", "ours", "no-aux", "latent16"])
    parser.add_argument("--seed-epochs", type=int, default=15)
    parser.add_argument("--tag", default="", help="suffix of the results file, e.g. a run with other settings")
    args = parser.parse_args()
    cfg = get_config()
    bank = prompt_bank(cfg)
    judge, judge_acc = load_or_train_judge(cfg)
    print(f"{cfg}\ndata: {digit_data(cfg)}\njudge accuracy on held-out real digits: {judge_acc:.2%}")
    results = {"data": digit_data(cfg).source, "judge_heldout_accuracy": round(judge_acc, 4), "models": {}}
    recipe = cfg.recipe("text-cvae")
    variants = {
        "seed": lambda: train_seed_style(cfg, bank, args.seed_epochs),
        "ours": lambda: TextToDigit(train_text_cvae(cfg, "/tmp/bench-text-cvae", bank=bank, progress=False).model, bank),
        "no-aux": lambda: TextToDigit(train_text_cvae(cfg, "/tmp/bench-text-cvae-noaux", bank=bank, aux_weight=0.0,
                                                      progress=False).model, bank),
        "latent16": lambda: TextToDigit(train_text_cvae(cfg, "/tmp/bench-text-cvae-z16", bank=bank, latent_dim=16,
                                                        progress=False).model, bank),
    }
    for name in args.only:
        record: dict = {"epochs": args.seed_epochs if name == "seed" else recipe.epochs}
        with stopwatch(record, "train"):
            generator = variants[name]()
        record["params"] = sum(p.numel() for p in generator.model.parameters())
        for split in ("heldout", "train"):
            result = prompt_accuracy(generator, judge, digit_prompts(split))
            record[f"prompt_accuracy_{split}"] = round(result["accuracy"], 4)
            record[f"per_digit_{split}"] = {d: round(v, 3) for d, v in result["per_digit"].items()}
        record["swap_accuracy"] = round(swap_accuracy(generator, judge, cfg, bank), 4)
        results["models"][name] = record
        per_digit = " ".join(f"{d}:{v:.0%}" for d, v in record["per_digit_heldout"].items())
        print(f"{name:9s} params {record['params']:>9,}  train {record['train_s']:>6.1f} s  "
              f"prompt acc held-out {record['prompt_accuracy_heldout']:.1%}  train-templates "
              f"{record['prompt_accuracy_train']:.1%}  swap {record['swap_accuracy']:.1%}  [{per_digit}]", flush=True)
    write_results(f"text_cvae_{cfg.mode}{'_' + args.tag if args.tag else ''}", results)


if __name__ == "__main__":
    main()
