"""The training loop: losses fall, resume reproduces an uninterrupted run, NaN stops cleanly."""
import imageio.v3 as iio
import pytest
import torch
from torch.utils.data import TensorDataset

from helpers.checkpoint import read_checkpoint
from helpers.digits import digit_data, train_text_cvae, vae_loss_fn
from helpers.models import ConvVAE, ConvVAEConfig
from helpers.train import Checkpointing, Trainer, TrainingDiverged


def _small_digits(cfg, n=1000):
    data = digit_data(cfg)
    return TensorDataset(data.train_images[:n], data.train_labels[:n])


def test_vae_loss_falls(quick_cfg):
    torch.manual_seed(0)
    digits = _small_digits(quick_cfg)
    trainer = Trainer(ConvVAE(ConvVAEConfig(latent_dim=8, width=16)), vae_loss_fn, digits, epochs=4, batch_size=32,
                      lr=2e-3)
    history = trainer.fit()
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    images = digits.tensors[0]
    mean_image = images.mean(0, keepdim=True).clamp(1e-4, 1 - 1e-4).expand_as(images)
    mean_image_bce = float(torch.nn.functional.binary_cross_entropy(mean_image, images, reduction="sum")) / len(images)
    assert history[-1]["recon"] < 0.9 * mean_image_bce  # it learned more than the average digit


def test_resume_matches_uninterrupted_run(quick_cfg, bank, tmp_path):
    straight = train_text_cvae(quick_cfg, tmp_path / "straight", epochs=3, bank=bank, progress=False)
    train_text_cvae(quick_cfg, tmp_path / "resumed", epochs=1, bank=bank, progress=False)
    resumed = train_text_cvae(quick_cfg, tmp_path / "resumed", epochs=3, resume=True, bank=bank, progress=False)
    assert resumed.start_epoch == 1 and resumed.step == straight.step
    for name, weight in straight.model.state_dict().items():
        assert torch.equal(weight, resumed.model.state_dict()[name]), name
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history])
    frames = iio.imread(tmp_path / "resumed" / "training.gif", index=None)
    assert len(frames) == 3  # one frame per epoch, across the interruption


def test_nan_loss_stops_and_keeps_last_good_checkpoint(quick_cfg, tmp_path):
    calls = {"n": 0}

    def poisoned(trainer, batch):
        calls["n"] += 1
        terms = vae_loss_fn(trainer, batch)
        if trainer.epoch == 1 and calls["n"] > 25:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    torch.manual_seed(0)
    trainer = Trainer(ConvVAE(ConvVAEConfig(latent_dim=4, width=8)), poisoned, _small_digits(quick_cfg, 640),
                      epochs=3, batch_size=32, lr=1e-3, callbacks=[Checkpointing(tmp_path, "vae")])
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2.*last good checkpoint was kept"):
        trainer.fit()
    checkpoint = read_checkpoint(tmp_path, "vae")
    assert checkpoint.index["epoch"] == 1
    assert all(torch.isfinite(w).all() for w in checkpoint.weights.values())
