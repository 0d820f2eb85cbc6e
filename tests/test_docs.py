"""The documentation: the site builds with warnings as errors, and every code block of README.md
and docs/ agrees with the code. Commands are parsed by hpo's own parsers and the Makefile, study
files are loaded by hpo's loader, Python is compiled and its imports resolved; nothing is run."""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import importlib
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from markdown.extensions.toc import slugify
from markdown_it import MarkdownIt

from hpo.cli import COMMANDS, build_parser, module_entry
from hpo.config import _DERIVED as DERIVED_KEYS  # set by the code, never by a study file
from hpo.config import StudyConfig, load_study_config
from hpo.study import search_space
from hpo.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
FRONT_PAGE_LINES = 200
# Programs a shell block may run that are not this project's: shown, not checked.
OTHER_PROGRAMS = {"cd", "curl", "docker", "git", "mkdir", "mkdocs", "optuna", "sed", "source"}
# A block a test runs says so in the comment above it, naming the test file.
RUN_BY = re.compile(r"<!--\s*(tests/\S+\.py) runs this block")
# A TOML block whose first line names a file is an excerpt of that file.
EXCERPT_OF = re.compile(r"#\s*(\S+\.toml)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int
    lang: str
    text: str
    comment: str  # the HTML comment right above it, if any

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """The page's fenced code blocks, as a Markdown parser sees them."""
    tokens = MarkdownIt("commonmark").parse(page.read_text(encoding="utf-8"))
    blocks = []
    for i, token in enumerate(tokens):
        if token.type != "fence" or token.map is None:
            continue
        before = tokens[i - 1] if i else None
        comment = before.content if before is not None and before.type == "html_block" else ""
        lang = token.info.split()[0] if token.info.strip() else ""
        blocks.append(Block(page, token.map[0] + 1, lang, token.content, comment))
    return blocks


BLOCKS = [block for page in PAGES for block in code_blocks(page)]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_code_block_agrees_with_the_code(block: Block, tmp_path: Path) -> None:
    run_by = RUN_BY.search(block.comment)
    if run_by:
        test = ROOT / run_by.group(1)
        assert test.is_file(), f"{block.where}: {run_by.group(1)} does not exist"
        assert block.page.name in test.read_text(), (
            f"{block.where}: {run_by.group(1)} says it runs this block but never reads "
            f"{block.page.name}"
        )
    if block.lang in ("bash", "sh", "shell"):
        check_shell(block)
    elif block.lang == "toml":
        check_toml(block, tmp_path)
    elif block.lang == "python":
        check_python(block)
    elif block.lang == "json":
        json.loads(block.text)
    elif block.lang != "text":
        pytest.fail(
            f"{block.where}: a ```{block.lang or '(no language)'} block. Label it bash, toml, "
            f"python or json (checked against the code), or text (output, shown as it is)."
        )


# Shell: every command line names a real command, target, flag, file or variable.


def check_shell(block: Block) -> None:
    written: set[str] = set()  # files the block's lines write (`> FILE`), which later ones read
    for line in block.text.replace("\\\n", " ").splitlines():
        check_shell_line(line, block.where, written)


def check_shell_line(line: str, where: str, written: set[str]) -> None:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    command: list[str] = []
    depth = 0  # inside a usage synopsis's [...], `|` separates alternatives, not commands
    for token in lexer:
        depth += token.count("[") - token.count("]")
        if token in ("&&", "||", ";", "&") or (token == "|" and depth == 0):
            check_command(command, where, written)
            command = []
        else:
            command.append(token)
    check_command(command, where, written)


def check_command(tokens: list[str], where: str, written: set[str]) -> None:
    if ">" in tokens:
        written.update(tokens[tokens.index(">") + 1 :][:1])
        tokens = tokens[: tokens.index(">")]
    while tokens and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
        check_variable(tokens.pop(0).partition("=")[0], where)
    if tokens[:1] == ["nice"]:
        tokens = tokens[3:] if tokens[1:2] == ["-n"] else tokens[1:]
    if not tokens:
        return
    program, args = Path(tokens[0]).name, tokens[1:]
    if program == "hpo":
        check_hpo(args, where, written)
    elif program in ("python", "python3"):
        check_python_command(args, where)
    elif program in ("bash", "sh"):
        assert (ROOT / args[0]).is_file(), f"{where}: `{program} {args[0]}`: no such file"
    elif program == "make":
        check_make(args, where)
    elif program == "pip":
        check_pip(args, where)
    elif program == "export":
        for arg in args:
            check_variable(arg.partition("=")[0], where)
    elif program == "eval":
        for inner in re.findall(r"\$\((.*)\)", " ".join(args)):
            check_shell_line(inner, where, written)
    else:
        assert program in OTHER_PROGRAMS, (
            f"{where}: `{program}` is neither hpo, python, make, pip nor a program the docs "
            f"test knows ({sorted(OTHER_PROGRAMS)}); add it to OTHER_PROGRAMS if it belongs."
        )


def check_python_command(args: list[str], where: str) -> None:
    if args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if module == "hpo":
            check_hpo(rest, where)
            return
        commands = {module_entry(name): name for name in COMMANDS}
        if module in commands:
            check_hpo([commands[module], *rest], where)
            return
        assert module_exists(module), f"{where}: no module {module}"
        return
    assert args and (ROOT / args[0]).is_file(), f"{where}: `python {args[0]}`: no such file"


def check_hpo(args: list[str], where: str, written: set[str] | None = None) -> None:
    """Parses an `hpo ...` line with hpo's own parser; a usage synopsis has its flags checked.
    Its study file is one of the repository's, or one an earlier line of its block `written`."""
    parser = build_parser()
    if any("[" in arg for arg in args):
        flags = _flags(_subparser(parser, args[0], where))
        for arg in args[1:]:
            for piece in re.split(r"[\[\]|]", arg):
                if piece.startswith("--"):
                    assert piece in flags, f"{where}: `hpo {args[0]}` has no flag {piece}"
        return
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            parsed = parser.parse_args(args)
        except SystemExit as exc:
            problem = err.getvalue().strip().splitlines()[-1:]
            assert exc.code == 0, f"{where}: `hpo {shlex.join(args)}`: {problem}"
            return
    study = getattr(parsed, "study", None)
    if study and not re.fullmatch(r"[A-Z]+", study):
        found = (ROOT / study).is_file() or study in (written or ())
        assert found, f"{where}: --study {study}: no such file"


def _subparser(parser: argparse.ArgumentParser, name: str, where: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert name in action.choices, f"{where}: `hpo {name}` is not a command"
            return action.choices[name]
    raise AssertionError("hpo's parser has no commands")


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


@cache
def makefile() -> tuple[dict[str, str], dict[str, list[str]]]:
    """The Makefile's variables and its targets' recipes."""
    variables: dict[str, str] = {}
    recipes: dict[str, list[str]] = {}
    current: list[str] = []
    for line in (ROOT / "Makefile").read_text().splitlines():
        assign = re.match(r"([A-Z_]+)\s*[?:]?=\s*(.*)", line)
        rule = re.match(r"([^\s:#=][^:#=]*):(?!=)", line)
        if line.startswith("\t"):
            current.append(line.strip())
        elif assign:
            variables[assign.group(1)] = assign.group(2)
        elif rule:
            current = []
            for target in rule.group(1).split():
                recipes[_expand(target, variables)] = current
    return variables, recipes


def _expand(text: str, variables: dict[str, str]) -> str:
    for _ in range(5):
        text = re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables.get(m.group(1), m.group(0)), text)
    return text


def check_make(args: list[str], where: str) -> None:
    """A `make` line names real targets and variables; the `hpo` line a target runs parses."""
    variables, recipes = makefile()
    given = dict(arg.split("=", 1) for arg in args if "=" in arg)
    for name in given:
        assert name in variables, f"{where}: the Makefile has no variable {name}"
    if "STUDY" in given:
        assert (ROOT / given["STUDY"]).is_file(), f"{where}: STUDY={given['STUDY']}: no file"
    for target in (arg for arg in args if "=" not in arg):
        assert target in recipes, f"{where}: the Makefile has no target {target}"
        for step in recipes[target]:
            if step.startswith("$(BIN)/hpo "):
                line = _expand(step, {**variables, **given, "BIN": ""})
                check_hpo(shlex.split(line)[1:], where)


def check_pip(args: list[str], where: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for arg in args:
        for extra in re.findall(r"^\.\[(.+)\]$", arg):
            for name in extra.split(","):
                assert name in extras, f"{where}: pyproject.toml has no extra [{name}]"


@cache
def hpo_source() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "hpo").rglob("*.py"))


def check_variable(name: str, where: str) -> None:
    if name.startswith("HPO_"):
        assert re.search(rf"\b{name}\b", hpo_source()), f"{where}: hpo reads no variable {name}"


# TOML: study files and fragments load with hpo's loader.


def check_toml(block: Block, tmp_path: Path) -> None:
    data = tomllib.loads(block.text)
    excerpt = EXCERPT_OF.match(block.text.splitlines()[0])
    if excerpt:
        path = ROOT / excerpt.group(1)
        assert path.is_file(), f"{block.where}: {excerpt.group(1)} does not exist"
        _assert_part_of(data, tomllib.loads(path.read_text()), block.where, excerpt.group(1))
    else:
        name = data.get("name", "docs-example")
        path = tmp_path / f"{name}.toml"
        path.write_text(block.text if "name" in data else f'name = "{name}"\n' + block.text)
    config = load_study_config(path)
    for spec in config.families.values():
        module = spec.partition(":")[0]
        found = module_exists(module) or (path.parent / f"{module}.py").is_file()
        assert found, f"{block.where}: family module {module} is not importable"
    if config.space and not config.families:
        search_space(get_task(config.task), config.space)


def module_exists(name: str) -> bool:
    """Whether a module can be imported, found without importing it (or its packages)."""
    top, *rest = name.split(".")
    spec = importlib.util.find_spec(top)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for i, part in enumerate(rest):
        last = i == len(rest) - 1
        packages = [Path(f) / part for f in folders if (Path(f) / part / "__init__.py").is_file()]
        if last and any((Path(f) / f"{part}.py").is_file() for f in folders):
            return True
        if not packages:
            return False
        folders = [str(p) for p in packages]
    return spec is not None


def _assert_part_of(part: dict[str, Any], whole: dict[str, Any], where: str, name: str) -> None:
    for key, value in part.items():
        assert key in whole, f"{where}: {name} has no key {key}"
        if isinstance(value, dict):
            _assert_part_of(value, whole[key], where, name)
        else:
            assert whole[key] == value, f"{where}: {name} has {key} = {whole[key]!r}"


# Python: compiles, and what it imports exists.


def check_python(block: Block) -> None:
    tree = ast.parse(block.text, filename=block.where)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert module_exists(alias.name), f"{block.where}: no module {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert module_exists(node.module), f"{block.where}: no module {node.module}"
            if node.module.split(".")[0] == "hpo":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"
                    ), f"{block.where}: {node.module} has no {alias.name}"


# The pages as a whole.


def test_every_study_file_key_has_a_row_in_the_study_file_page() -> None:
    page = (DOCS / "study-file.md").read_text()
    missing = []
    for field in dataclasses.fields(StudyConfig):
        if field.name in DERIVED_KEYS:
            continue
        default = field.default_factory() if callable(field.default_factory) else None
        if dataclasses.is_dataclass(default):
            rows = [f"| `[{field.name}]` |"]
            rows += [f"| `{field.name}.{sub.name}` |" for sub in dataclasses.fields(default)]
        elif isinstance(default, dict):
            rows = [f"| `[{field.name}]` |"]
        else:
            rows = [f"| `{field.name}` |"]
        missing += [row for row in rows if row not in page]
    assert not missing, f"docs/study-file.md has no table row for: {missing}"


def test_every_command_and_flag_is_in_the_commands_page() -> None:
    page = (DOCS / "commands.md").read_text()
    parser = build_parser()
    missing = []
    for name in COMMANDS:
        if f"## `hpo {name}`" not in page:
            missing.append(f"## `hpo {name}`")
        for flag in _flags(_subparser(parser, name, "docs/commands.md")) - {"-h", "--help"}:
            if f"`{flag}" not in page:
                missing.append(f"hpo {name} {flag}")
    assert not missing, f"docs/commands.md does not document: {missing}"


def test_the_readme_is_a_short_front_page_whose_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= FRONT_PAGE_LINES, (
        f"README.md has {len(readme.splitlines())} lines; the front page keeps to "
        f"{FRONT_PAGE_LINES}: move the detail to a page in docs/."
    )
    for target, anchor in re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", readme):
        if re.match(r"[a-z]+://", target):
            continue
        path = ROOT / target
        assert path.exists(), f"README.md links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(), re.MULTILINE)
            slugs = {slugify(re.sub(r"[`*]", "", h), "-") for h in headings}
            assert anchor in slugs, f"README.md links to {target}#{anchor}: no such heading"


def build_site(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    built = build_site(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stderr[-3000:]
    nav = re.findall(r":\s+(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    for page in nav:
        html = tmp_path / "site" / ("index.html" if page == "index.md" else page[:-3])
        assert html.exists(), f"{page} is in the nav but was not built"
    results = (tmp_path / "site" / "results" / "index.html").read_text()
    assert "Benchmark results" in results, "benchmarks/RESULTS.md is not the results page"
    # A page's link to the file (../benchmarks/RESULTS.md) goes to that page in the site.
    assert 'href="../results/"' in (tmp_path / "site" / "budget" / "index.html").read_text()


def test_the_pages_link_to_the_results_by_the_file_that_exists_beside_them() -> None:
    # The site's results.md is generated (docs/hooks.py): links to it were broken on GitHub.
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        assert "](results.md" not in text, (
            f"{page.name} links to results.md, which only the built site has: link to "
            f"../benchmarks/RESULTS.md, which the site's hook points to its results page"
        )
        for target in re.findall(r"\]\((\.\./[^)#\s]+)", text):
            assert (DOCS / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_a_broken_link_fails_the_site_build(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(DOCS, project / "docs")
    shutil.copy(ROOT / "mkdocs.yml", project)
    (project / "benchmarks").mkdir()
    shutil.copy(ROOT / "benchmarks" / "RESULTS.md", project / "benchmarks")
    with (project / "docs" / "budget.md").open("a") as page:
        page.write("\nSee [the trial's clock](trials.md#no-such-heading).\n")
    built = build_site(project, tmp_path / "site")
    assert built.returncode != 0
    assert "no-such-heading" in built.stderr, built.stderr[-3000:]
