"""A widget app in a real browser: JupyterLab served on 127.0.0.1, Debian's chromium driven by playwright.

The notebook builds notebook 02's digit app (prompt box, seed and latent sliders) around an untrained text CVAE:
what is tested is the wiring a learner touches (type, press Enter, see the picture change; a prompt that asks for
no digit answers in one line), not what the model has learnt. Skips, with the reason, where chromium, playwright
or JupyterLab is missing (`.ci/run` installs all three).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
pytest.importorskip("jupyterlab", reason="JupyterLab is not installed (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[1]
APP_CELL = """import torch
from helpers.config import get_config
from helpers.digits import TextToDigit, prompt_bank
from helpers.models.cvae import TextCVAE, TextCVAEConfig
from helpers.widgets import prompt_app

torch.manual_seed(0)
app = prompt_app(TextToDigit(TextCVAE(TextCVAEConfig(latent_dim=4, width=8)), prompt_bank(get_config(quick=True))), n=3)
app"""
KERNEL_IDLE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return kernel && kernel.status === "idle";
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def lab(tmp_path):
    """JupyterLab on 127.0.0.1 serving a one-cell notebook; yields its URL (token included)."""
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "id": "app", "metadata": {}, "outputs": [],
                           "source": APP_CELL}],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "app.ipynb").write_text(json.dumps(notebook))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COURSE_QUICK": "1", "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.port_retries=0", "--allow-root"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start within 60 s")
        yield f"{base}/lab/tree/app.ipynb?token={token}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_digit_app_in_a_browser(lab):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(lab)
        page.wait_for_function(KERNEL_IDLE, timeout=120_000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        picture = page.wait_for_selector(".jp-OutputArea-output img", timeout=120_000)
        first = picture.get_attribute("src")

        prompt = page.locator(".widget-text input").first
        prompt.fill("Print number 7")
        prompt.press("Enter")
        page.wait_for_function("src => { const img = document.querySelector('.jp-OutputArea-output img');"
                               " return img && img.getAttribute('src') !== src; }", arg=first, timeout=60_000)
        assert page.locator(".jp-OutputArea-output img").get_attribute("src") != first

        prompt.fill("draw a cat")
        prompt.press("Enter")
        refusal = page.wait_for_selector("text=does not ask for a digit", timeout=60_000)
        line = refusal.inner_text().strip()
        assert line.startswith("error: ") and "\n" not in line and page.locator(".jp-OutputArea-output img").count() == 0
        browser.close()
