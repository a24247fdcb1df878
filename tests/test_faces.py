"""Notebook 04's face track: prompts -> conditions -> generators, checkpoints, the comparison and the CLI."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import faces
from helpers.checkpoint import save_checkpoint
from helpers.clip import CaptionTokenizer, ClipTextEncoder, caption_corpus
from helpers.data.captions import PHRASES, ContradictoryPrompt, parse_prompt, prompt_for
from helpers.data.celeba import ATTRIBUTES, FaceSplits, synthetic_faces
from helpers.errors import CourseError
from helpers.models.clip import CLIPConfig, CLIPModel
from helpers.models.faces import AttributeJudge, AttributeJudgeConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_faces() -> FaceSplits:
    images, attrs = synthetic_faces(96, seed=3, image_size=32)
    return FaceSplits(images[:64], attrs[:64], images[64:], attrs[64:], "synthetic faces (test)", 32)


@pytest.fixture(scope="module")
def tiny_clip(tiny_faces, tmp_path_factory) -> tuple[ClipTextEncoder, Path]:
    """An untrained small CLIP saved as a checkpoint: enough to test the plumbing of the CLIP condition."""
    torch.manual_seed(0)
    tokenizer = CaptionTokenizer.train(caption_corpus(tiny_faces.train_attrs, seed=0))
    model = CLIPModel(CLIPConfig(vocab_size=tokenizer.vocab_size, image_size=32, image_width=8, text_width=32,
                                 embed_dim=16))
    run_dir = tmp_path_factory.mktemp("clip")
    save_checkpoint(run_dir, "clip", model, extra={"mode": "quick", "tokenizer": tokenizer.to_str()})
    return ClipTextEncoder(model, tokenizer), run_dir


@pytest.fixture(scope="module")
def tiny_cfg(quick_cfg):
    from dataclasses import replace

    # 1-epoch, narrow recipes: these tests check the plumbing, test_face_cvae_learns_its_condition the learning.
    from helpers.config import Recipe
    from helpers.registry import recipes

    RECIPES = recipes()  # the tracks' own tables, restored after the module's tests

    saved = {k: RECIPES[k]["quick"] for k in ("celeba-cvae", "celeba-gan", "face-judge")}
    RECIPES["celeba-cvae"]["quick"] = Recipe(epochs=1, batch_size=16, lr=2e-3, width=8, latent_dim=8)
    RECIPES["celeba-gan"]["quick"] = Recipe(epochs=1, batch_size=16, lr=2e-4, width=8, latent_dim=10)
    RECIPES["face-judge"]["quick"] = Recipe(epochs=1, batch_size=16, lr=2e-3, width=8, latent_dim=0)
    yield replace(quick_cfg)
    for key, recipe in saved.items():
        RECIPES[key]["quick"] = recipe


# ------------------------------------------------------------------------------------------ prompts
@pytest.mark.parametrize("prompt, error, pattern", [
    ("", CourseError, "the prompt is empty"),
    ("   ", CourseError, "the prompt is empty"),
    ("a purple giraffe", CourseError, "names no face attribute.*prompts can mention: .*eyeglasses"),
    ("a man who is a woman", ContradictoryPrompt, "contradicts itself"),
    ("x" * 400, CourseError, "limit is 300"),
])
def test_bad_prompts_are_refused_with_what_to_do(prompt, error, pattern):
    with pytest.raises(error, match=pattern):
        faces.read_prompt(prompt)


def test_prompts_are_read_as_attributes():
    assert faces.read_prompt("a smiling man with eyeglasses") == {"Eyeglasses": True, "Male": True, "Smiling": True}
    assert faces.read_prompt("a woman without glasses") == {"Eyeglasses": False, "Male": False}


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_prompt_for_says_exactly_what_is_wanted(name):
    for value in (True, False):
        assert parse_prompt(prompt_for({name: value})) == {name: value}
    wanted = {"Male": False, "Smiling": True, "Eyeglasses": False, name: True}
    if name not in ("Male", "Eyeglasses") and name not in ("Black_Hair", "Brown_Hair", "Gray_Hair", "Blond_Hair"):
        assert parse_prompt(prompt_for(wanted)) == wanted
    with pytest.raises(CourseError, match="unknown attribute"):
        prompt_for({"Sunglasses": True})
    assert set(PHRASES) == set(ATTRIBUTES)


# ------------------------------------------------------------------------------------------ conditions
def test_attribute_condition_trains_on_full_vectors_and_completes_prompts(tiny_faces):
    condition = faces.AttributeCondition()
    attrs = tiny_faces.train_attrs.float()
    torch.manual_seed(0)
    cond = condition.training_fn(tiny_faces, seed=0)(None, (None, attrs, None))
    assert cond.shape == (64, 40) and set(cond.unique().tolist()) <= {-1.0, 0.0, 1.0}
    said = cond != 0
    assert torch.equal(cond[said] > 0, attrs[said] > 0), "a kept entry must keep the face's own value"
    assert 0.8 < said.float().mean() < 0.97, "about 10% of the entries are blanked"
    rows = condition.from_prompts(["a smiling woman without glasses"] * 20, seed=0)
    assert rows.shape == (20, 40) and set(rows.unique().tolist()) <= {-1.0, 1.0}, "completed: no blanks left"
    for name, value in (("Smiling", 1), ("Male", -1), ("Eyeglasses", -1)):
        assert (rows[:, ATTRIBUTES.index(name)] == value).all(), name
    bank = {tuple(row) for row in (tiny_faces.train_attrs.float() * 2 - 1).tolist()}
    assert all(tuple(row) in bank for row in rows.tolist()), "completions are real training faces' attributes"
    assert len({tuple(row) for row in rows.tolist()}) > 1, "each sample gets its own completion"
    assert torch.equal(rows, condition.from_prompts(["a smiling woman without glasses"] * 20, seed=0))
    rare = condition.from_wanted([{"Bald": True, "Blond_Hair": True, "Male": False, "Wearing_Hat": True}], seed=1)[0]
    assert rare[ATTRIBUTES.index("Bald")] == 1 and rare[ATTRIBUTES.index("Wearing_Hat")] == 1, \
        "what was asked for is always in the condition, even when no training face has all of it"
    with pytest.raises(CourseError, match="no attribute table"):
        faces.AttributeCondition().from_prompts(["a man"])


def test_clip_condition_is_centred_and_matches_prompt_encoding(tiny_faces, tiny_clip):
    encoder, _ = tiny_clip
    condition = faces.ClipCondition(encoder)
    fn = condition.training_fn(tiny_faces, seed=0)
    batch = (torch.zeros(5, 3, 32, 32), tiny_faces.train_attrs[:5].float(), torch.arange(5))
    cond = fn(None, batch)
    assert cond.shape == (5, encoder.dim) and condition.mean.shape == (encoder.dim,)
    prompts = ["a smiling woman with blond hair", "a man wearing a hat"]
    expected = (encoder.encode(prompts) - condition.mean) * math.sqrt(encoder.dim)
    assert torch.allclose(condition.from_prompts(prompts), expected)
    via_wanted = condition.from_wanted([parse_prompt(prompts[1])])
    assert torch.allclose(via_wanted, condition.from_prompts([prompt_for(parse_prompt(prompts[1]))]))
    restored = faces.ClipCondition(encoder, condition.state()["clip_mean"])
    assert torch.allclose(restored.from_prompts(prompts), condition.from_prompts(prompts), atol=1e-4)


# ------------------------------------------------------------------------------------------ train + load
@pytest.mark.parametrize("model, condition", [("celeba-cvae", "attributes"), ("celeba-cvae", "clip"),
                                              ("celeba-gan", "attributes")])
def test_train_save_load_generate(tiny_cfg, tiny_faces, tiny_clip, tmp_path, model, condition):
    encoder, clip_dir = tiny_clip
    out = tmp_path / faces.run_name(model, condition)
    trained = faces.train_faces(tiny_cfg, model, condition, out, data=tiny_faces, clip=encoder, clip_dir=clip_dir,
                                progress=False)
    assert (out / "checkpoint.json").exists() and (out / "training.gif").exists()
    assert trained.train_seconds > 0 and trained.history[-1]["epoch"] == 1
    images, wanted = trained("a smiling man with eyeglasses", n=3, seed=5)
    assert images.shape == (3, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    assert wanted == {"Eyeglasses": True, "Male": True, "Smiling": True}
    loaded = faces.PromptToFace.from_checkpoint(out, tiny_cfg)
    assert loaded.name == trained.name and loaded.condition.name == condition
    again, _ = loaded("a smiling man with eyeglasses", n=3, seed=5)
    assert torch.allclose(again, images, atol=1e-5), "a loaded generator must draw the same faces for a seed"
    other, _ = loaded("a smiling man with eyeglasses", n=3, seed=6)
    assert not torch.allclose(other, images)
    toggled = loaded.for_wanted({"Smiling": True, "Male": True, "Eyeglasses": True}, n=2, seed=5)
    assert toggled.shape == (2, 3, 32, 32)
    with pytest.raises(CourseError, match="no attribute chosen"):
        loaded.for_wanted({}, n=2)
    with pytest.raises(CourseError, match="names no face attribute"):
        loaded("a purple giraffe")


def test_clip_conditioned_model_refuses_a_changed_clip(tiny_cfg, tiny_faces, tiny_clip, tmp_path):
    encoder, clip_dir = tiny_clip
    import shutil

    clip_copy = tmp_path / "clip"
    shutil.copytree(clip_dir, clip_copy)
    out = tmp_path / "gen"
    faces.train_faces(tiny_cfg, "celeba-cvae", "clip", out, data=tiny_faces, clip=encoder, clip_dir=clip_copy,
                      progress=False)
    faces.PromptToFace.from_checkpoint(out, tiny_cfg)  # loads the recorded CLIP by itself
    torch.manual_seed(1)
    retrained = CLIPModel(encoder.model.config)
    save_checkpoint(clip_copy, "clip", retrained, extra={"mode": "quick", "tokenizer": encoder.tokenizer.to_str()})
    with pytest.raises(CourseError, match="changed since this model was trained"):
        faces.PromptToFace.from_checkpoint(out, tiny_cfg)
    shutil.rmtree(clip_copy)
    with pytest.raises(CourseError, match="which is gone"):
        faces.PromptToFace.from_checkpoint(out, tiny_cfg)
    with pytest.raises(CourseError, match="no checkpoint in"):
        faces.PromptToFace.from_checkpoint(tmp_path / "nothing", tiny_cfg)
    with pytest.raises(CourseError, match="unknown condition"):
        faces.run_name("celeba-cvae", "pixels")


def test_comparison_numbers_and_table(tiny_cfg, tiny_faces, tiny_clip, tmp_path):
    encoder, clip_dir = tiny_clip
    judge, accuracy = faces.train_face_judge(tiny_cfg, tmp_path / "judge", data=tiny_faces)
    assert set(accuracy) == set(ATTRIBUTES)
    again, same = faces.load_or_train_face_judge(tiny_cfg, tiny_faces, tmp_path / "judge")
    assert same == pytest.approx(accuracy, nan_ok=True), "a saved judge is reused, not retrained"
    generator = faces.train_faces(tiny_cfg, "celeba-cvae", "attributes", tmp_path / "cvae", data=tiny_faces,
                                  progress=False)
    everything = {name: 1.0 for name in ATTRIBUTES}  # pretend the judge is reliable on all attributes
    row = faces.evaluate_faces(generator, judge, everything, encoder, tiny_faces, per_prompt=2, inception=False)
    for key in ("prompted_accuracy", "grid_accuracy", "fid_clip", "kid_clip", "diversity", "within_prompt_diversity"):
        assert math.isfinite(row[key]), key
    assert row["judged_pairs"] > 0 and row["fid_clip"] > 0

    class SaysYesToEverything(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.device_probe = torch.nn.Parameter(torch.zeros(1))

        def forward(self, images):
            return torch.ones(len(images), len(ATTRIBUTES))

    # A judge that sees every attribute on every face is right exactly on the attributes the captions ask *for*
    # (not on those they ask to be absent), whatever was drawn.
    yes = faces.evaluate_faces(generator, SaysYesToEverything(), everything, encoder, tiny_faces, per_prompt=2)
    asked = [value for caption in faces.heldout_captions(tiny_faces) for value in parse_prompt(caption).values()]
    assert yes["judged_pairs"] == row["judged_pairs"] == len(asked)
    assert yes["prompted_accuracy"] == pytest.approx(sum(asked) / len(asked))
    assert 0 < sum(asked) < len(asked)  # the captions ask for some attributes and against others
    reference = faces.real_reference(judge, everything, encoder, tiny_faces)
    assert reference["judged_pairs"] == row["judged_pairs"], "real and generated faces answer the same captions"
    ignored = faces.frequency_reference(tiny_faces, everything)
    rate = tiny_faces.train_attrs.float().mean(0)  # share of training faces with each attribute
    expected = [float(rate[ATTRIBUTES.index(name)]) if value else 1 - float(rate[ATTRIBUTES.index(name)])
                for caption in faces.heldout_captions(tiny_faces) for name, value in parse_prompt(caption).items()]
    assert ignored["prompted_accuracy"] == pytest.approx(sum(expected) / len(expected))
    table = faces.comparison_table({"real": reference, faces.PROMPT_IGNORED: ignored, "cvae": row})
    assert table.splitlines()[0].startswith("| model | prompted attr. acc.") and "| real | " in table
    assert "–" in table.splitlines()[2], "values a row lacks show as a dash"
    # a judged share carries its pair count and 95% interval; the frequency baseline is an expectation, without
    cvae_line = next(line for line in table.splitlines() if line.startswith("| cvae |"))
    assert f"(n={row['judged_pairs']}, 95% CI " in cvae_line and f"(n={row['grid_pairs']}, 95% CI " in cvae_line
    ignored_line = next(line for line in table.splitlines() if line.startswith(f"| {faces.PROMPT_IGNORED} |"))
    assert f"| {ignored['prompted_accuracy']:.1%} |" in ignored_line and "CI" not in ignored_line
    # the judge's line: a judge that says yes to everything is right on the share of positive labels, and always
    # answering each attribute's commoner value is the trivial baseline beside it
    report = faces.judge_report(SaysYesToEverything(), everything, tiny_faces)
    positives = float((tiny_faces.test_attrs > 0).float().mean())
    assert f"judge on {len(tiny_faces.test_attrs)} held-out faces, the 40 attributes it is trusted on" in report
    assert f"plain accuracy {positives:.1%}" in report and "commoner value (the attribute frequencies): plain" in report
    nothing = faces.prompted_accuracy(judge, torch.zeros(2, 3, 32, 32), [{"Male": True}] * 2, judged=[])
    assert math.isnan(nothing[0]) and nothing[1] == 0


def test_prompted_accuracy_counts_only_judged_attributes():
    judge = AttributeJudge(AttributeJudgeConfig(image_size=32, width=8))
    torch.nn.init.zeros_(judge.head.weight)
    with torch.no_grad():
        judge.head.bias.copy_(torch.where(torch.arange(40) == ATTRIBUTES.index("Male"), 5.0, -5.0))
    images = torch.zeros(2, 3, 32, 32)  # the judge says "male, nothing else" for every face
    wanted = [{"Male": True, "Smiling": True}, {"Male": False, "Eyeglasses": False}]
    assert faces.prompted_accuracy(judge, images, wanted, ["Male"]) == (0.5, 2)
    assert faces.prompted_accuracy(judge, images, wanted, ATTRIBUTES) == (0.5, 4)
    assert faces.prompted_accuracy(judge, images, wanted, ["Smiling", "Eyeglasses"]) == (0.5, 2)


def test_figures_of_the_development_sample_stay_out_of_the_repo(quick_cfg, tiny_faces):
    from dataclasses import replace

    assert faces.figures_dir(quick_cfg, tiny_faces) == quick_cfg.figures_dir
    local = replace(tiny_faces, source="local CelebA sample /data/celeba_5k_align_89x109.tar")
    assert faces.figures_dir(quick_cfg, local) == quick_cfg.outputs_dir / "figures"


# ------------------------------------------------------------------------------------------ CLI
def _cli(*args, env_extra=None):
    env = {**os.environ, "COURSE_QUICK": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "helpers", *args], capture_output=True, text=True, env=env, cwd=REPO)


@pytest.mark.parametrize("prompt, pattern", [
    ("", "the prompt is empty"),
    ("a purple giraffe", "names no face attribute"),
    ("a man who is a woman", "contradicts itself"),
])
def test_cli_refuses_bad_face_prompts_before_loading(tmp_path, prompt, pattern):
    result = _cli("generate", "--model", "celeba-cvae", prompt, "--checkpoint", str(tmp_path / "none"),
                  "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and pattern in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_cli_face_generation_needs_a_checkpoint(tmp_path):
    result = _cli("generate", "--model", "celeba-gan", "a smiling man", "--checkpoint", str(tmp_path / "none"))
    assert result.returncode == 2 and f"python -m helpers train celeba-gan --out {tmp_path / 'none'}" in result.stderr
    result = _cli("generate", "--model", "celeba-cvae", "a smiling man", "--condition", "clip",
                  "--checkpoint", str(tmp_path / "none"))
    assert "python -m helpers train celeba-cvae --condition clip --out" in result.stderr  # the command for that run
    result = _cli("generate", "--model", "celeba-cvae")
    assert result.returncode == 2 and "needs a prompt" in result.stderr


def test_cli_generates_faces_from_a_trained_checkpoint(tiny_cfg, tiny_faces, tmp_path):
    out = tmp_path / "cvae"
    faces.train_faces(tiny_cfg, "celeba-cvae", "attributes", out, data=tiny_faces, progress=False)
    result = _cli("generate", "--model", "celeba-cvae", "a smiling man with eyeglasses", "--checkpoint", str(out),
                  "--n", "4", "--out", str(tmp_path / "samples"))
    assert result.returncode == 0, result.stderr
    assert "Eyeglasses=yes" in result.stdout and "Male=yes" in result.stdout
    written = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert len(written) == 5 and any(name.endswith("_grid.png") for name in written)


def test_cli_evaluates_a_face_generator(tiny_cfg, tiny_faces, tiny_clip, tmp_path, monkeypatch, capsys):
    import helpers.clip
    from helpers.__main__ import main

    out = tmp_path / "cvae"
    generator = faces.train_faces(tiny_cfg, "celeba-cvae", "attributes", out, data=tiny_faces, progress=False)
    monkeypatch.setattr(faces, "face_data", lambda cfg: tiny_faces)  # the faces the tiny model was trained on
    monkeypatch.setattr(helpers.clip, "load_clip", lambda cfg, run=None: tiny_clip[0])  # notebook 03's CLIP
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the papers' FID is skipped in one line, not downloaded
    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    capsys.readouterr()
    assert main(["evaluate", "--model", "celeba-cvae", "--checkpoint", str(out), "--quick"]) == 0
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("|")]
    assert table[0].startswith("| model | prompted attr. acc.") and len(table) == 5  # header, rule, 3 rows
    assert table[2].startswith("| real held-out faces |") and table[4].startswith(f"| {generator.name} |")
    assert table[3].startswith(f"| {faces.PROMPT_IGNORED} |")  # the trivial baseline between the two
    fid = float(table[4].split("|")[4])  # the model's FID on our CLIP's features, a number (the real row's is lower)
    assert fid > float(table[2].split("|")[4])
    assert "standard FID skipped:" in printed and "held-out faces" in printed.split("|")[0]


def test_face_widget_follows_prompt_and_toggles(tiny_cfg, tiny_faces, tmp_path):
    pytest.importorskip("ipywidgets")
    import matplotlib

    from helpers.widgets import face_app

    matplotlib.use("Agg")
    generator = faces.train_faces(tiny_cfg, "celeba-cvae", "attributes", tmp_path / "cvae", data=tiny_faces,
                                  progress=False)
    app = face_app({"cvae": generator}, n=2, default_prompt="a smiling woman")
    first = app.shown["image"]
    assert first is not None and "Smiling=True" in app.shown["title"]
    app.controls["prompt"].value = "a man with eyeglasses"
    assert "Eyeglasses=True" in app.shown["title"] and not torch.equal(app.shown["image"], first)
    prompted = app.shown["image"]
    app.controls["Blond_Hair"].value = "yes"  # a toggle overrides what the prompt says
    assert "blond" in app.shown["title"] and not torch.equal(app.shown["image"], prompted)
    app.controls["Blond_Hair"].value = "any"
    app.controls["prompt"].value = "a purple giraffe"
    assert app.shown["image"] is None and "names no face attribute" in app.shown["error"]
