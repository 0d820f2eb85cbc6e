"""MkDocs hook: `benchmarks/RESULTS.md`, where the benchmarks record their numbers, is the
site's `results.md`, so the pages link to the measurements instead of copying them.

A page links to the file itself, `../benchmarks/RESULTS.md`, so that the link works where the
Markdown is read as it is (on GitHub); in the site the link goes to the page it becomes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from mkdocs.structure.files import File

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from mkdocs.structure.pages import Page

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "RESULTS.md"
# A link to it from a page of docs/, with or without a section: [the results](../benchmarks/...).
RESULTS_LINK = re.compile(r"\]\(\.\./benchmarks/RESULTS\.md(?=[#)])")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Adds RESULTS.md to the site's pages as `results.md`."""
    files.append(File.generated(config, "results.md", abs_src_path=str(RESULTS)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Points the page's links to `../benchmarks/RESULTS.md` to the site's `results.md`."""
    return RESULTS_LINK.sub("](results.md", markdown)
