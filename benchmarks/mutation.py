"""Mutation testing of the pure modules with mutmut: each module against its own unit tests only.

For each module, a scratch folder `.mutation/<name>/` gets the project's pyproject.toml with a
`[tool.mutmut]` section naming that module and its tests, and links to `hpo/` and `tests/`;
mutmut copies them into `.mutation/<name>/mutants/`, mutates the one module and runs, for each
mutant, the module's tests that cover the mutated function. Results stay in the scratch folder
(git-ignored): `cd .mutation/<name> && mutmut results` lists the survivors, `mutmut show NAME`
shows one. Prints one row per module: mutants, killed, survived, timeout, no tests, score ((killed +
timeout) / mutants), minutes.

Usage (from the repository root; `make mutation` runs it under `nice -n 19`):
    python benchmarks/mutation.py [metrics weighting ...] [--max-children 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".mutation"
MUTMUT = Path(sys.executable).with_name("mutmut")

# name: (module, its own fast unit tests as pytest arguments)
MODULES: dict[str, tuple[str, list[str]]] = {
    "weighting": ("hpo/ensemble/weighting.py", ["tests/ensemble/test_weighting.py"]),
    "space": ("hpo/space.py", ["tests/test_space.py", "tests/test_study.py"]),
    "stratify": ("hpo/data/stratify.py", ["tests/data/test_stratify.py"]),
    "metrics": ("hpo/metrics.py", ["tests/test_metrics.py"]),
    "budget": ("hpo/budget.py", ["tests/test_budget.py"]),
    "batching": (
        "hpo/data/batching.py",
        # The bucketed-vs-padded prediction test trains real models (40 s each): not a unit test.
        ["tests/data/test_batching.py", "-k", "not test_bucketed_predictions_equal_padded_ones"],
    ),
    "cost": ("hpo/cost.py", ["tests/test_cost.py"]),
    "diversity": ("hpo/diversity.py", ["tests/test_diversity.py"]),
    "config": ("hpo/config.py", ["tests/test_config.py"]),
}


# Environment of a module's mutants. batching's tests call models: Keras's numpy backend runs
# them with no TensorFlow thread pools, whose spinning threads would spend the CPU-time limit
# mutmut sets per mutant (sized from the clean run) and turn killed mutants into timeouts.
ENV = {"batching": {"KERAS_BACKEND": "numpy"}}


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def prepare(name: str) -> Path:
    """A fresh scratch folder whose pyproject.toml points mutmut at one module and its tests."""
    module, tests = MODULES[name]
    folder = SCRATCH / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for link in ("hpo", "tests"):
        (folder / link).symlink_to(ROOT / link, target_is_directory=True)
    # The shipped study files (tests load them), without the studies' generated folders.
    (folder / "studies").mkdir()
    for study in (ROOT / "studies").glob("*.toml"):
        shutil.copy2(study, folder / "studies" / study.name)
    config = (
        "\n[tool.mutmut]\n"
        'source_paths = ["hpo"]\n'
        f"only_mutate = {_toml_list([module])}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        'pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-p", "no:xdist"]\n'
        'also_copy = ["studies"]\n'
        "use_git_change_detection = false\n"
    )
    (folder / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + config)
    return folder


def run(name: str, max_children: int) -> dict[str, float] | None:
    """Mutate one module, run its tests against each mutant: mutmut's counts and the time, or
    None when mutmut could not run (its log says why)."""
    folder = prepare(name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.update(ENV.get(name, {}))
    started = time.monotonic()
    with (folder / "mutmut.log").open("w") as log:
        done = subprocess.run(
            [str(MUTMUT), "run", "--max-children", str(max_children)],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if done.returncode != 0:
            return None
        subprocess.run(
            [str(MUTMUT), "export-cicd-stats"], cwd=folder, env=env, stdout=log, check=True
        )
    stats = json.loads((folder / "mutants" / "mutmut-cicd-stats.json").read_text())
    stats["minutes"] = (time.monotonic() - started) / 60
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=list(MODULES), default=list(MODULES))
    parser.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args()
    print("| module | mutants | killed | survived | timeout | no tests | score | minutes |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.names:
        s = run(name, args.max_children)
        if s is None:
            print(f"| {MODULES[name][0]} | mutmut failed: {SCRATCH / name / 'mutmut.log'} |")
            continue
        total = s["total"] - s.get("skipped", 0)
        killed = s["killed"]
        # A mutant that runs past its CPU-time limit (an endless loop) was caught too.
        score = 100 * (killed + s["timeout"]) / total if total else 0.0
        print(
            f"| {MODULES[name][0]} | {total} | {killed} | {s['survived']} | {s['timeout']} "
            f"| {s['no_tests']} | {score:.1f}% | {s['minutes']:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
