"""MNIST splits and prompt templates (notebooks 01-02)."""
import pytest
import torch

from helpers.config import get_config
from helpers.data.mnist import load_mnist
from helpers.data.prompts import DIGIT_WORDS, HELDOUT_TEMPLATES, TRAIN_TEMPLATES, digit_prompts
from helpers.errors import CourseError


def test_quick_mnist_is_real_and_split(quick_cfg):
    data = load_mnist(quick_cfg)
    assert data.train_images.shape == (4500, 1, 28, 28) and data.heldout_images.shape == (500, 1, 28, 28)
    assert 0.0 <= data.train_images.min() and data.train_images.max() <= 1.0
    assert torch.bincount(data.heldout_labels).tolist() == [50] * 10
    # real digits: mostly black background with a bright stroke
    assert 0.08 < data.train_images.mean() < 0.2
    train_rows = {tuple(row) for row in data.train_images.flatten(1)[:, ::7].tolist()}
    assert not any(tuple(row) in train_rows for row in data.heldout_images.flatten(1)[:, ::7].tolist())


def test_course_data_5k_file(shared_data, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", str(shared_data))
    data = load_mnist(get_config(quick=False))
    assert len(data.train_labels) == 4500 and str(shared_data) in data.source


def test_full_mode_failed_download_fails_clearly(monkeypatch, tmp_path):
    import torchvision.datasets

    for name in ("COURSE_DATA", "HF_HUB_OFFLINE", "COURSE_OFFLINE"):
        monkeypatch.delenv(name, raising=False)  # "online", but the download fails (no network, host down)
    cfg = get_config(quick=False)
    object.__setattr__(cfg, "data_root", tmp_path / "data")

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(CourseError, match="could not be downloaded.*COURSE_QUICK=1") as error:
        load_mnist(cfg)
    assert "\n" not in str(error.value)


def test_templates_cover_every_digit_with_words_and_numerals():
    train, heldout = digit_prompts("train"), digit_prompts("heldout")
    assert not set(TRAIN_TEMPLATES) & set(HELDOUT_TEMPLATES)
    assert not set(train.prompts) & set(heldout.prompts)
    for digit in range(10):
        phrasings = train.for_digit(digit)
        assert len(phrasings) >= 25
        assert any(DIGIT_WORDS[digit] in p for p in phrasings) and any(str(digit) in p for p in phrasings)
    with pytest.raises(ValueError):
        digit_prompts("test")
