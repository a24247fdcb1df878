"""environment.yml (conda route) and pyproject.toml (pip route) must name the same packages and ranges."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge package name -> PyPI name


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement.strip()).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = dict(_split(r) for r in project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pip_side.update(_split(r) for r in extra)

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    conda_side, pip_section = {}, []
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            pip_section = entry["pip"]
            continue
        name, spec = _split(entry.replace("=", "==", 1) if re.match(r"^python=", entry) else entry)
        conda_side[CONDA_NAMES.get(name, name)] = spec
    assert conda_side.pop("python") == "==3.11"
    conda_side.pop("pip")
    assert "-e ." in pip_section, "environment.yml must install the course package itself"
    conda_side.update(_split(r) for r in pip_section if not r.startswith("-e"))
    assert conda_side == pip_side


def test_no_exact_torch_pin_for_learners():
    text = (ROOT / "pyproject.toml").read_text() + (ROOT / "environment.yml").read_text()
    assert "torch==" not in text and "pytorch==" not in text
