"""CLIP from scratch (notebook 03): tokenizer, contrastive loss, metrics, training that learns, the encoder API."""
from __future__ import annotations

import random
import warnings

import pytest
import torch

from helpers.clip import (CaptionTokenizer, ClipTextEncoder, balanced_accuracy, caption_corpus, evaluate_clip,
                          recall_at_k, train_clip)
from helpers.data.captions import caption
from helpers.data.celeba import ATTRIBUTES, FaceSplits, synthetic_faces
from helpers.errors import CourseError
from helpers.models.clip import CLIPConfig, CLIPModel


@pytest.fixture(scope="module")
def small_faces() -> FaceSplits:
    images, attrs = synthetic_faces(1400, seed=3, image_size=64)
    return FaceSplits(images[:1200], attrs[:1200], images[1200:], attrs[1200:], source="synthetic (test)",
                      image_size=64)


@pytest.fixture(scope="module")
def tokenizer(small_faces) -> CaptionTokenizer:
    return CaptionTokenizer.train(caption_corpus(small_faces.train_attrs, seed=0))


def test_tokenizer_round_trip_and_unknown_words(tokenizer):
    ids, mask = tokenizer(["a smiling woman with blond hair", "a man"], max_tokens=40)
    assert ids.shape == mask.shape and ids.shape[0] == 2
    assert mask[1].sum() < mask[0].sum()  # the shorter caption is padded
    assert (ids[mask == 0] == 0).all()
    assert tokenizer.unknown_words("a smiling woman with blond hair") == []
    assert tokenizer.unknown_words("a smiling giraffe") == ["giraffe"]
    restored = CaptionTokenizer.from_str(tokenizer.to_str())
    assert torch.equal(restored(["a man with eyeglasses"], 40)[0], tokenizer(["a man with eyeglasses"], 40)[0])


def test_infonce_prefers_matching_pairs_and_handles_duplicate_captions():
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(vocab_size=50, image_width=8, text_width=32, text_layers=1, embed_dim=16))
    images, ids = torch.randn(4, 3, 64, 64), torch.randint(1, 50, (4, 6))
    mask = torch.ones_like(ids)
    out = model(images, ids, mask)
    assert out["loss"].shape == () and torch.isfinite(out["loss"])
    # Two identical captions: the target is split between both, and the loss is still finite and lower-bounded.
    same = torch.eye(4, dtype=torch.bool)
    same[0, 1] = same[1, 0] = True
    assert torch.isfinite(model(images, ids, mask, same_caption=same)["loss"])
    # Masked padding does not change a caption's embedding.
    padded = torch.cat([ids[:1], torch.zeros(1, 3, dtype=torch.long)], 1)
    a = model.encode_text(ids[:1], mask[:1])
    b = model.encode_text(padded, (padded != 0).long())
    assert torch.allclose(a, b, atol=1e-5)


def test_recall_and_balanced_accuracy_by_hand():
    similarity = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.3, 0.2, 0.1]])  # ranks 0, 1, 2
    recall = recall_at_k(similarity, ks=(1, 2))
    assert recall[1] == pytest.approx(1 / 3) and recall[2] == pytest.approx(2 / 3)
    predicted = torch.tensor([[1, 1], [1, 0], [0, 0], [0, 0]])
    actual = torch.tensor([[1, 0], [0, 0], [0, 0], [0, 1]])
    # column 0: TPR 1/1, TNR 2/3; column 1: TPR 0/1, TNR 2/3
    assert balanced_accuracy(predicted, actual).tolist() == pytest.approx([(1 + 2 / 3) / 2, (0 + 2 / 3) / 2])


@pytest.mark.slow
def test_clip_learns_drawn_attributes(quick_cfg, small_faces, tmp_path, monkeypatch, capsys):
    """A short run on procedural faces: the loss falls and the attribute every caption names (man / woman) is
    learnt well above chance, zero-shot, on held-out faces; retrieval beats chance."""
    trainer = train_clip(quick_cfg, tmp_path / "clip", epochs=4, batch_size=32, progress=False, data=small_faces)
    encoder = ClipTextEncoder(trainer.model, trainer.tokenizer)
    scores = evaluate_clip(encoder, small_faces.test_images, small_faces.test_attrs)
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"] - 0.3
    assert scores["zero_shot"]["Male"] > 0.75, scores["zero_shot"]
    assert scores["text_to_image"][10] > 2 * scores["chance_at_10"]
    # the run folder is all a later notebook needs: tokenizer + weights
    reloaded = ClipTextEncoder.from_checkpoint(tmp_path / "clip")
    texts = ["a smiling man wearing eyeglasses", "a woman with blond hair"]
    assert torch.allclose(reloaded.encode(texts), encoder.encode(texts), atol=1e-5)
    tokens, mask = reloaded.encode_tokens(texts)
    assert tokens.shape[:2] == mask.shape and tokens.shape[2] == reloaded.token_dim
    # the command line reports the same numbers for the saved run
    import helpers.clip
    from helpers.__main__ import main

    monkeypatch.setattr(helpers.clip, "face_data", lambda cfg: small_faces)
    capsys.readouterr()
    assert main(["evaluate", "--model", "clip", "--checkpoint", str(tmp_path / "clip"), "--quick"]) == 0
    out = capsys.readouterr().out
    assert f"R@10 {scores['text_to_image'][10]:.3f}" in out.split("text_to_image")[1].splitlines()[0]
    assert f"zero-shot mean over 40 attributes: {scores['zero_shot_mean']:.3f}" in out


def test_encoder_prompt_checks(small_faces, tokenizer):
    encoder = ClipTextEncoder(CLIPModel(CLIPConfig(vocab_size=tokenizer.vocab_size, image_width=8, text_width=32,
                                                   text_layers=1, embed_dim=16)), tokenizer)
    with pytest.raises(CourseError, match="empty"):
        encoder.check_prompt("   ")
    with pytest.raises(CourseError, match="limit"):
        encoder.check_prompt("a smiling man " * 100)
    with pytest.warns(UserWarning, match="giraffe"):
        encoder.check_prompt("a smiling giraffe")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.check_prompt("a smiling man")
    assert encoder.encode(["a man", "a woman"]).shape == (2, 16)
    assert encoder.encode_images(small_faces.test_images[:3]).shape == (3, 16)


def test_captions_feed_the_tokenizer(small_faces, tokenizer):
    rng = random.Random(0)
    texts = [caption(row, rng) for row in small_faces.train_attrs[:50].tolist()]
    ids, mask = tokenizer(texts, 40)
    assert (ids[mask == 1] != tokenizer.backend.token_to_id("[UNK]")).all()
    assert len(ATTRIBUTES) == 40
