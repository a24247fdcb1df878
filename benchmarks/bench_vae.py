"""Notebook 01's conv VAE vs the classic MLP VAE (784-400-20, as in pytorch/examples), same data, same run.

Both are scored by the same held-out loss: BCE summed over the 784 grey-level pixels + KL, per image.
The MLP VAE keeps its classic recipe (batch 128, Adam lr 1e-3); ours uses the course recipe.

    COURSE_QUICK=1 python -m benchmarks.bench_vae [--epochs 10] [--mlp-epochs 10 50]
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._common import stopwatch, write_results
from helpers.config import get_config, seed_everything
from helpers.digits import digit_data, train_vae
from helpers.models.vae import elbo_loss, reparameterize
from helpers.train import Evaluate, Trainer


@dataclass
class MLPVAEConfig:
    hidden: int = 400
    latent_dim: int = 20


class MLPVAE(nn.Module):
    """784 -> 400 -> (20, 20) -> 400 -> 784, ReLU, Bernoulli logits: the classic baseline."""

    def __init__(self, config: MLPVAEConfig):
        super().__init__()
        self.config = config
        self.fc1 = nn.Linear(784, config.hidden)
        self.fc_mu = nn.Linear(config.hidden, config.latent_dim)
        self.fc_logvar = nn.Linear(config.hidden, config.latent_dim)
        self.fc3 = nn.Linear(config.latent_dim, config.hidden)
        self.fc4 = nn.Linear(config.hidden, 784)

    def forward(self, images: torch.Tensor):
        h = F.relu(self.fc1(images.flatten(1)))
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        logits = self.fc4(F.relu(self.fc3(reparameterize(mu, logvar))))
        return logits.view_as(images), mu, logvar


def mlp_loss(trainer, batch):
    images, _ = batch
    logits, mu, logvar = trainer.model(images)
    return elbo_loss(logits, images, mu, logvar)


@torch.no_grad()
def heldout_loss(model, images: torch.Tensor) -> float:
    logits, mu, logvar = model(images)
    return float(elbo_loss(logits, images, mu, logvar)["elbo"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--mlp-epochs", type=int, nargs="+", default=[10, 50])
    args = parser.parse_args()
    cfg = get_config()
    data = digit_data(cfg)
    print(f"{cfg}\ndata: {data}")
    results = {"data": data.source, "epochs": args.epochs}

    with stopwatch(results, "conv_vae_train"):
        trainer = train_vae(cfg, Path("/tmp") / "bench-vae", epochs=args.epochs, progress=False)
    results["conv_vae_params"] = sum(p.numel() for p in trainer.model.parameters())
    results["conv_vae_test_loss"] = [round(h["test_loss"], 2) for h in trainer.history]
    print(f"conv VAE ({results['conv_vae_params']:,} params): held-out loss per epoch {results['conv_vae_test_loss']}")

    for epochs in args.mlp_epochs:
        seed_everything(cfg.seed)
        model = MLPVAE(MLPVAEConfig())
        record: dict = {}
        history_cb = Evaluate(lambda m: {"test_loss": heldout_loss(m, data.heldout_images.to(cfg.device))})
        with stopwatch(record, "train"):
            history = Trainer(model, mlp_loss, data.train_set(), epochs=epochs, batch_size=128, lr=1e-3,
                              device=cfg.device, callbacks=[history_cb], seed=cfg.seed).fit()
        results[f"mlp_vae_{epochs}ep_test_loss"] = round(history[-1]["test_loss"], 2)
        results[f"mlp_vae_{epochs}ep_train_s"] = record["train_s"]
        print(f"MLP VAE 784-400-20 ({sum(p.numel() for p in model.parameters()):,} params), {epochs} epochs: "
              f"held-out loss {history[-1]['test_loss']:.2f} ({record['train_s']} s)")

    ours, theirs = results["conv_vae_test_loss"][-1], results[f"mlp_vae_{args.mlp_epochs[0]}ep_test_loss"]
    results["ratio_ours_to_mlp"] = round(ours / theirs, 3)
    print(f"ours / MLP at {args.epochs} epochs: {ours:.2f} / {theirs:.2f} = {ours / theirs:.3f} (target <= 0.90); "
          f"training took {results['conv_vae_train_s']} s")
    write_results(f"vae_{cfg.mode}", results)


if __name__ == "__main__":
    main()
