"""`hpo status` and `hpo report` on a study of many trials: this tree against another commit's.

A study of thousands of trials (a cluster's, or a long one of fast trials) is read by `hpo
status` and `hpo report` as a study of dozens is. This writes one SQLite study of `--trials`
complete trials shaped like the IMDB study's (four families, their parameters, learning curves of
a few epochs, the attributes the runner records), then times, in one Python process per arm and
in turn (`--repeats` rounds): the leaderboard data `hpo status` prints (`status(study, url,
top)`), and every figure of `hpo report` (`write_report`, not registered with the dashboard).
The arms are this tree (`hpo`) and, with `--baseline REV`, the same code of commit REV, checked
out into a temporary git worktree (`baseline`). It prints each arm's seconds (median) and the
hpo/baseline ratios.

Usage:
    python benchmarks/bench_inspect.py [--trials 1000] [--top 30] [--baseline REV]
        [--repeats 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from _common import arm_trees, run_arms, write_json

FAMILIES = {
    "conv1d": {"filters": [32, 64, 128], "kernel_size": [3, 5, 7], "blocks": [1, 2, 3]},
    "sepconv1d": {"filters": [32, 64, 128], "depth_multiplier": [1, 2], "blocks": [1, 2, 3]},
    "ngram": {"ngram_order": [1, 2, 3], "ngram_dim": [16, 32, 64]},
    "nbsvm": {"nb_order": [1, 2, 3], "nb_buckets": [2**18, 2**19, 2**20, 2**21]},
}


def write_study(url: str, trials: int, seed: int = 0) -> None:
    """`trials` COMPLETE trials of the four families, into a new study "many" at `url`."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(seed)
    study = optuna.create_study(study_name="many", storage=url, direction="maximize")
    made = []
    for number in range(trials):
        family = rng.choice(sorted(FAMILIES))
        params: dict[str, object] = {"family": family, "learning_rate": 10 ** rng.uniform(-4, -2)}
        distributions: dict[str, object] = {
            "family": CategoricalDistribution(sorted(FAMILIES)),
            "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
        }
        for name, choices in FAMILIES[family].items():
            params[name] = rng.choice(choices)
            distributions[name] = CategoricalDistribution(choices)
        epochs = rng.randint(2, 6)
        curve = {e: 0.80 + 0.1 * rng.random() * (e + 1) / epochs for e in range(epochs)}
        value = max(curve.values())
        made.append(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,  # type: ignore[arg-type]
                value=value,
                intermediate_values=curve,
                user_attrs={
                    "family": family,
                    "val_accuracy": value,
                    "val_loss": 1 - value,
                    "epochs": epochs,
                    "train_seconds": 30 * epochs * rng.random(),
                    "history": {"val_accuracy": list(curve.values())},
                    "worker": f"host{number % 8}:{1000 + number}",
                },
            )
        )
    study.add_trials(made)


def run_arm(url: str, top: int, out: Path) -> dict[str, float]:
    """In this arm's own process: seconds for the status data, then for the report's figures."""
    import optuna

    import hpo

    if not Path(hpo.__file__).is_relative_to(Path.cwd()):
        raise SystemExit(f"hpo imported from {hpo.__file__}, not from the arm's tree {Path.cwd()}")

    from hpo.inspection.report import write_report
    from hpo.inspection.status import status

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    rows = len(status(optuna.load_study(study_name="many", storage=url), url, top)["trials"])
    status_s = time.perf_counter() - started
    started = time.perf_counter()
    write_report(optuna.load_study(study_name="many", storage=url), out, register=False)
    return {"status": status_s, "report": time.perf_counter() - started, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--top", type=int, default=30, help="leaderboard rows, as --top")
    parser.add_argument("--baseline", help="a commit to compare with (a git worktree of it)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the runs here")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-inspect-") as scratch:
        if args.arm:
            print(json.dumps(run_arm(args.url, args.top, Path(scratch) / "report")))
            return
        url = f"sqlite:///{Path(scratch) / 'many.db'}"
        started = time.perf_counter()
        write_study(url, args.trials)
        print(f"{args.trials} trials written in {time.perf_counter() - started:.0f} s")
        with arm_trees(args.baseline) as trees:
            arguments = ("--url", url, "--top", f"{args.top}")
            runs = run_arms(__file__, list(trees), args.repeats, *arguments, trees=trees)
    medians = {
        arm: {part: statistics.median(r[part] for r in arm_runs) for part in ("status", "report")}
        for arm, arm_runs in runs.items()
    }
    print(f"{args.trials} trials, top {args.top}, {args.repeats} round(s); seconds (median)")
    print(f"{'arm':<9} {'status':>8} {'report':>8}")
    for arm, parts in medians.items():
        print(f"{arm:<9} {parts['status']:>8.2f} {parts['report']:>8.2f}")
    if "baseline" in medians:
        ratios = {p: medians["hpo"][p] / medians["baseline"][p] for p in ("status", "report")}
        print(f"hpo / baseline: status {ratios['status']:.3f}x, report {ratios['report']:.3f}x")
    if args.json:
        write_json(args.json, runs)


if __name__ == "__main__":
    main()
