"""scripts/draw_diagrams.py draws the three architecture diagrams: PNGs that open, wide enough to read, small."""
from __future__ import annotations

import runpy
from pathlib import Path

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
