"""What a process that loads TensorFlow and Keras spends starting, with and without packages.

Keras imports scikit-learn wherever it is installed (its `keras.wrappers`), TensorFlow imports
JAX (`tf.lite`'s utilities), and ml_dtypes 0.7.0 registers its NumPy loops in 0.7 s: the
environment's optional packages set how long each TensorFlow process takes to start, a search's
fork server, `hpo ensemble`, `hpo predict`, `hpo export` and the test suite's many processes
alike. This starts fresh Python processes that import what hpo's fork server preloads on
TensorFlow (`hpo.training.isolation.PRELOAD`), one arm after the other and in turn (`--repeats`
rounds), and prints each arm's CPU seconds (user and kernel) and wall seconds, medians over the
rounds, their ratio to the first arm's, and which of the packages named each arm loaded.

Arms: `installed` (this environment as it is); `without:M` for each `--hide M` (M made
unimportable, as if it were not installed); `with:NAME` for each `--path NAME=DIR` (DIR first on
the import path: another version of package NAME, say, installed there with `pip install
--target DIR`).

Usage:
    python benchmarks/bench_startup.py [--hide sklearn jax] [--path NAME=DIR ...] [--repeats 5]
        [--modules M ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import write_json

from hpo.training.isolation import STORE_PRELOAD, server_preload

# The fork server's preload on TensorFlow, in its order, without the store's modules.
SERVER_PRELOAD = [m for m in server_preload("tensorflow") if m not in STORE_PRELOAD]
# Optional packages whose loading each arm reports, besides those it hides or adds.
WATCHED = ["sklearn", "jax", "ml_dtypes", "IPython"]

CHILD = """
import importlib, importlib.metadata, json, sys
for name in {hidden!r}:
    sys.modules[name] = None
for name in {modules!r}:
    importlib.import_module(name)
loaded = {{}}
for name in {watched!r}:
    module = sys.modules.get(name)
    if module is not None:
        loaded[name] = getattr(module, "__version__", "loaded")
print(json.dumps(loaded))
"""


def arms(hide: list[str], paths: list[str]) -> list[dict[str, Any]]:
    """Each arm's name, hidden modules and import path."""
    found = [{"name": "installed", "hide": [], "path": None}]
    found += [{"name": f"without:{name}", "hide": [name], "path": None} for name in hide]
    for spec in paths:
        name, _, folder = spec.partition("=")
        if not folder or not Path(folder).is_dir():
            raise SystemExit(f"--path {spec!r}: give NAME=DIR, DIR an existing folder")
        found.append({"name": f"with:{name}", "hide": [], "path": folder})
    return found


def start(arm: dict[str, Any], modules: list[str], watched: list[str]) -> dict[str, Any]:
    """One fresh process of `arm`: its CPU and wall seconds and what it loaded."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if arm["path"]:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [arm["path"], env.get("PYTHONPATH")]))
    code = CHILD.format(hidden=arm["hide"], modules=modules, watched=watched)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"arm {arm['name']} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu": cpu, "wall": wall, "loaded": json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hide", nargs="*", default=[], help="modules to start without")
    parser.add_argument(
        "--path", nargs="*", default=[], help="NAME=DIR: an arm with DIR first on the path"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--modules", nargs="+", default=SERVER_PRELOAD, help="what each process imports"
    )
    parser.add_argument("--json", type=Path, help="write the runs here")
    args = parser.parse_args(argv)
    chosen = arms(args.hide, args.path)
    added = [a["name"].split(":", 1)[1] for a in chosen if a["path"]]
    watched = list(dict.fromkeys([*WATCHED, *args.hide, *added]))
    runs: dict[str, list[dict[str, Any]]] = {arm["name"]: [] for arm in chosen}
    for _ in range(args.repeats):
        for arm in chosen:
            runs[arm["name"]].append(start(arm, args.modules, watched))

    first = chosen[0]["name"]
    base_cpu = statistics.median(r["cpu"] for r in runs[first])
    print(f"importing {' '.join(args.modules)}; medians of {args.repeats} round(s)")
    print(f"{'arm':<28} {'CPU s':>7} {'wall s':>7} {'CPU/' + first:>14}  loaded")
    for arm in chosen:
        rows = runs[arm["name"]]
        cpu = statistics.median(r["cpu"] for r in rows)
        wall = statistics.median(r["wall"] for r in rows)
        loaded = ", ".join(f"{k} {v}" for k, v in rows[-1]["loaded"].items()) or "none of them"
        print(f"{arm['name']:<28} {cpu:>7.2f} {wall:>7.2f} {cpu / base_cpu:>14.2f}x  {loaded}")
    if args.json:
        write_json(args.json, runs)


if __name__ == "__main__":
    main()
