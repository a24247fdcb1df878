"""Face generators, the attribute judge and the generative metrics of notebook 04, on tiny synthetic data."""
import numpy as np
import pytest
import scipy.linalg
import torch
from torch.utils.data import TensorDataset

from helpers.checkpoint import read_checkpoint
from helpers.facegen import (attribute_conditions, judge_attribute_accuracy, prompted_attribute_accuracy,
                             train_attribute_judge, train_face_cvae, train_face_gan)
from helpers.metrics import balanced_accuracy, diversity, frechet_distance, kernel_inception_distance
from helpers.models.faces import (AttributeJudge, AttributeJudgeConfig, FaceCVAE, FaceCVAEConfig, FaceGAN,
                                  FaceGANConfig, gan_loss_fn, gan_terms)
from helpers.train import Trainer


def _faces(n: int, size: int, seed: int = 0) -> TensorDataset:
    """Random 'faces' in [-1, 1] with random 0/1 attributes, in the (image, attrs, index) layout of CelebA."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=generator) * 2 - 1
    attrs = (torch.rand(n, 40, generator=generator) < 0.3).float()
    return TensorDataset(images, attrs, torch.arange(n))


def _attribute_condition(trainer, batch) -> torch.Tensor:
    return attribute_conditions(batch[1], drop_fraction=0.25)


@pytest.mark.parametrize("size", [32, 64])
def test_face_model_shapes_losses_and_samples(size):
    torch.manual_seed(0)
    images, cond = torch.rand(4, 3, size, size) * 2 - 1, attribute_conditions((torch.rand(4, 40) < 0.5).float(), 0.3)
    cvae = FaceCVAE(FaceCVAEConfig(image_size=size, width=8, latent_dim=6, cond_hidden=16))
    recon, mu, logvar = cvae(images, cond)
    assert recon.shape == images.shape and mu.shape == logvar.shape == (4, 6)
    terms = cvae.loss(images, cond, kl_weight=0.5)
    assert set(terms) == {"loss", "recon", "kl"} and all(torch.isfinite(v) for v in terms.values())
    assert torch.isclose(terms["loss"], terms["recon"] + 0.5 * terms["kl"]) and terms["kl"] >= 0
    samples = cvae.sample(cond, generator=torch.Generator().manual_seed(0), temperature=0.8)
    assert samples.shape == images.shape and samples.min() >= -1 and samples.max() <= 1
    assert cvae.reconstruct(images, cond).shape == images.shape

    gan = FaceGAN(FaceGANConfig(image_size=size, width=8, noise_dim=10))
    samples = gan.sample(cond, generator=torch.Generator().manual_seed(0))
    assert samples.shape == images.shape and samples.min() >= -1 and samples.max() <= 1
    assert gan.discriminator(images, cond).shape == (4,)
    assert gan.training, "sample() must leave the training mode as it found it"

    judge = AttributeJudge(AttributeJudgeConfig(image_size=size, width=8))
    assert judge(images).shape == (4, 40)


def test_wrong_sizes_are_named():
    cvae = FaceCVAE(FaceCVAEConfig(image_size=32, width=8, latent_dim=4, cond_hidden=16))
    with pytest.raises(ValueError, match=r"condition of shape \(B, 40\), got \(2, 128\)"):
        cvae.sample(torch.zeros(2, 128))
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, 32, 32\)"):
        cvae(torch.zeros(2, 3, 64, 64), torch.zeros(2, 40))
    with pytest.raises(ValueError, match="divisible by 16"):
        FaceGAN(FaceGANConfig(image_size=40))


def test_gan_losses_reach_only_their_own_network():
    torch.manual_seed(0)
    gan = FaceGAN(FaceGANConfig(image_size=32, width=8, noise_dim=10))
    images, cond = torch.rand(6, 3, 32, 32) * 2 - 1, torch.randn(6, 40)
    d_loss, g_loss, _ = gan_terms(gan, images, cond)
    g_params, d_params = list(gan.generator.parameters()), list(gan.discriminator.parameters())
    d_on_g = torch.autograd.grad(d_loss, g_params, retain_graph=True, allow_unused=True)
    g_on_d = torch.autograd.grad(g_loss, d_params, retain_graph=True, allow_unused=True)
    assert all(g is None or not g.any() for g in d_on_g), "d_loss must not move the generator"
    assert all(g is None or not g.any() for g in g_on_d), "g_loss must not move the discriminator"
    d_on_d = torch.autograd.grad(d_loss, d_params, retain_graph=True, allow_unused=True)
    g_on_g = torch.autograd.grad(g_loss, g_params, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in d_on_d)
    assert any(g is not None and g.abs().sum() > 0 for g in g_on_g)


@pytest.mark.parametrize("loss", ["hinge", "non-saturating"])
def test_one_trainer_step_updates_both_networks(loss):
    torch.manual_seed(0)
    gan = FaceGAN(FaceGANConfig(image_size=32, width=8, noise_dim=10))
    before = {name: p.detach().clone() for name, p in gan.named_parameters()}
    trainer = Trainer(gan, gan_loss_fn(_attribute_condition, loss=loss), _faces(8, 32), epochs=1, batch_size=8,
                      lr=1e-3)
    history = trainer.fit()
    assert trainer.step == 1 and {"d_loss", "g_loss", "d_real", "d_fake"} <= set(history[0])
    changed = {name for name, p in gan.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert any(name.startswith("generator.") for name in changed)
    assert any(name.startswith("discriminator.") for name in changed)


def _coloured_squares(n: int, size: int = 32, seed: int = 0) -> tuple[TensorDataset, torch.Tensor]:
    """Half red, half blue squares at random places on grey; the condition is (+1, -1) red or (-1, +1) blue."""
    generator = torch.Generator().manual_seed(seed)
    red = torch.arange(n) % 2 == 0
    images = torch.full((n, 3, size, size), -0.2)
    for i in range(n):
        top, left = torch.randint(0, size - 12, (2,), generator=generator).tolist()
        images[i, :, top:top + 12, left:left + 12] = torch.tensor([0.9, -0.9, -0.9] if red[i] else [-0.9, -0.9, 0.9])[:, None, None]
    cond = torch.stack([red.float() * 2 - 1, 1 - red.float() * 2], dim=1)  # (n, 2)
    return TensorDataset(images, cond, torch.arange(n)), cond


def test_cvae_draws_the_colour_its_condition_asks_for():
    torch.manual_seed(0)
    data, _ = _coloured_squares(256)
    model = FaceCVAE(FaceCVAEConfig(image_size=32, cond_dim=2, latent_dim=8, width=8, cond_hidden=32))
    model, history, seconds = train_face_cvae(model, data, epochs=6, batch_size=32, lr=3e-3, device="cpu",
                                              run_dir=None, kind="face-cvae", condition_fn=lambda t, b: b[1],
                                              kl_warmup_epochs=1)
    assert history[-1]["loss"] < history[0]["loss"] and seconds > 0
    generator = torch.Generator().manual_seed(0)
    red = model.sample(torch.tensor([[1.0, -1.0]]).repeat(32, 1), generator=generator)
    blue = model.sample(torch.tensor([[-1.0, 1.0]]).repeat(32, 1), generator=generator)
    redness = lambda images: float((images[:, 0] - images[:, 2]).mean())  # noqa: E731
    assert redness(red) > 0.1 and redness(blue) < -0.1, (redness(red), redness(blue))


def test_training_functions_checkpoint_and_report(tmp_path):
    torch.manual_seed(0)
    data = _faces(32, 32)
    gan = FaceGAN(FaceGANConfig(image_size=32, width=8, noise_dim=10))
    _, history, _ = train_face_gan(gan, data, epochs=1, batch_size=16, lr=2e-4, device="cpu",
                                   run_dir=tmp_path / "gan", kind="face-gan", condition_fn=_attribute_condition)
    checkpoint = read_checkpoint(tmp_path / "gan", "face-gan")
    assert checkpoint.index["config"]["width"] == 8 and checkpoint.index["extra"]["gan_loss"] == "hinge"
    assert checkpoint.optimizer_state()["param_groups"][0]["betas"] == (0.5, 0.999)
    judge = AttributeJudge(AttributeJudgeConfig(image_size=32, width=8))
    heldout = (data.tensors[0][:16], data.tensors[1][:16])
    _, history, _ = train_attribute_judge(judge, data, epochs=1, batch_size=16, lr=1e-3, device="cpu", run_dir=None,
                                          heldout=heldout)
    # the record is the trained judge's mean balanced accuracy over the attributes the held-out faces can tell
    assert history[-1]["heldout_balanced_accuracy"] == pytest.approx(
        float(judge_attribute_accuracy(judge, *heldout).nanmean()))
    assert judge_attribute_accuracy(judge, data.tensors[0], data.tensors[1]).shape == (40,)


# ------------------------------------------------------------------------------------------------ metrics
def test_balanced_accuracy_on_a_hand_made_example():
    # Imbalanced columns, as CelebA's are: column 0 has 1 positive in 5, column 1 4 in 5; column 2 none.
    target = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    pred = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=torch.bool)
    # column 0: TPR 1/1, TNR 3/4 -> 0.875 (plain accuracy 0.8); column 1: TPR 3/4, TNR 0/1 -> 0.375 (plain 0.6);
    # column 2 holds one class only -> NaN
    result = balanced_accuracy(pred, target)
    assert result[:2].tolist() == pytest.approx([0.875, 0.375]) and result[2].isnan()
    always_no = torch.zeros(5, 1, dtype=torch.bool)
    # plain accuracy would give a judge that never says "yes" 80% on the rare column; balanced accuracy gives chance
    assert (always_no == target[:, :1]).float().mean().item() == pytest.approx(0.8)
    assert balanced_accuracy(always_no, target[:, :1]).item() == 0.5


class _ReadsPixels(torch.nn.Module):
    """A stand-in judge whose logits for 4 attributes are the first 4 pixel values of the image."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        return images.flatten(1)[:, :4]


def test_prompted_attribute_accuracy_counts_pairs():
    images = torch.zeros(2, 3, 4, 4)
    images.view(2, -1)[0, :4] = torch.tensor([1.0, -1.0, 1.0, -1.0])  # image 0 shows attributes 0 and 2
    images.view(2, -1)[1, :4] = torch.tensor([-1.0, 1.0, -1.0, -1.0])  # image 1 shows attribute 1
    wanted = [{0: True, 1: True}, [(1, True), (3, False), (2, True)]]  # agreements: 1/2 and 2/3
    assert prompted_attribute_accuracy(_ReadsPixels(), images, wanted) == pytest.approx(3 / 5)


def _reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b, cov_a, cov_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def test_frechet_distance_properties_and_reference():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(500, 16, generator=generator)
    b = torch.randn(500, 16, generator=generator) * 1.3 + 0.2
    assert frechet_distance(a, a) < 1e-6
    assert frechet_distance(a, a + 0.5) < frechet_distance(a, a + 1.0)
    assert frechet_distance(a, a + 1.0) == pytest.approx(16.0, rel=1e-6)  # a pure shift adds |shift|^2
    assert frechet_distance(a, b) == pytest.approx(_reference_fid(a.double().numpy(), b.double().numpy()), rel=1e-3)


def test_kid_and_diversity_properties():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 32, generator=generator), torch.randn(400, 32, generator=generator)
    same_mean, same_std = kernel_inception_distance(a, b, subsets=5, subset_size=200)
    shifted_mean, _ = kernel_inception_distance(a, b + 0.5, subsets=5, subset_size=200)
    assert abs(same_mean) < 0.01 and same_std >= 0 and shifted_mean > 10 * max(abs(same_mean), 1e-3)
    assert diversity(a[:1].repeat(40, 1)) == pytest.approx(0.0, abs=1e-9)  # 40 copies of one vector
    assert diversity(a) == pytest.approx(1.0, abs=0.05)  # random directions are nearly orthogonal
