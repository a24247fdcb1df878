"""`make full`'s runner: notebooks run in order, finished ones are skipped, a failure stops with a clear line."""
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)


def _notebook(path: Path, source: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(notebook, path)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "nb").mkdir()
    _notebook(tmp_path / "nb" / "01_first.ipynb", "import os\nprint('mode', os.environ['COURSE_QUICK'])")
    _notebook(tmp_path / "nb" / "02_second.ipynb", "print(6 * 7)")
    return tmp_path


def _run(folder, *argv):
    return runner.main(["--notebooks-dir", str(folder / "nb"), "--out", str(folder / "out"), *argv])


def test_runs_in_order_then_skips_finished_ones(folder, capsys):
    assert _run(folder, "--quick") == 0
    executed = nbformat.read(folder / "out" / "quick" / "02_second.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == "42"
    first = nbformat.read(folder / "out" / "quick" / "01_first.ipynb", as_version=4)
    assert first.cells[0].outputs[0]["text"].strip() == "mode 1"
    timings = json.loads((folder / "out" / "quick" / "timings.json").read_text())
    assert set(timings) == {"01_first", "02_second"}
    log = capsys.readouterr().out
    assert log.index("[1/2] 01_first: finished") < log.index("[2/2] 02_second: finished")
    assert _run(folder, "--quick", "02") == 0
    assert "02_second: done before" in capsys.readouterr().out
    assert _run(folder, "--quick", "--force", "02") == 0
    assert "02_second: finished" in capsys.readouterr().out


def test_failure_stops_with_one_line_and_keeps_the_partial_copy(folder, capsys):
    _notebook(folder / "nb" / "01_first.ipynb", "raise ValueError('no data here')")
    assert _run(folder, "--quick") == 1
    log = capsys.readouterr().out
    assert "01_first: FAILED" in log and "ValueError: no data here" in log and "02_second" not in log
    assert (folder / "out" / "quick" / "01_first.failed.ipynb").exists()
    assert not (folder / "out" / "quick" / "01_first.ipynb").exists()


def test_unknown_notebook_is_refused(folder):
    with pytest.raises(SystemExit, match="no notebook matches 09"):
        _run(folder, "09")
