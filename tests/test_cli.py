"""`python -m helpers`: train, generate, reconstruct, evaluate; every mistake is one line on stderr, nothing written."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers.checkpoint import save_checkpoint
from helpers.models import ConvVAE, ConvVAEConfig


def run_cli(*args, env_extra=None, tmp=None):
    env = {**os.environ, "COURSE_QUICK": "1", "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "helpers", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def assert_one_line_error(result, pattern):
    import re

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "text-cvae"
    result = run_cli("train", "text-cvae", "--epochs", "2", "--out", str(run))
    assert result.returncode == 0, result.stderr
    assert "epoch   2/2" in result.stdout and (run / "training.gif").exists()
    return run


def test_generate_writes_samples_and_a_grid(trained, tmp_path):
    result = run_cli("generate", "Print number 5", "--checkpoint", str(trained), "--n", "4", "--seed", "3",
                     "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "as the digit 5" in result.stdout
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 5 and sum("grid" in name for name in files) == 1
    sample = np.asarray(Image.open(tmp_path / files[0]).convert("L"), dtype=float)
    assert sample.shape[0] >= 28 and sample.shape == sample.shape[::-1]
    border = np.concatenate([sample[:8].ravel(), sample[-8:].ravel()])
    assert border.mean() < 60 < sample.max()  # a white digit on black


def test_evaluate_reports_the_judge_and_prompt_accuracy(trained):
    result = run_cli("evaluate", "--model", "text-cvae", "--checkpoint", str(trained))
    assert result.returncode == 0, result.stderr
    judge = float(result.stdout.split("judge reads ")[1].split("%")[0])
    heldout_line = result.stdout.split("prompt accuracy, heldout phrasings: ")[1].splitlines()[0]
    heldout = float(heldout_line.split("%")[0])
    assert judge > 90 and heldout > 50  # two epochs already draw most prompted digits (chance: 10%)
    # every number carries its count and 95% interval, and the 4x4 mean-pixel classifier's score beside it
    assert "of held-out real digits; a 4x4 mean-pixel classifier reads " in result.stdout
    assert "(n=2,000, 95% CI " in heldout_line and "the 4x4 mean-pixel classifier reads " in heldout_line
    low, high = (float(x) for x in heldout_line.split("95% CI ")[1].split("%")[0].split("-"))
    assert low <= heldout <= high


@pytest.mark.parametrize("prompt, pattern", [
    ("", "the prompt is empty"),
    ("y" * 10_000, "10000 characters long; the limit is 300"),
    ("draw a cat", "does not ask for a digit"),
    ("3 or 4", "ambiguous"),
])
def test_bad_prompts_write_nothing(trained, tmp_path, prompt, pattern):
    out = tmp_path / "out"
    result = run_cli("generate", prompt, "--checkpoint", str(trained), "--out", str(out))
    assert_one_line_error(result, pattern)
    assert not out.exists()


def test_missing_checkpoint_says_how_to_train(tmp_path):
    result = run_cli("generate", "Print number 5", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
                     env_extra={"COURSE_RUNS": str(tmp_path)})
    assert_one_line_error(result, r"no checkpoint in .*: train one first with `python -m helpers train text-cvae")
    result = run_cli("generate", "Print number 5", env_extra={"COURSE_RUNS": str(tmp_path / "empty-runs")})
    assert_one_line_error(result, "empty-runs/text-cvae")
    assert not (tmp_path / "o").exists()


def test_corrupt_and_foreign_checkpoints(trained, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    weights = next(broken.glob("model-*.safetensors"))
    weights.write_bytes(b"\0" * 64)
    assert_one_line_error(run_cli("generate", "Print number 5", "--checkpoint", str(broken)), "corrupt")

    foreign = tmp_path / "vae"
    save_checkpoint(foreign, "vae", ConvVAE(ConvVAEConfig()))
    assert_one_line_error(run_cli("generate", "Print number 5", "--checkpoint", str(foreign)),
                          "holds a 'vae' checkpoint, not 'text-cvae'")


def test_offline_full_mode_without_data(tmp_path):
    env = {"COURSE_QUICK": "0", "COURSE_DATA": "", "COURSE_DOWNLOADS": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    env_clean = {k: v for k, v in env.items()}
    result = run_cli("train", "vae", "--out", str(tmp_path / "run"), env_extra=env_clean)
    assert_one_line_error(result, "offline .* no MNIST in .*COURSE_QUICK=1")
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


def test_vae_train_generate_reconstruct_evaluate(tmp_path):
    run = tmp_path / "vae"
    assert run_cli("train", "vae", "--epochs", "1", "--out", str(run)).returncode == 0
    result = run_cli("generate", "--model", "vae", "--checkpoint", str(run), "--n", "3", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "o").glob("vae_seed0_*.png"))) == 4
    result = run_cli("reconstruct", "--checkpoint", str(run), "--out", str(tmp_path / "o"))
    assert result.returncode == 0 and (tmp_path / "o" / "vae_reconstructions.png").exists()
    result = run_cli("evaluate", "--model", "vae", "--checkpoint", str(run))
    assert result.returncode == 0 and "held-out loss" in result.stdout
    loss = float(result.stdout.split("per image): ")[1].split()[0])
    assert 80 < loss < 250
