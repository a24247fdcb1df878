"""CelebA faces (local sample, full download, procedural stand-in) and attribute captions (notebooks 03-04)."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.config import get_config
from helpers.data import celeba, hub
from helpers.data.captions import (PHRASES, ContradictoryPrompt, caption, captions_for, describe_vocabulary,
                                   parse_prompt, zero_shot_prompts)
from helpers.data.celeba import (ATTRIBUTES, COLUMN, LOCAL_CSV, LOCAL_TAR, FaceSplits, load_celeba,
                                 synthetic_faces, to_float, to_uint8)
from helpers.errors import CourseError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def env(monkeypatch, tmp_path) -> Path:
    """No local data, online, downloads and caches into a temporary folder (never into the repository)."""
    monkeypatch.setenv("COURSE_DOWNLOADS", str(tmp_path / "downloads"))
    for name in ("COURSE_DATA", "HF_HUB_OFFLINE", "COURSE_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "downloads"


@pytest.fixture(scope="module")
def faces() -> tuple[torch.Tensor, torch.Tensor]:
    return synthetic_faces(800, seed=0)


@pytest.fixture(scope="module")
def celeba_root() -> Path:
    local = os.environ.get("COURSE_DATA")
    root = Path(local) if local else SHARED_DATA
    if not ((root / LOCAL_TAR).exists() and (root / LOCAL_CSV).exists()):
        pytest.skip(f"the real CelebA sample ({LOCAL_TAR}, {LOCAL_CSV}) is not at {root} "
                    "(set COURSE_DATA to ../shared/data)")
    return root


def column(attrs: torch.Tensor, name: str) -> torch.Tensor:
    return attrs[:, COLUMN[name]].bool()


# ------------------------------------------------------------------------------------------ synthetic faces
def test_synthetic_faces_shapes_and_determinism(faces):
    images, attrs = faces
    assert images.shape == (800, 3, 64, 64) and images.dtype == torch.uint8
    assert attrs.shape == (800, 40) and attrs.dtype == torch.uint8 and set(attrs.unique().tolist()) <= {0, 1}
    again_images, again_attrs = synthetic_faces(20, seed=0)
    assert torch.equal(again_images, images[:20]) and torch.equal(again_attrs, attrs[:20])
    other_images, _ = synthetic_faces(20, seed=1)
    assert not torch.equal(other_images, images[:20])
    small, _ = synthetic_faces(3, seed=0, image_size=32)
    assert small.shape == (3, 3, 32, 32)
    assert 60 < images.float().mean() < 200 and images.float().std() > 30  # neither blank nor saturated


def test_synthetic_attributes_follow_celeba_dependencies(faces):
    _, attrs = faces
    male = column(attrs, "Male")
    for name in ("Goatee", "Mustache", "Sideburns", "5_o_Clock_Shadow", "Wearing_Necktie"):
        assert not (column(attrs, name) & ~male).any(), f"{name} on a woman"
    assert column(attrs, "No_Beard")[~male].all()
    assert not (column(attrs, "Wearing_Lipstick") & male).any()
    hair = attrs[:, [COLUMN[n] for n in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")]]
    assert hair.sum(1).max() <= 1
    bald = column(attrs, "Bald")
    assert not (bald & (column(attrs, "Wearing_Hat") | column(attrs, "Bangs") | hair.bool().any(1))).any()
    assert not (column(attrs, "Straight_Hair") & column(attrs, "Wavy_Hair")).any()
    frequency = attrs.float().mean(0)
    assert 0.3 < frequency[COLUMN["Male"]] < 0.55 and 0.6 < frequency[COLUMN["Young"]] < 0.9
    assert (frequency[[COLUMN[n] for n in ("Eyeglasses", "Wearing_Hat", "Smiling")]] > 0.05).all()


def _toggle(name: str, value: bool, region: tuple[slice, slice]) -> tuple[float, float]:
    """Mean absolute pixel change inside and outside `region` when only `name` changes on one face."""
    base = {a: False for a in ATTRIBUTES} | {"Young": True, "No_Beard": True, "Brown_Hair": True}
    u = np.full(celeba.N_RANDOM, 0.5)
    before = np.asarray(celeba._draw_face(base, u, 64).reduce(2), dtype=np.float32)
    after = np.asarray(celeba._draw_face(base | {name: value}, u, 64).reduce(2), dtype=np.float32)
    change = np.abs(after - before).mean(2)
    inside = np.zeros_like(change, dtype=bool)
    inside[region] = True
    return float(change[inside].mean()), float(change[~inside].mean())


@pytest.mark.parametrize("name, region", [
    ("Eyeglasses", (slice(18, 36), slice(8, 56))),  # the eye band
    ("Smiling", (slice(36, 48), slice(22, 42))),  # the mouth
    ("Wearing_Hat", (slice(0, 26), slice(0, 64))),  # above the eyebrows
])
def test_drawn_attributes_change_their_region(name, region):
    inside, outside = _toggle(name, True, region)
    assert inside > 3 and inside > 10 * outside, (inside, outside)  # a visible change, and only there


def test_eyeglasses_show_in_the_mean_faces(faces):
    images, attrs = faces
    glasses = column(attrs, "Eyeglasses")
    difference = (images[glasses].float().mean(0) - images[~glasses].float().mean(0)).abs().mean(0)
    assert difference[24:34, 10:54].mean() > 2 * difference[48:64].mean()


def test_float_conversion_round_trips(faces):
    images = faces[0][:4]
    as_float = to_float(images)
    assert as_float.dtype == torch.float32 and as_float.min() >= -1 and as_float.max() <= 1
    assert torch.equal(to_uint8(as_float), images)


# ------------------------------------------------------------------------------------------ load_celeba
def test_quick_mode_without_local_data_is_synthetic(env, monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "1")  # online, quick mode would fetch the mirror's first shards
    data = load_celeba(get_config(quick=True))
    assert isinstance(data, FaceSplits) and "synthetic" in data.source
    assert data.train_images.shape == (4000, 3, 64, 64) and data.test_images.shape == (500, 3, 64, 64)
    image, attrs, index = data.train_set()[7]
    assert image.shape == (3, 64, 64) and -1 <= image.min() and image.max() <= 1 and image.dtype == torch.float32
    assert attrs.shape == (40,) and attrs.dtype == torch.float32 and index.dtype == torch.int64 and index == 7
    assert len(data.test_set()) == 500 and "train=4000" in repr(data)


def test_limit_keeps_the_first_training_faces(env, monkeypatch):
    monkeypatch.setattr(celeba, "SYNTHETIC_SIZES", {"quick": (300, 40), "full": (300, 40)})
    whole = load_celeba(get_config(quick=False), source="synthetic")
    some = load_celeba(get_config(quick=False), source="synthetic", limit=100)
    assert torch.equal(some.train_images, whole.train_images[:100]) and len(some.test_images) == 40


def test_bad_source_and_missing_local_files(env):
    with pytest.raises(CourseError, match="choose one of auto, local, download, synthetic"):
        load_celeba(get_config(quick=True), source="imagenet")
    with pytest.raises(CourseError, match="COURSE_DATA") as error:
        load_celeba(get_config(quick=True), source="local")
    assert "\n" not in str(error.value)


def test_local_sample(env, celeba_root, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", str(celeba_root))
    cfg = get_config(quick=True)
    data = load_celeba(cfg)
    assert "local" in data.source.lower() and "celeba" in data.source.lower()
    assert data.train_images.shape == (4500, 3, 64, 64) and data.test_images.shape == (500, 3, 64, 64)
    assert data.train_images.dtype == torch.uint8 and data.train_attrs.shape == (4500, 40)
    assert set(data.train_attrs.unique().tolist()) == {0, 1}
    assert 0.3 < column(data.train_attrs, "Male").float().mean() < 0.55  # CelebA: ~42% men
    # the held-out faces are the last 500 ids of the table
    table = celeba.read_attribute_csv(celeba_root / LOCAL_CSV)
    assert torch.equal(data.test_attrs, torch.from_numpy(np.stack([table[i] for i in sorted(table)[-500:]])))
    # real photos: a face-coloured centre, varied backgrounds
    centre = data.train_images[:, :, 24:40, 24:40].float().mean((0, 2, 3))
    assert centre[0] > centre[2] + 15 and data.train_images.float().std() > 40
    cache = cfg.data_root / "cache" / "celeba_local5k_64.npz"
    assert cache.exists() and not list(cache.parent.glob(".*tmp*"))

    def no_decoding(*args):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(celeba, "_read_local", no_decoding)
    again = load_celeba(cfg, source="local", limit=1000)
    assert torch.equal(again.train_images, data.train_images[:1000])
    assert torch.equal(again.test_images, data.test_images)


# ------------------------------------------------------------------------------------------ full mode
# Full mode reads the Hugging Face mirror's parquet shards first and torchvision's CelebA folder second; both are
# written here in their real formats by tests/standins.py (nothing is downloaded).
def _forbid_downloads(monkeypatch):
    import huggingface_hub
    import torchvision.datasets

    def refuse(*args, **kwargs):
        raise AssertionError("no download may be attempted")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    monkeypatch.setattr(torchvision.datasets.CelebA, "download", refuse)


def _cache_files(env: Path) -> list[str]:
    return sorted(p.name for p in (env / "cache").iterdir()) if (env / "cache").exists() else []


def test_full_mode_offline_fails_in_one_line(env, monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    _forbid_downloads(monkeypatch)
    with pytest.raises(CourseError, match="offline.*huggan.*torchvision.*COURSE_DATA") as error:
        load_celeba(get_config(quick=False))
    assert "\n" not in str(error.value) and not _cache_files(env)


def test_full_mode_failed_downloads_fail_in_one_line(env, monkeypatch):
    import huggingface_hub
    import torchvision.datasets

    def no_network(*args, **kwargs):
        raise ConnectionError("no route to host")

    def drive_quota(*args, **kwargs):
        raise RuntimeError("Too many users have viewed or downloaded this file recently")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: True)  # reachable, but the download fails
    monkeypatch.setattr(torchvision.datasets, "CelebA", drive_quota)
    with pytest.raises(CourseError, match="could not be downloaded.*huggan.*cannot download.*no route to host.*torchvision.*RuntimeError"
                       ) as error:
        load_celeba(get_config(quick=False))
    assert "\n" not in str(error.value) and "COURSE_DATA" in str(error.value) and not _cache_files(env)


def test_full_mode_reads_the_parquet_mirror_first_and_caches_it(env, monkeypatch, tmp_path):
    from standins import write_celeba_mirror

    write_celeba_mirror(tmp_path / "mirror", n=30, shards=3)
    monkeypatch.setenv("COURSE_HUB_CELEBA", str(tmp_path / "mirror"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a local folder of shards needs no network
    _forbid_downloads(monkeypatch)
    data = load_celeba(get_config(quick=False), image_size=32)
    assert "parquet" in data.source and len(data.train_images) == 27 and len(data.test_images) == 3
    expected = synthetic_faces(30, seed=4, image_size=64)[1]  # the attributes the stand-in wrote, as -1/1
    assert torch.equal(data.train_attrs, expected[:27]) and torch.equal(data.test_attrs, expected[27:])
    assert data.train_images.shape[1:] == (3, 32, 32) and data.train_images.float().std() > 20
    monkeypatch.setenv("COURSE_HUB_CELEBA", str(tmp_path / "gone"))  # the second time: the cache alone
    again = load_celeba(get_config(quick=False), image_size=32, limit=10)
    assert torch.equal(again.train_images, data.train_images[:10])
    assert not [name for name in _cache_files(env) if "tmp" in name]


def test_truncated_mirror_shards_are_skipped_and_all_truncated_fails(env, monkeypatch, tmp_path):
    from standins import truncate, write_celeba_mirror

    shards = write_celeba_mirror(tmp_path / "mirror", n=30, shards=3)
    truncate(shards[1])  # cut short, as some of the real mirror's shards are
    monkeypatch.setenv("COURSE_HUB_CELEBA", str(tmp_path / "mirror"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.warns(UserWarning, match="skipping 1 truncated shard.*train-00001-of-00003"):
        data = load_celeba(get_config(quick=False), image_size=32)
    assert len(data.train_images) + len(data.test_images) == 20
    for shard in shards:
        truncate(shard)
    for path in (env / "cache").iterdir():
        path.unlink()
    with pytest.raises(CourseError, match="no readable parquet shard.*COURSE_DATA") as error:
        load_celeba(get_config(quick=False), image_size=32)
    assert "\n" not in str(error.value) and not _cache_files(env)


def test_full_mode_reads_torchvisions_celeba_folder(env, monkeypatch):
    import torchvision.datasets
    from standins import write_celeba_torchvision

    write_celeba_torchvision(env, n=20)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the mirror is out of reach; the downloaded folder is there
    _forbid_downloads(monkeypatch)
    monkeypatch.setattr(torchvision.datasets.CelebA, "_check_integrity", lambda self: True)  # stand-in MD5s
    data = load_celeba(get_config(quick=False), image_size=32)
    assert "torchvision" in data.source and len(data.train_images) == 16 and len(data.test_images) == 2
    expected = synthetic_faces(20, seed=3, image_size=64)[1]
    assert torch.equal(data.train_attrs, expected[:16]) and torch.equal(data.test_attrs, expected[18:])


def test_an_interrupted_download_leaves_nothing_a_later_run_trusts(env, monkeypatch):
    from standins import write_celeba_torchvision

    folder = write_celeba_torchvision(env, n=20)
    (folder / "img_align_celeba" / "000019.jpg").unlink()  # the test split's first face never arrived
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _forbid_downloads(monkeypatch)
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.CelebA, "_check_integrity", lambda self: True)
    with pytest.raises(CourseError, match="could not be downloaded.*FileNotFoundError.*COURSE_DATA") as error:
        load_celeba(get_config(quick=False), image_size=32)
    assert "\n" not in str(error.value)
    assert not [name for name in _cache_files(env) if name.endswith(".json") or "tmp" in name]


# ------------------------------------------------------------------------------------------ captions
def test_every_attribute_has_phrases_that_parse_back():
    assert set(PHRASES) == set(ATTRIBUTES)
    for name in ATTRIBUTES:
        assert PHRASES[name].present, name
        positive, negative = zero_shot_prompts(name)
        assert len(positive) >= 1 and len(negative) >= 1
        for prompt in positive:
            assert parse_prompt(prompt) == {name: True}, prompt
        for prompt in negative:
            assert parse_prompt(prompt) in ({name: False}, {}), prompt
    several = [n for n in ATTRIBUTES if len(PHRASES[n].present) >= 2]
    assert len(several) >= 25
    assert zero_shot_prompts("Male") [1][0] == "a photo of a woman"
    with pytest.raises(CourseError):
        zero_shot_prompts("Tall")


def _agrees(text: str, row: list[int]) -> None:
    for name, value in parse_prompt(text).items():
        assert value == bool(row[COLUMN[name]]), f"{text!r}: {name}={value} but the row says {row[COLUMN[name]]}"


def test_captions_round_trip_through_parse_prompt(faces):
    rng = random.Random(0)
    random_rows = [[rng.randint(0, 1) for _ in range(40)] for _ in range(300)]  # any combination, even odd ones
    rows = random_rows + faces[1][:300].tolist()
    for seed in range(3):
        draw = random.Random(seed)
        for row in rows:
            text = caption(row, draw)
            _agrees(text, row)
            mentioned = parse_prompt(text)
            assert "Male" in mentioned or "person" in text
            assert 2 <= len(mentioned) <= 9, text
    for row in rows[:100]:
        _agrees(caption(row, rng, canonical=True), row)


def test_real_captions_round_trip(celeba_root):
    table = celeba.read_attribute_csv(celeba_root / LOCAL_CSV)
    rng = random.Random(1)
    for image_id in sorted(table)[:500]:
        row = table[image_id].tolist()
        _agrees(caption(row, rng), row)
        _agrees(caption(row, rng, canonical=True), row)


def test_captions_vary_and_canonical_is_fixed(faces):
    row = faces[1][3]
    texts = {caption(row, random.Random(seed)) for seed in range(60)}
    assert len(texts) > 30
    canonical = caption(row, random.Random(0), canonical=True)
    assert canonical == caption(row.tolist(), random.Random(99), canonical=True)
    assert canonical.startswith("a photo of") or "photo of" in canonical
    everything = parse_prompt(canonical)
    for name in ("Smiling", "Eyeglasses", "Wearing_Hat", "Blond_Hair", "Black_Hair", "Heavy_Makeup"):
        if row[COLUMN[name]]:
            assert everything.get(name) is True, canonical
    example = [0] * 40
    for name in ("Smiling", "Young", "Blond_Hair", "Heavy_Makeup", "Wearing_Earrings", "No_Beard"):
        example[COLUMN[name]] = 1
    assert caption(example, random.Random(0), canonical=True) == \
        "a photo of a smiling young woman with blond hair and heavy makeup, wearing earrings"


def test_captions_for_is_deterministic(faces):
    attrs = faces[1][:10]
    one = captions_for(attrs, seed=5)
    assert one == captions_for(attrs, seed=5) and len(one) == 10 and all(isinstance(t, str) for t in one)
    assert one != captions_for(attrs, seed=6)
    many = captions_for(attrs, seed=5, per_image=3)
    assert len(many) == 10 and all(len(texts) == 3 for texts in many)


@pytest.mark.parametrize("prompt, expected", [
    ("a smiling woman with blond hair", {"Smiling": True, "Male": False, "Blond_Hair": True}),
    ("a man without glasses", {"Male": True, "Eyeglasses": False}),
    ("A CLEAN-SHAVEN guy, isn't smiling!", {"Male": True, "No_Beard": True, "Smiling": False}),
    ("a woman with black hair, not smiling", {"Male": False, "Black_Hair": True, "Smiling": False}),
    ("an older lady in spectacles and a hat", {"Male": False, "Young": False, "Eyeglasses": True, "Wearing_Hat": True}),
    ("a bearded man with no hat or tie", {"Male": True, "No_Beard": False, "Wearing_Hat": False,
                                          "Wearing_Necktie": False}),
    ("a woman without makeup and wearing lipstick", {"Male": False, "Heavy_Makeup": False, "Wearing_Lipstick": True}),
    ("a person with a five o'clock shadow", {"5_o_Clock_Shadow": True}),
    ("a grumpy giraffe", {}),
    ("", {}),
])
def test_parse_prompt(prompt, expected):
    assert parse_prompt(prompt) == expected


@pytest.mark.parametrize("prompt, words", [
    ("a man who is a woman", "'man' and 'woman'"),
    ("smiling and not smiling", "'smiling' and 'not smiling'"),
    ("a woman with blond hair and black hair", "hair colour"),
    ("a clean-shaven man with a beard", "No_Beard"),
])
def test_contradictions_are_refused(prompt, words):
    with pytest.raises(ContradictoryPrompt, match=words) as error:
        parse_prompt(prompt)
    assert isinstance(error.value, CourseError) and "\n" not in str(error.value)


def test_vocabulary_description_is_one_line():
    text = describe_vocabulary()
    assert "\n" not in text and "eyeglasses" in text and "man/woman" in text and "without" in text
