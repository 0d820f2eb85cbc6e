"""The `hpo.Tuner` example, as a notebook and as a script, run on a few hundred IMDB reviews."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from .conftest import REAL_IMDB, real_data, run_user_script

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "tuner_imdb.ipynb"
SCRIPT = ROOT / "examples" / "tuner_imdb.py"


def _tiny_run(folder: Path) -> dict[str, str]:
    real_data(REAL_IMDB, "IMDB", "HPO_IMDB_PATH")  # fails in CI, skips elsewhere
    return {
        "HPO_IMDB_PATH": str(REAL_IMDB),
        "HPO_EXAMPLE_REVIEWS": "400",
        "HPO_EXAMPLE_TRIALS": "2",
        "HPO_EXAMPLE_EPOCHS": "1",
        "HPO_EXAMPLE_DIR": str(folder / "runs"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def _checks(output: str, folder: Path) -> None:
    assert "2 finished, 0 failed" in output, output[-3000:]
    assert "test accuracy: best model" in output
    assert (folder / "runs" / "imdb_ensemble.keras").is_file()
    assert (folder / "runs" / "imdb" / "study.db").is_file()


@pytest.mark.e2e
def test_the_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    for name, value in _tiny_run(tmp_path).items():
        monkeypatch.setenv(name, value)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    output = "".join(
        item.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for item in cell.outputs
    )
    _checks(output, tmp_path)


def _code_lines(source: str) -> list[str]:
    return [
        line.strip()
        for line in source.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_the_notebook_holds_the_scripts_code() -> None:
    # The script is not run on its own: it is the notebook's code (this test), which runs.
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cells = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    lines = SCRIPT.read_text().splitlines()
    docstring = ast.parse("\n".join(lines)).body[0]
    script = "\n".join(lines[docstring.end_lineno :])
    # The script wraps the notebook's cells in main(), run under `if __name__ == "__main__":`.
    wrapping = {"from __future__ import annotations", "def main() -> None:", "main()"}
    wrapping.add('if __name__ == "__main__":')
    expected = [line for line in _code_lines(script) if line not in wrapping]
    assert sorted(_code_lines(cells)) == sorted(expected)


@pytest.mark.e2e
def test_the_complete_example_of_the_python_docs_runs(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "python.md").read_text()
    heading = page.index("### A complete example")
    start = page.index("```python\n", heading) + len("```python\n")
    code = page[start : page.index("```\n", start)]
    # Smaller than on the page: two trials of one epoch.
    for big, small in (("max_trials=4", "max_trials=2"), ("epochs=5", "epochs=1")):
        assert big in code
        code = code.replace(big, small)
    assert "Ensemble(members=" in run_user_script(tmp_path, code)
    assert (tmp_path / "tuner_runs" / "three_classes.keras").is_file()
