"""Quick mode online: real subsets of CIFAR-10, the CelebA mirror and sketch-scene, each fetched once and cached,
and the procedural stand-ins when the download cannot happen (helpers.data: cifar10, celeba, sketches, hub, splits).

Nothing is downloaded: the downloads are served from stand-ins in their real formats (tests/standins.py) by
patching the download functions at their lowest level: torchvision's `download_url` (which would fetch
cifar-10-python.tar.gz) and the hub's `HfApi.list_repo_tree` + `hf_hub_download` (which would list and fetch
parquet shards). Each test says, through its fakes, which calls the network would have seen.
"""
from __future__ import annotations

import io
import shutil
import socket
import tarfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import sketch as sk
from helpers.config import Recipe, get_config
from helpers.data import celeba, cifar10, hub
from helpers.data.celeba import load_celeba, synthetic_faces
from helpers.data.cifar10 import CIFAR10_CLASSES, load_cifar10, synthetic_cifar
from helpers.data.sketches import load_sketches
from helpers.data.splits import download_notice, host_reachable
from helpers.errors import CourseError, Unavailable
from helpers.registry import recipes
from standins import SCENE_PLACES, truncate, write_celeba_mirror, write_cifar10, write_sketch_scene


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Quick mode, online, no COURSE_DATA, downloads into an empty temporary folder."""
    for name in ("COURSE_DATA", "COURSE_OFFLINE", "HF_HUB_OFFLINE", "COURSE_HUB_CELEBA", "COURSE_HUB_SKETCHES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COURSE_DOWNLOADS", str(tmp_path / "downloads"))
    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    cfg = get_config(quick=True)
    assert not cfg.offline and cfg.local_data is None
    return cfg


def _lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.strip()]


def _refuse(*args, **kwargs):
    raise AssertionError("the network may not be tried here")


# ------------------------------------------------------------------------------------------ shared pieces
def test_reachability_answers_fast():
    with socket.create_server(("127.0.0.1", 0)) as server:  # something listening: reachable
        port = server.getsockname()[1]
        assert host_reachable(f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    assert not host_reachable(f"http://127.0.0.1:{port}/")  # nothing listening any more: refused at once
    start = time.perf_counter()
    assert not host_reachable("https://no-such-host.invalid/data.tar.gz", timeout=3.0)  # a name that never resolves
    assert time.perf_counter() - start < 3.5


def test_download_notice_says_size_time_and_place():
    line = download_notice("CIFAR-10", cifar10.DOWNLOAD_BYTES, "data/")
    assert line == ("downloading CIFAR-10: 163 MiB, about 16 s at 10 MiB/s (3 min at 1 MiB/s); once, into data/")


def test_the_cifar_url_is_torchvisions():
    from torchvision.datasets import CIFAR10

    assert cifar10.DOWNLOAD_URL == CIFAR10.url


# ------------------------------------------------------------------------------------------ CIFAR-10
def _serve_cifar_archive(monkeypatch, tmp_path, per_class: int = 5, test_per_class: int = 4) -> list:
    """torchvision's download_url, served from a stand-in cifar-10-python.tar.gz (the real archive's layout:
    cifar-10-batches-py/ with pickled batches); returns the list of calls it receives."""
    import torchvision.datasets
    import torchvision.datasets.utils

    folder = write_cifar10(tmp_path / "standin", n_train_per_class=per_class, n_test_per_class=test_per_class)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname="cifar-10-batches-py")
    calls = []

    def download_url(url, root, filename=None, md5=None, max_redirect_hops=3):
        calls.append(url)
        Path(root).mkdir(parents=True, exist_ok=True)  # as download_url does
        Path(root, filename).write_bytes(buffer.getvalue())

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", download_url)
    monkeypatch.setattr(cifar10, "host_reachable", lambda url, timeout=3.0: url == cifar10.DOWNLOAD_URL)
    # the stand-in's batches cannot match the real MD5 sums: check that every file is there instead
    CIFAR10 = torchvision.datasets.CIFAR10
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: all(
        Path(self.root, self.base_folder, name).exists() for name, _ in self.train_list + self.test_list))
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": None})
    return calls


def test_cifar_quick_online_downloads_once_and_keeps_the_first_per_class(online, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cifar10, "QUICK_PER_CLASS", 3)  # the stand-in holds 5 per class, the real one 5,000
    monkeypatch.setattr(cifar10, "QUICK_HELDOUT_PER_CLASS", 2)
    calls = _serve_cifar_archive(monkeypatch, tmp_path)
    data = load_cifar10(online)
    assert calls == [cifar10.DOWNLOAD_URL]
    notice, which = _lines(capsys)
    assert notice.startswith("downloading CIFAR-10 from www.cs.toronto.edu") and "163 MiB" in notice
    assert which == "real CIFAR-10 (torchvision, 3 per class: 30 to train, 20 held out)"
    assert data.source.startswith("torchvision") and data.classes == CIFAR10_CLASSES
    assert data.train_labels.bincount().tolist() == [3] * 10 and data.test_labels.bincount().tolist() == [2] * 10
    assert data.train_labels[:10].tolist() == list(range(10))  # dealt out class by class
    images, labels = synthetic_cifar(5, seed=0)  # what the stand-in's training batches hold
    for c in range(10):  # the first 3 of each class, pixel for pixel
        assert torch.equal(data.train_images[data.train_labels == c], images[labels == c][:3])
    assert (online.data_root / "cifar-10-batches-py" / "data_batch_1").exists()

    monkeypatch.setattr(cifar10, "host_reachable", _refuse)  # cached: no check, no download, offline too
    again = load_cifar10(replace(online, offline=True), limit_per_class=2)
    assert calls == [cifar10.DOWNLOAD_URL] and again.train_labels.bincount().tolist() == [2] * 10
    assert [line.split(" (")[0] for line in _lines(capsys)] == ["real CIFAR-10"]


def test_cifar_offline_is_procedural_in_one_line_without_the_network(online, monkeypatch, capsys):
    import torchvision.datasets.utils

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", _refuse)
    monkeypatch.setattr(cifar10, "host_reachable", _refuse)
    data = load_cifar10(replace(online, offline=True), limit_per_class=2)
    assert data.source.startswith("synthetic")
    assert _lines(capsys) == [f"offline (HF_HUB_OFFLINE/COURSE_OFFLINE is set) and no CIFAR-10 in {online.data_root}"
                              ": procedural icons (20 to train, 2,000 held out), set COURSE_DATA for real ones"]


def test_cifar_unreachable_or_failing_falls_back_in_quick_mode_only(online, monkeypatch, capsys):
    import torchvision.datasets.utils

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", _refuse)
    monkeypatch.setattr(cifar10, "host_reachable", lambda url, timeout=3.0: False)
    assert load_cifar10(online, limit_per_class=1).source.startswith("synthetic")
    (line,) = _lines(capsys)
    assert "www.cs.toronto.edu cannot be reached): procedural icons" in line
    with pytest.raises(Unavailable, match="cannot be reached.*COURSE_DATA") as error:  # full mode: one-line error
        load_cifar10(replace(online, quick=False))
    assert "\n" not in str(error.value)
    with pytest.raises(CourseError, match="cannot be reached"):  # a source asked for by name does not fall back
        load_cifar10(online, source="torchvision")

    def broken(url, root, filename=None, md5=None, max_redirect_hops=3):
        raise RuntimeError("File not found or corrupted.")  # what download_url says of a bad transfer

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", broken)
    monkeypatch.setattr(cifar10, "host_reachable", lambda url, timeout=3.0: True)
    assert load_cifar10(online, limit_per_class=1).source.startswith("synthetic")
    assert "File not found or corrupted.): procedural icons" in _lines(capsys)[-1]


# ------------------------------------------------------------------------------------------ the hub
def _serve_hub(monkeypatch, folder: Path, fail_on: str | None = None) -> list[str]:
    """The hub's listing and per-file download, served from `folder` (parquet shards under data/) into the hub's
    cache layout; returns the files downloaded. `fail_on`: a file whose download breaks off."""
    import huggingface_hub

    downloads = []

    def list_repo_tree(self, repo_id, path_in_repo=None, *, recursive=False, repo_type=None, **kwargs):
        assert repo_type == "dataset" and recursive
        yield SimpleNamespace(path="README.md", size=120)
        yield SimpleNamespace(path="data")  # a folder: no size
        for path in sorted(folder.rglob("*.parquet")):
            yield SimpleNamespace(path=str(path.relative_to(folder)), size=path.stat().st_size)

    def hf_hub_download(repo_id, filename, *, repo_type=None, cache_dir=None, **kwargs):
        assert repo_type == "dataset" and cache_dir
        if filename == fail_on:
            raise ConnectionError("Connection broken: IncompleteRead(3 bytes read)")
        downloads.append(filename)
        target = Path(cache_dir, f"datasets--{repo_id.replace('/', '--')}", "snapshots", "standin", filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / filename, target)
        return str(target)

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", list_repo_tree)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _refuse)  # quick mode never takes the whole set
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: True)
    return downloads


def test_celeba_quick_online_fetches_only_the_shards_it_needs(online, monkeypatch, tmp_path, capsys):
    shards = write_celeba_mirror(tmp_path / "mirror", n=60, shards=6)  # 10 faces a shard
    truncate(shards[1])  # cut short, as some of the real mirror's shards are
    monkeypatch.setattr(celeba, "QUICK_FACES", 20)
    monkeypatch.setattr(celeba, "QUICK_SHARDS", 2)
    downloads = _serve_hub(monkeypatch, tmp_path / "mirror")
    with pytest.warns(UserWarning, match="train-00001-of-00006.parquet is truncated; taking the next"):
        data = load_celeba(online, image_size=32)
    assert downloads == [f"data/train-0000{i}-of-00006.parquet" for i in (0, 1, 2)]  # never shards 3 to 5
    notice, which = _lines(capsys)
    assert notice.startswith("downloading quick mode's 20 real CelebA faces: 2 of the 6 parquet shards of "
                             "huggan/CelebA-faces-with-attributes")
    assert which.startswith("real CelebA faces (Hugging Face huggan/") and "18 to train, 2 held out" in which
    assert len(data.train_images) == 18 and len(data.test_images) == 2 and data.image_size == 32
    expected = synthetic_faces(60, seed=4, image_size=64)[1]  # the stand-in's rows: shards 0 and 2
    assert torch.equal(torch.cat([data.train_attrs, data.test_attrs]), torch.cat([expected[:10], expected[20:30]]))
    assert data.train_images.float().std() > 20

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _refuse)
    monkeypatch.setattr(hub, "hub_reachable", _refuse)
    for path in (online.data_root / "cache").iterdir():  # without the preprocessed faces: the shards' cache
        path.unlink()
    again = load_celeba(replace(online, offline=True), image_size=32, limit=5)
    assert torch.equal(again.train_attrs, data.train_attrs[:5]) and torch.equal(again.test_images, data.test_images)
    assert [line.split(" (")[0] for line in _lines(capsys)] == ["real CelebA faces"]


def test_celeba_interrupted_download_keeps_nothing_and_falls_back(online, monkeypatch, tmp_path, capsys):
    write_celeba_mirror(tmp_path / "mirror", n=40, shards=4)
    monkeypatch.setattr(celeba, "SYNTHETIC_SIZES", {"quick": (30, 10), "full": (30, 10)})
    monkeypatch.setattr(celeba, "QUICK_FACES", 20)
    monkeypatch.setattr(celeba, "QUICK_SHARDS", 2)
    _serve_hub(monkeypatch, tmp_path / "mirror", fail_on="data/train-00001-of-00004.parquet")
    data = load_celeba(online, image_size=32)
    assert data.source.startswith("synthetic")
    notice, line = _lines(capsys)
    assert line.startswith("cannot download data/train-00001-of-00004.parquet of huggan/CelebA-faces-with-attributes"
                           " from the Hugging Face hub (Connection broken") and "procedural faces" in line
    assert not (online.data_root / "huggingface" / "quick").exists()  # no marker: the set is not whole

    downloads = _serve_hub(monkeypatch, tmp_path / "mirror")  # the connection is back
    assert load_celeba(online, image_size=32).source.startswith("Hugging Face huggan/CelebA-faces-with-attributes")
    assert downloads == ["data/train-00000-of-00004.parquet", "data/train-00001-of-00004.parquet"]


def test_hub_offline_is_procedural_in_one_line_without_the_network(online, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", _refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _refuse)
    monkeypatch.setattr(hub, "hub_reachable", _refuse)
    monkeypatch.setattr(celeba, "SYNTHETIC_SIZES", {"quick": (30, 10), "full": (30, 10)})
    offline = replace(online, offline=True)
    assert load_celeba(offline, image_size=32).source.startswith("synthetic")
    assert _lines(capsys) == ["offline (HF_HUB_OFFLINE/COURSE_OFFLINE is set): cannot download huggan/CelebA-faces-"
                              "with-attributes from the Hugging Face hub: procedural faces (30 to train, 10 held "
                              "out), set COURSE_DATA for real ones"]
    sketches = load_sketches(offline, limit_per_class=2, image_size=32)
    assert sketches.source.startswith("synthetic") and sketches.classes
    (line,) = _lines(capsys)
    assert line.startswith("offline (HF_HUB_OFFLINE/COURSE_OFFLINE is set): cannot download zoheb/sketch-scene")
    assert line.endswith("procedural sketches of six classes (12 to train, 360 held out), set COURSE_DATA for real "
                         "ones")
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)  # online, but no network
    assert load_sketches(online, limit_per_class=2, image_size=32).source.startswith("synthetic")
    assert "the Hugging Face hub cannot be reached: procedural sketches" in _lines(capsys)[0]


# ------------------------------------------------------------------------------------------ sketch scenes
@pytest.fixture
def tiny_recipes():
    table = recipes()
    saved = {k: table[k]["quick"] for k in ("sketch-cvae", "clip-sketch")}
    table["sketch-cvae"]["quick"] = Recipe(epochs=1, batch_size=16, lr=2e-3, width=8, latent_dim=8)
    table["clip-sketch"]["quick"] = Recipe(epochs=1, batch_size=16, lr=5e-4, width=8, latent_dim=16)
    yield
    for key, recipe in saved.items():
        table[key]["quick"] = recipe


def test_sketch_scene_quick_online_is_judged_by_retrieval(online, monkeypatch, tmp_path, capsys, tiny_recipes):
    write_sketch_scene(tmp_path / "scenes", n=60, shards=2)
    monkeypatch.setattr("helpers.data.sketches.QUICK_ROWS", 40)
    downloads = _serve_hub(monkeypatch, tmp_path / "scenes")
    data = load_sketches(online, image_size=64)  # QUICK_ROWS from the first file (30 rows) only
    assert downloads == ["data/train-00000-of-00002.parquet"]
    notice, which = _lines(capsys)
    assert notice.startswith("downloading quick mode's 40 real scene sketches: 1 of the 2 parquet shards of "
                             "zoheb/sketch-scene")
    assert which == "real scene sketches with sentence captions (zoheb/sketch-scene: 27 to train, 3 held out)"
    assert data.classes == () and (data.train_labels == -1).all() and data.image_size == 64
    assert all(c.endswith(SCENE_PLACES) for c in data.train_captions + data.test_captions)
    assert 0.005 < data.train_images.float().div(255).mean() < 0.5  # strokes on a mostly blank page
    with monkeypatch.context() as patch:  # decoded once: the second time (offline) from the caches
        patch.setattr("helpers.data.sketches._to_ink", _refuse)
        again = load_sketches(replace(online, offline=True), image_size=64)
    assert torch.equal(again.test_images, data.test_images) and again.train_captions == data.train_captions
    capsys.readouterr()

    # the track (notebook 08, the CLI, notebook 09) judges these as full mode's scenes: by retrieval, not classes
    cfg = replace(online, runs_dir=tmp_path / "runs")
    data = sk.sketch_data(cfg)  # 128x128, quick mode's share, from the cache now
    assert not downloads[1:] and data.classes == () and len(data.test_captions) == 3
    with pytest.raises(CourseError, match="no classes to judge"):
        sk.load_or_train_doodle_judge(cfg, data)
    encoder, recorded = sk.load_sketch_encoder(cfg, "ours", data)
    model = sk.train_sketch_cvae(cfg, cfg.runs_dir / "sketch", data=data, encoder=encoder, recorded=recorded,
                                 progress=False)
    measured = sk._measure(cfg, model, n=1, seed=0)
    assert measured["metric"] == "CLIP retrieval R@1 among 3 held-out captions"
    assert 0.0 <= measured["value"] <= 1.0 and 0.0 <= measured["judge"] <= 1.0
