"""Shapes, the ELBO, and clear errors for wrong inputs."""
import pytest
import torch

from helpers.models import ConvVAE, ConvVAEConfig, DigitJudge, DigitJudgeConfig, TextCVAE, TextCVAEConfig, elbo_loss


def test_vae_shapes_and_elbo():
    model = ConvVAE(ConvVAEConfig(latent_dim=6, width=8))
    images = torch.rand(5, 1, 28, 28)
    logits, mu, logvar = model(images)
    assert logits.shape == images.shape and mu.shape == logvar.shape == (5, 6)
    terms = elbo_loss(logits, images, mu, logvar)
    assert terms["kl"] >= 0 and terms["recon"] > 0
    assert torch.isclose(terms["loss"], terms["recon"] + terms["kl"])
    samples = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1


def test_kl_is_zero_for_the_prior():
    mu, logvar = torch.zeros(4, 3), torch.zeros(4, 3)
    images = torch.rand(4, 1, 28, 28)
    assert elbo_loss(torch.zeros(4, 1, 28, 28), images, mu, logvar)["kl"].abs() < 1e-6


def test_other_image_sizes_work_and_wrong_ones_are_named():
    model = ConvVAE(ConvVAEConfig(latent_dim=4, width=8, image_size=32, in_channels=3))
    assert model(torch.rand(2, 3, 32, 32))[0].shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, 32, 32\), got \(2, 3, 28, 28\)"):
        model(torch.rand(2, 3, 28, 28))


def test_text_cvae_shapes_and_condition_size():
    model = TextCVAE(TextCVAEConfig(latent_dim=4, width=8))
    model.set_text_statistics(torch.randn(20, 384))
    logits, mu, logvar, class_logits = model(torch.rand(3, 1, 28, 28), torch.randn(3, 384))
    assert logits.shape == (3, 1, 28, 28) and mu.shape == (3, 4) and class_logits.shape == (3, 10)
    assert model.generate(torch.randn(2, 384), torch.randn(2, 4)).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="text embeddings of shape"):
        model.generate(torch.randn(2, 512), torch.randn(2, 4))


def test_judge_logits():
    assert DigitJudge(DigitJudgeConfig(width=8))(torch.rand(4, 1, 28, 28)).shape == (4, 10)
