"""`make gpu-check` under the smoke cap on the CPU: every model's full recipe trains its capped steps and is measured."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_model_and_refuses_bad_arguments(tmp_path):
    env = {**os.environ, "COURSE_SMOKE": "1"}
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--steps", "2", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = json.loads(out.read_text())
    from benchmarks.gpu_check import MODELS

    assert [row["model"] for row in table["models"]] == list(MODELS) and all(row["ok"] for row in table["models"])
    assert all(row["images_per_second"] > 0 and row["projected_minutes"] > 0 for row in table["models"])
    assert "images/s" in done.stdout and "12 of 12 models trained" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "unicorn"], cwd=ROOT, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "unknown model(s) unicorn" in bad.stderr and len(bad.stderr.splitlines()) == 1
