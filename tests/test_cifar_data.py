"""CIFAR-10 data (helpers.data.cifar10) and the class judge that grades generated images (helpers.cifar_judge)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers.checkpoint import read_checkpoint
from helpers.cifar_judge import (architecture, augment, class_accuracy, judge_classes, judge_features, load_cifar_judge,
                                 load_or_train_cifar_judge, train_cifar_judge)
from helpers.config import get_config
from helpers.data import cifar10
from helpers.data.cifar10 import (CIFAR10_CLASSES, ImageSplits, first_per_class, interleave_classes, load_cifar10,
                                  resize_images, synthetic_cifar)
from helpers.errors import CourseError
from helpers.metrics import PooledPixelBaseline, frechet_distance
from helpers.models.judge import CifarJudge, CifarJudgeConfig


@pytest.fixture
def offline_cfg(tmp_path, monkeypatch):
    """Quick mode, no local data, downloads forbidden, an empty download folder."""
    for name in ("COURSE_DATA", "COURSE_QUICK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COURSE_DOWNLOADS", str(tmp_path / "downloads"))
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    return get_config(quick=True)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> ImageSplits:
    cfg = dataclasses.replace(get_config(quick=True), local_data=None,
                              data_root=tmp_path_factory.mktemp("downloads"))
    return load_cifar10(cfg, source="synthetic", limit_per_class=150)


@pytest.fixture(scope="module")
def real(shared_data, tmp_path_factory) -> tuple:
    """The local 50k JPEG sample, decoded into a temporary cache (once per test module)."""
    if not (shared_data / "cifar10_train_jpeg.tar.gz").exists():
        pytest.skip(f"cifar10_train_jpeg.tar.gz is not in {shared_data}")
    cfg = dataclasses.replace(get_config(quick=True), local_data=shared_data,
                              data_root=tmp_path_factory.mktemp("downloads"))
    return cfg, load_cifar10(cfg, source="local")


def _check_schema(data: ImageSplits, size: int) -> None:
    for images, labels in ((data.train_images, data.train_labels), (data.test_images, data.test_labels)):
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, size, size)
        assert labels.dtype == torch.int64 and len(labels) == len(images)
        assert 0 <= int(labels.min()) and int(labels.max()) < len(CIFAR10_CLASSES)
    image, label = data.train_set()[0]
    assert image.dtype == torch.float32 and image.shape == (3, size, size)
    assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert label.dtype == torch.int64
    assert data.classes == CIFAR10_CLASSES and str(data.image_size) in repr(data)


# --------------------------------------------------------------------------------------------- synthetic
def test_synthetic_schema_and_balance(synthetic):
    _check_schema(synthetic, 32)
    assert synthetic.source.startswith("synthetic")
    assert synthetic.train_labels.bincount().tolist() == [150] * 10
    assert synthetic.train_labels[:10].tolist() == list(range(10))  # classes dealt out in turn


def test_synthetic_is_deterministic_and_prefix_stable():
    a, labels_a = synthetic_cifar(3, seed=0)
    b, labels_b = synthetic_cifar(5, seed=0)
    assert torch.equal(a, b[:30]) and torch.equal(labels_a, labels_b[:30])  # icon i never depends on n
    assert not torch.equal(a, synthetic_cifar(3, seed=1)[0])
    assert float(a.float().std()) > 20  # pictures, not flat colour


def test_synthetic_colours_give_no_class_away(synthetic):
    """Every class draws its background and its paint from the same palettes: a nearest-class-mean classifier on
    4x4 mean colours, fitted on train, reads little more than chance (0.1) of the held-out icons (the old icons,
    one background per class, gave it 0.9)."""
    def thumbs(images):
        return torch.nn.functional.avg_pool2d(images.float(), 8).flatten(1)  # (N, 3 * 4 * 4)

    train, test = thumbs(synthetic.train_images), thumbs(synthetic.test_images)
    means = torch.stack([train[synthetic.train_labels == c].mean(0) for c in range(10)])
    predicted = torch.cdist(test, means).argmin(1)
    assert float((predicted == synthetic.test_labels).float().mean()) < 0.25


def test_synthetic_layout_gives_little_away(synthetic):
    """The baseline the notebooks print, a logistic regression on the 4x4 mean colours, also reads where each
    class puts its mass (legs low, wings wide); the placement jitter keeps that under a quarter of the held-out
    icons, at 32x32 and at quick mode's 16x16."""
    for images, held_out in ((synthetic.train_images, synthetic.test_images),
                             (F.avg_pool2d(synthetic.train_images.float(), 2).round().to(torch.uint8),
                              F.avg_pool2d(synthetic.test_images.float(), 2).round().to(torch.uint8))):
        baseline = PooledPixelBaseline(images, synthetic.train_labels)
        assert baseline.accuracy(held_out, synthetic.test_labels) < 0.25


def test_synthetic_held_out_icons_differ_from_training_ones(synthetic):
    train = {bytes(image.numpy()) for image in synthetic.train_images}
    assert not any(bytes(image.numpy()) in train for image in synthetic.test_images)


def test_resize_to_64(tmp_path):
    cfg = dataclasses.replace(get_config(quick=True), local_data=None, data_root=tmp_path)
    data = load_cifar10(cfg, source="synthetic", image_size=64, limit_per_class=2)
    _check_schema(data, 64)
    images = synthetic_cifar(1)[0]
    up = resize_images(images, 64)
    assert up.shape == (10, 3, 64, 64) and up.dtype == torch.uint8
    assert (resize_images(up, 32).float() - images.float()).abs().mean() < 10  # the same picture, slightly blurred


def test_helpers_order_and_limit():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    assert first_per_class(labels, 2).tolist() == [0, 1, 3, 4, 5]
    assert labels[interleave_classes(labels.numpy())].tolist() == [0, 1, 2, 0, 1, 0]


# --------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, words", [
    ({"source": "imagenet"}, "unknown CIFAR-10 source"),
    ({"image_size": 4}, "image_size"),
    ({"limit_per_class": 0}, "limit_per_class"),
])
def test_bad_arguments_are_one_line_course_errors(offline_cfg, kwargs, words):
    with pytest.raises(CourseError, match=words) as error:
        load_cifar10(offline_cfg, **kwargs)
    assert "\n" not in str(error.value)


def test_offline_without_data_says_what_to_do(offline_cfg):
    with pytest.raises(CourseError) as error:
        load_cifar10(offline_cfg, source="torchvision")
    message = str(error.value)
    assert "\n" not in message and "COURSE_DATA" in message and "offline" in message
    with pytest.raises(CourseError, match="COURSE_DATA"):
        load_cifar10(offline_cfg, source="local")


def test_auto_without_local_data(offline_cfg):
    quick = load_cifar10(offline_cfg, limit_per_class=1)
    assert quick.source.startswith("synthetic")
    with pytest.raises(CourseError, match="COURSE_DATA"):  # full mode would download, but offline it cannot
        load_cifar10(dataclasses.replace(offline_cfg, quick=False))


def test_failed_download_is_a_course_error(offline_cfg, monkeypatch):
    import torchvision.datasets

    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_network)
    monkeypatch.setattr(cifar10, "host_reachable", lambda url, timeout=3.0: True)  # reachable, but it fails
    with pytest.raises(CourseError, match="could not be downloaded.*Name or service.*COURSE_DATA"):
        load_cifar10(dataclasses.replace(offline_cfg, offline=False), source="torchvision")


# --------------------------------------------------------------------------------------------- real data
def test_local_sample_splits(real):
    cfg, data = real
    _check_schema(data, 32)
    assert data.source.startswith("local:cifar10_train_jpeg.tar.gz")
    assert data.train_labels.bincount().tolist() == [4500] * 10
    assert data.test_labels.bincount().tolist() == [500] * 10
    train = {bytes(image.numpy()) for image in data.train_images[::7]}
    assert sum(bytes(image.numpy()) in train for image in data.test_images) < 5  # (a few CIFAR photos repeat)
    assert (cfg.data_root / "cache" / "cifar10_local_32.npz").exists()


def test_local_limit_and_resize_use_the_cache(real):
    cfg, full = real
    data = load_cifar10(cfg, source="local", limit_per_class=7, image_size=64)
    assert data.train_labels.bincount().tolist() == [7] * 10
    assert data.test_images.shape == (5000, 3, 64, 64)
    # the kept images are the first 7 of each class, in the same order as in the unlimited split
    first = first_per_class(full.train_labels, 7)
    assert torch.equal(resize_images(full.train_images[first], 64), data.train_images)


# --------------------------------------------------------------------------------------------- judge
@pytest.mark.parametrize("design, features", [("resnet", 32), ("resnet9", 64)])
@pytest.mark.parametrize("size", [32, 64])
def test_judge_shapes(size, design, features):
    config = CifarJudgeConfig(width=8, image_size=size, design=design)
    judge = CifarJudge(config)
    images = torch.rand(3, 3, size, size) * 2 - 1
    assert config.feature_dim == features
    assert judge(images).shape == (3, 10) and judge.features(images).shape == (3, features)
    with pytest.raises(ValueError, match="resize"):
        judge(torch.zeros(1, 3, 16, 16))


def test_judge_reads_an_image_and_its_mirror_alike():
    torch.manual_seed(0)
    judge = CifarJudge(CifarJudgeConfig(width=8, design="resnet9")).eval()
    images = torch.rand(64, 3, 32, 32) * 2 - 1
    classes = judge_classes(judge, images)
    assert torch.equal(classes, judge_classes(judge, images.flip(3)))  # logits of both views, summed
    with torch.no_grad():
        both = judge(images) + judge(images.flip(3))
    assert torch.equal(classes, both.argmax(1))


def test_judge_design_is_checked_and_full_mode_gets_the_strong_one():
    with pytest.raises(ValueError, match="resnet9"):
        CifarJudgeConfig(design="vgg")
    assert architecture("full", 32)["design"] == "resnet9"
    assert architecture("quick", 32) == {"blocks": 1, "first_stride": 2}
    assert architecture("quick", 16)["first_stride"] == 1


def test_augment_crops_and_flips_each_image_on_its_own():
    torch.manual_seed(0)
    image = torch.arange(3 * 32 * 32, dtype=torch.float32).view(1, 3, 32, 32)
    out = augment(image.repeat(64, 1, 1, 1))
    assert out.shape == (64, 3, 32, 32)
    # Every output is one 32x32 window of the image padded by 4 reflected pixels, flipped or not: crops and flips
    # move pixels, never blend them. Find which window and flip each one is.
    padded = torch.nn.functional.pad(image, (4, 4, 4, 4), mode="reflect")[0]
    seen = []
    for picture in out:
        matches = [(top, left, flip) for top in range(9) for left in range(9) for flip in (False, True)
                   if torch.equal(picture, padded[:, top:top + 32, left:left + 32].flip(2) if flip else
                                  padded[:, top:top + 32, left:left + 32])]
        assert matches, "an output is not a crop (or flipped crop) of its input"
        seen.append(matches[0])
    flips = sum(flip for _, _, flip in seen)
    assert 16 <= flips <= 48  # about half are flipped
    assert len({(top, left) for top, left, _ in seen}) >= 20  # windows vary image by image
    assert sum((top, left, flip) == (4, 4, False) for top, left, flip in seen) <= 8  # few come back unchanged


@pytest.mark.slow
def test_judge_train_save_load_round_trip(synthetic, tmp_path):
    cfg = dataclasses.replace(get_config(quick=True), local_data=None, data_root=tmp_path, runs_dir=tmp_path)
    judge, accuracy = train_cifar_judge(cfg, synthetic, tmp_path / "judge", epochs=8)
    assert accuracy > 0.5  # eight epochs on 1,500 icons (96 steps) learn their shapes; chance is 0.1
    extra = read_checkpoint(tmp_path / "judge", "cifar-judge").index["extra"]
    assert extra["data"] == synthetic.source and extra["image_size"] == 32 and extra["mode"] == "quick"

    loaded, loaded_extra = load_cifar_judge(tmp_path / "judge")
    images = synthetic.test_images[:50]
    assert torch.equal(judge_classes(judge, images), judge_classes(loaded, images))
    floats = images.float() / 127.5 - 1  # uint8 and [-1, 1] floats give the same answers
    assert torch.equal(judge_classes(loaded, floats), judge_classes(loaded, images))

    scores = class_accuracy(loaded, synthetic.test_images, synthetic.test_labels)
    assert scores["accuracy"] == pytest.approx(accuracy) and set(scores["per_class"]) == set(CIFAR10_CLASSES)
    features = judge_features(loaded, synthetic.test_images)
    assert features.shape == (len(synthetic.test_labels), loaded.config.feature_dim)
    labels = synthetic.test_labels
    half = len(labels) // 2  # classes are dealt out in turn, so both halves hold every class equally
    same = frechet_distance(features[:half], features[half:])  # two samples of one distribution
    apart = frechet_distance(features[labels < 5], features[labels >= 5])  # different classes
    assert same < apart

    reused, reused_accuracy = load_or_train_cifar_judge(cfg, synthetic, tmp_path / "judge")
    assert reused_accuracy == pytest.approx(accuracy)
    assert torch.equal(judge_classes(reused, images), judge_classes(judge, images))
    assert Path(tmp_path / "judge" / "checkpoint.json").stat().st_size > 0
