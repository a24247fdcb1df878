"""scripts/draw_diagrams.py draws the three architecture diagrams: PNGs that open, wide enough to read, small."""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "draw_diagrams.py"
NAMES = ("diagram_unet.png", "diagram_clip.png", "diagram_ldm.png")


def test_draws_the_three_diagrams(tmp_path):
    main = runpy.run_path(str(SCRIPT), run_name="draw_diagrams")["main"]
    written = main(["--out", str(tmp_path)])
    assert sorted(p.name for p in written) == sorted(NAMES)
    for name in NAMES:
        path = tmp_path / name
        assert path.exists(), name
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width >= 800, (name, image.size)
        assert path.stat().st_size < 2 * 1024 * 1024, (name, path.stat().st_size)


def test_show_figure_reads_the_checkout_else_the_repository(monkeypatch, tmp_path):
    pytest.importorskip("IPython")
    import helpers.config
    from helpers import viz

    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    viz.show_figure("diagram_unet.png")  # a checkout: the committed file
    assert shown[-1].filename.endswith("figures/diagram_unet.png") and shown[-1].data[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr(helpers.config, "REPO_ROOT", tmp_path)  # Colab: the package without the repository
    viz.show_figure("diagram_unet.png")
    assert shown[-1].url == ("https://raw.githubusercontent.com/t2i-from-scratch/text-to-image-from-scratch/main/"
                             "figures/diagram_unet.png")
