"""Notebook 09's comparison: inventory of checkpoints, missing models with their commands, measuring, grids."""
from dataclasses import replace

import pytest
import torch

from helpers import compare
from helpers.checkpoint import save_checkpoint
from helpers.models import ConvVAE, ConvVAEConfig
from helpers.data.prompts import digit_prompts
from helpers.digits import train_text_cvae, train_vae
from helpers.errors import CourseError


def test_empty_runs_lists_every_model_with_its_command(quick_cfg, tmp_path):
    cfg = replace(quick_cfg, runs_dir=tmp_path)
    rows = compare.inventory(cfg)
    assert [r["model"] for r in rows] == [e.name for e in compare.entries()] == [
        "vae", "text-cvae", "clip", "celeba-cvae", "celeba-cvae-clip", "celeba-gan", "celeba-gan-clip", "cifar-ddpm", "ldm",
        "sketch-cvae"]
    assert not any(r["found"] for r in rows)
    lines = compare.missing(rows)
    assert "celeba-gan-clip (notebook 04): python -m helpers train celeba-gan --condition clip" in lines
    assert any(line.startswith("sketch-cvae (notebook 08): python -m helpers train sketch-cvae") for line in lines)
    assert "missing: `python -m helpers train ldm`" in compare.inventory_table(rows)
    with pytest.raises(CourseError, match="train it with `python -m helpers train cifar-ddpm`"):
        compare.load(cfg, "cifar-ddpm")
    with pytest.raises(CourseError, match="unknown model"):
        compare.entry("gpt")


def test_inventory_survives_damaged_runs(quick_cfg, tmp_path):
    cfg = replace(quick_cfg, runs_dir=tmp_path)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "vae", "vae", ConvVAE(ConvVAEConfig(latent_dim=4, width=8)), epoch=2)
    save_checkpoint(tmp_path / "text-cvae", "vae", ConvVAE(ConvVAEConfig(latent_dim=4, width=8)))
    weights = next((tmp_path / "text-cvae").glob("model-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:50])  # a copy cut short
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "checkpoint.json").write_text("{not json")  # a crash of another program
    rows = {r["model"]: r for r in compare.inventory(cfg)}
    assert rows["vae"]["found"] and rows["vae"]["epochs"] == 2
    stored = ConvVAE(ConvVAEConfig(latent_dim=4, width=8)).state_dict().values()
    assert rows["vae"]["parameters"] == sum(t.numel() for t in stored if t.is_floating_point())
    for name in ("text-cvae", "clip"):
        assert not rows[name]["found"] and "corrupt" in rows[name]["problem"], rows[name]
    lines = compare.missing(list(rows.values()))
    assert any(line.startswith("clip (notebook 03): python -m helpers train clip  [checkpoint in") for line in lines)
    table = compare.inventory_table(list(rows.values()))
    assert "| text-cvae | 02 | unreadable (checkpoint in" in table and "| vae | 01 |" in table


@pytest.mark.slow
def test_trained_digit_models_are_found_measured_drawn_and_reported(quick_cfg, bank, tmp_path):
    cfg = replace(quick_cfg, runs_dir=tmp_path / "runs")
    train_vae(cfg, epochs=1, progress=False, gif_path=tmp_path / "vae.gif")
    train_text_cvae(cfg, epochs=2, progress=False, gif_path=tmp_path / "cvae.gif", bank=bank)
    rows = {r["model"]: r for r in compare.inventory(cfg)}
    assert rows["vae"]["found"] and rows["text-cvae"]["found"] and not rows["ldm"]["found"]
    assert rows["vae"]["epochs"] == 1 and rows["text-cvae"]["epochs"] == 2
    assert rows["vae"]["parameters"] > 10_000 and "test_loss" in rows["vae"]["heldout"]
    loaded = {name: compare.load(cfg, name) for name in ("vae", "text-cvae")}
    measured = {name: compare.measure(cfg, name, model, n=2) for name, model in loaded.items()}
    assert 50 < measured["vae"]["value"] < 400  # BCE + KL per digit after one epoch
    # two quick epochs already draw most prompted digits as the judge reads them (chance: 0.1)
    assert measured["text-cvae"]["value"] > 0.5 and measured["text-cvae"]["ms_per_sample"] > 0
    assert measured["text-cvae"]["judge"] > 0.9
    # a judged share carries its count (2 per held-out phrasing), the judge its held-out count, both an interval;
    # the 4x4 mean-pixel classifier's share of the same images stands beside it
    assert measured["text-cvae"]["n"] == 2 * len(digit_prompts("heldout").prompts)
    # (on clean generated digits the 4x4 classifier can read as many as the judge: 93% against 92% in one run)
    assert 0 < measured["text-cvae"]["baseline"] <= 1
    table = compare.measured_table(list(rows.values()), measured)
    line = next(row for row in table.splitlines() if row.startswith("| text-cvae |"))
    assert f"(n={measured['text-cvae']['n']}, 95% CI " in line and "4x4 mean-pixel classifier" in line
    assert f"(n={measured['text-cvae']['judge_n']:,}, 95% CI " in line
    assert "95% CI" not in next(row for row in table.splitlines() if row.startswith("| vae |"))  # a loss: no interval
    grid, prompts = compare.side_by_side(cfg, "digits", loaded)
    assert len(prompts) == 6 and grid.shape[0] == 3 and grid.shape[1] > 2 * 28  # two rows of six digits
    faces, _ = compare.side_by_side(cfg, "faces", loaded)
    assert faces is None  # no face model trained
    images = compare.draw("text-cvae", loaded["text-cvae"], prompts)
    assert images.shape == (6, 3, 28, 28) and 0 <= images.min() and images.max() <= 1
    report = compare.write_report(tmp_path / "out" / "comparison.md", list(rows.values()), measured,
                                  {"digits": "compare_digits.png"})
    text = report.read_text()
    assert "| text-cvae | 02 |" in text and "prompt accuracy" in text and "python -m helpers train ldm" in text
    assert "![digits](compare_digits.png)" in text
    assert not list(report.parent.glob(".*tmp*"))  # nothing half-written left behind
