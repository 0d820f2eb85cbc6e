"""The docs' loading snippet (docs/outputs.md) runs as it is printed."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- tests/test_readme.py runs this block as it is printed here -->"


PAGE = ROOT / "docs" / "outputs.md"


def readme_block() -> str:
    """The Python block that follows the marker in docs/outputs.md."""
    text = PAGE.read_text()
    assert MARKER in text, f"the loading snippet in {PAGE.name} lost its marker"
    match = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_loading_snippet_opens_a_checkpoint_and_an_ensemble_in_plain_keras(
    study_copy: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    ensemble = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpo",
            "ensemble",
            "--study",
            str(study_copy),
            "--top",
            "2",
            "--out",
            str(work / "ensembles" / "imdb-smoke-top5"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert ensemble.returncode == 0, ensemble.stderr[-2000:]
    # The snippet names the smoke study: the tiny study, copied under that name.
    shutil.copytree(study_copy.parent / "tiny", work / "studies" / "imdb-smoke")
    with sqlite3.connect(work / "studies" / "imdb-smoke" / "study.db") as db:
        db.execute("UPDATE studies SET study_name = 'imdb-smoke'")
    check = (
        "\nimport numpy as np\n"
        "assert model.name and model.count_params() > 0\n"
        "texts = np.array(['a great film', 'dull'], dtype=object)\n"
        "probabilities = ensemble.predict(texts, verbose=0)\n"
        "assert probabilities.shape == (2, 1), probabilities.shape\n"
        "print('loaded', type(model).__name__, type(ensemble).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", readme_block() + check],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded Functional Functional" in result.stdout
