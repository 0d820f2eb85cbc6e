"""NBSVM's naive-Bayes ratios (`hpo.models.nbsvm.adapt`): this tree against another commit's.

Every `nbsvm` trial, and the default model hpo prices before a search, counts which training
reviews hold each n-gram before it trains (`adapt`). This times that step on an IMDB study's
own training split at the family's defaults, in one Python process per arm and in turn
(`--repeats` rounds): this tree (`hpo`) and, with `--baseline REV`, commit REV's code in a
temporary git worktree (`baseline`). Both arms read the same prepared data (the study's cache)
and must compute the same ratios. It prints each arm's seconds (median) and the ratio.

Usage:
    python benchmarks/bench_nb_counts.py [--study studies/imdb.toml] [--data PATH]
        [--baseline REV] [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path

from _common import arm_trees, family_defaults, prepare, run_arms, write_json

from hpo.config import load_study_config
from hpo.study import search_space

ROOT = Path(__file__).resolve().parents[1]


def run_arm(study: Path, data: str | None) -> dict[str, object]:
    """Times `adapt` once on the study's training split; the ratios' digest, to compare."""
    import keras
    import numpy as np

    config = load_study_config(study)
    task, folder = prepare(config, data)
    # The defaults within the study's space: its prepared sequences may be shorter.
    space = search_space(task, config.space)
    params = {**family_defaults(task, "nbsvm", space), **task.build_context(folder)}
    trial = task.trial_data(folder, params)
    family = task.families["nbsvm"]
    keras.utils.set_random_seed(0)
    model = family.build(params)
    started = time.perf_counter()
    family.adapt(model, trial.x_train, trial.y_train, params)
    seconds = time.perf_counter() - started
    ratios = np.asarray(model.get_layer("naive_bayes").ratios)
    return {
        "seconds": seconds,
        "rows": len(trial.x_train),
        "digest": hashlib.sha256(np.round(ratios, 5).tobytes()).hexdigest()[:16],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "imdb.toml")
    parser.add_argument("--data", help="the data set (else the study's, or HPO_IMDB_PATH)")
    parser.add_argument("--baseline", help="a commit to compare with (a git worktree of it)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the runs here")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    study = args.study.resolve()
    if args.arm:
        print(json.dumps(run_arm(study, args.data)))
        return
    arguments = ("--study", str(study), *(("--data", args.data) if args.data else ()))
    with arm_trees(args.baseline) as trees:
        runs = run_arms(__file__, list(trees), args.repeats, *arguments, trees=trees)
    digests = {run["digest"] for arm_runs in runs.values() for run in arm_runs}
    if len(digests) != 1:
        raise SystemExit(f"the arms computed different ratios: {runs}")
    rows = runs["hpo"][0]["rows"]
    medians = {arm: statistics.median(r["seconds"] for r in ran) for arm, ran in runs.items()}
    print(f"adapt on {rows} training reviews, nbsvm defaults, {args.repeats} round(s); seconds")
    for arm, seconds in medians.items():
        print(f"{arm:<9} {seconds:>8.2f}")
    if "baseline" in medians:
        print(f"hpo / baseline: {medians['hpo'] / medians['baseline']:.3f}x (same ratios)")
    if args.json:
        write_json(args.json, runs)


if __name__ == "__main__":
    main()
