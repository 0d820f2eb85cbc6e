"""MkDocs hook: `benchmarks/RESULTS.md`, where the benchmarks record their numbers, is the
site's `results.md`, so the pages link to the measurements instead of copying them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mkdocs.structure.files import File

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "RESULTS.md"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Adds RESULTS.md to the site's pages as `results.md`."""
    files.append(File.generated(config, "results.md", abs_src_path=str(RESULTS)))
    return files
