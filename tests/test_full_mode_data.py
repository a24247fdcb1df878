"""Full mode's downloads, read from stand-ins in their real formats (tests/standins.py): MNIST and CIFAR-10 as
torchvision leaves them, zoheb/sketch-scene as parquet shards, and the hub helper those shards go through.
(CelebA's two sources are tested in test_celeba_data.py.)"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.config import get_config
from helpers.data.cifar10 import CIFAR10_CLASSES, load_cifar10
from helpers.data import hub
from helpers.data.hub import load_parquet, parquet_shards, whole_parquet
from helpers.data.mnist import load_mnist
from helpers.data.sketches import load_sketches
from helpers.errors import CourseError
from standins import SCENE_PLACES, truncate, write_cifar10, write_mnist, write_sketch_scene


@pytest.fixture
def full_cfg(monkeypatch, tmp_path):
    """Full mode, offline, no local data, downloads (already there) in a temporary folder."""
    monkeypatch.setenv("COURSE_DOWNLOADS", str(tmp_path / "downloads"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("COURSE_DATA", raising=False)
    return get_config(quick=False)


def test_mnist_in_torchvisions_layout(full_cfg):
    write_mnist(full_cfg.data_root, n_train=30, n_test=12)
    data = load_mnist(full_cfg)
    assert "torchvision" in data.source
    assert data.train_images.shape[0] == 30 and data.heldout_images.shape[0] == 12
    assert data.train_images.dtype == torch.float32 and data.train_images.max() > 0.5  # real ink, scaled to [0, 1]
    assert set(data.train_labels.tolist()) <= set(range(10))


def test_cifar10_in_torchvisions_layout(full_cfg, monkeypatch):
    import torchvision.datasets

    from helpers.data.cifar10 import synthetic_cifar

    write_cifar10(full_cfg.data_root, n_train_per_class=3, n_test_per_class=2)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)  # stand-in MD5s
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "meta", {**torchvision.datasets.CIFAR10.meta, "md5": None})
    data = load_cifar10(full_cfg)
    assert data.classes == CIFAR10_CLASSES and len(data.train_set()) == 30 and len(data.test_set()) == 20
    images, labels = synthetic_cifar(2, seed=1)  # the test batch the stand-in wrote, pixel for pixel
    order = np.argsort(np.asarray(labels), kind="stable")
    got = data.test_images[torch.argsort(data.test_labels, stable=True)]
    assert torch.equal(got, torch.as_tensor(np.asarray(images)[order]))


def test_sketch_scene_parquet_has_captions_and_no_classes(full_cfg, tmp_path, monkeypatch):
    write_sketch_scene(tmp_path / "scenes", n=30, shards=2)
    monkeypatch.setenv("COURSE_HUB_SKETCHES", str(tmp_path / "scenes"))
    data = load_sketches(full_cfg, image_size=64)
    assert data.classes == () and (data.train_labels == -1).all() and (data.test_labels == -1).all()
    assert len(data.train_captions) == 27 and len(data.test_captions) == 3
    assert all(c.endswith(SCENE_PLACES) for c in data.train_captions + data.test_captions)
    ink = data.train_images.float() / 255
    assert data.train_images.shape == (27, 1, 64, 64) and 0.005 < ink.mean() < 0.5  # strokes, mostly blank


def test_hub_sources_offline_and_broken(full_cfg, tmp_path):
    shards = write_sketch_scene(tmp_path / "scenes", n=12, shards=3)
    assert all(whole_parquet(shard) for shard in shards)
    truncate(shards[2])
    assert not whole_parquet(shards[2])
    with pytest.warns(UserWarning, match="skipping 1 truncated"):
        assert parquet_shards(full_cfg, str(tmp_path / "scenes"), "hint") == shards[:2]
    with pytest.warns(UserWarning):
        assert len(load_parquet(full_cfg, str(tmp_path / "scenes"), "hint")) == 8
    with pytest.raises(CourseError, match="offline.*cannot download owner/name.*set COURSE_DATA") as error:
        parquet_shards(full_cfg, "owner/name", "set COURSE_DATA")
    assert "\n" not in str(error.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CourseError, match="no readable parquet shard"):
        parquet_shards(replace(full_cfg, offline=False), str(empty), "hint")


def test_hub_download_failure_is_one_line(full_cfg, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise ConnectionError("Max retries exceeded with url: /api/datasets/zoheb/sketch-scene\nmore")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)  # no network: fail at once, no retries
    with pytest.raises(CourseError, match="cannot download zoheb/sketch-scene: the Hugging Face hub cannot be "
                                          "reached.*COURSE_QUICK=1") as error:
        load_sketches(replace(full_cfg, offline=False))
    assert "\n" not in str(error.value)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: True)  # reachable, but the download fails
    with pytest.raises(CourseError, match="cannot download zoheb/sketch-scene.*Max retries.*COURSE_QUICK=1") as error:
        load_sketches(replace(full_cfg, offline=False))
    assert "\n" not in str(error.value)
    assert not Path(full_cfg.data_root, "huggingface").exists() or not any(
        Path(full_cfg.data_root, "huggingface").rglob("*.parquet"))
