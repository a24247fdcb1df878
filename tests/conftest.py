"""Shared fixtures: a quick-mode config whose runs go to a temporary folder, and the real data root if present."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.config import get_config

# The unit tests never download: online, quick mode's "auto" would fetch real subsets (CIFAR-10, CelebA shards,
# sketch scenes) and the tests that expect the procedural stand-ins would see photos instead. The online paths are
# tested with stand-ins of the downloads (test_online_data.py); COURSE_OFFLINE=0 lets the session go online.
os.environ.setdefault("COURSE_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def quick_cfg(tmp_path_factory):
    os.environ["COURSE_RUNS"] = str(tmp_path_factory.mktemp("runs"))
    return get_config(quick=True)


@pytest.fixture(scope="session")
def bank(quick_cfg):
    from helpers.digits import prompt_bank

    return prompt_bank(quick_cfg)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    local = os.environ.get("COURSE_DATA")
    root = Path(local) if local else SHARED_DATA
    if not (root / "mnist_5k.csv.gz").exists():
        pytest.skip(f"the real data samples are not at {root} (set COURSE_DATA to ../shared/data)")
    return root
