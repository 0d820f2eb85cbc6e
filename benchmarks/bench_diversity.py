"""Which way of choosing the family feeds the ensemble best, at the same wall-clock budget?

Runs the study once per `[sampler] diversity` mode (`--legs`, two at a time side by side, each
pinned to its own CPU core, or one after the other with `--sequential`), with the same sampler
seed, data and budget: "none" (TPE chooses the family, as every other parameter), "balanced"
(the family with the fewest trials) and "top" (every other trial, the family missing from the
best ten). Each leg then builds its top-5 ensemble (chosen and weighted on validation only) and
evaluates it once on the test set. The report: trials per family, the families of the
ensemble's members, the best single trial and the ensemble (validation accuracy; test accuracy /
log-loss / ECE). The better ensemble by test log-loss is the candidate default. Studies and
ensembles live under `--out`; a rerun resumes each leg within its budget.

Usage:
    python benchmarks/bench_diversity.py [--study studies/imdb.toml] [--budget 1h]
        [--legs none top] [--out /tmp/hpo-diversity] [--data PATH] [--sequential]
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from pathlib import Path

import optuna
from _common import (
    TOP,
    add_leg_arguments,
    benchmark_parser,
    comparison_table,
    ensemble_report,
    load_hpo_study,
    run_hpo_leg,
    run_legs_pinned,
    run_main,
    scores,
    state_counts,
)

from hpo.budget import format_duration, parse_duration, spent_seconds
from hpo.config import Diversity, StudyConfig, load_study_config

LEGS = [mode.value for mode in Diversity]
KEYS = ("accuracy", "log_loss", "ece")


def leg_config(base: StudyConfig, mode: str, out: Path, budget: float) -> StudyConfig:
    """The study as `mode` runs it: its own name, folder and store; the same seed and budget."""
    name = f"{base.name}-{mode}"
    return dataclasses.replace(
        base,
        name=name,
        study_dir=out / name,
        storage=None,
        artifacts=None,
        budget=budget,
        sampler=dataclasses.replace(base.sampler, diversity=Diversity(mode)),
    )


def leg_rows(config: StudyConfig, ensemble_dir: Path) -> dict[str, str] | None:
    """One leg's column of the report, or None if it has not run."""
    study = load_hpo_study(config)
    if study is None:
        return None
    trials = study.get_trials(deepcopy=False)
    complete, pruned, failed = state_counts(trials)
    families = Counter(str(t.params.get("family")) for t in trials if "family" in t.params)
    rows = {
        "budget spent": format_duration(spent_seconds(study)),
        "trials complete / pruned / failed": f"{complete} / {pruned} / {failed}",
        "trials per family": ", ".join(f"{f} {n}" for f, n in sorted(families.items())),
    }
    values = [t.value for t in trials if t.value is not None]
    if values:
        rows["best validation accuracy"] = f"{max(values):.4f}"
    report = ensemble_report(study, ensemble_dir)
    if report:
        members = report["members"]
        rows["ensemble members' families (weight)"] = ", ".join(
            f"{m['family']} {m['weight']:.2f}" for m in members if m.get("weight", 1) > 0
        )
        rows["ensemble validation accuracy"] = f"{report['validation']['ensemble']['accuracy']:.4f}"
        rows["best member, test acc. / log-loss / ECE"] = scores(
            report["test"]["best_member"], KEYS
        )
        rows["ensemble, test acc. / log-loss / ECE"] = scores(report["test"]["ensemble"], KEYS)
    return rows


def main() -> int:
    parser = benchmark_parser(__doc__, "studies/imdb.toml")
    add_leg_arguments(parser, LEGS)
    parser.set_defaults(legs=["none", "top"], budget="1h")
    parser.add_argument("--out", default="/tmp/hpo-diversity", help="the legs' studies")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = load_study_config(args.study)
    budget = parse_duration(args.budget, "--budget")
    out = Path(args.out)
    configs = {mode: leg_config(base, mode, out, budget) for mode in args.legs}
    ensembles = {mode: out / f"{configs[mode].name}-top{TOP}" for mode in args.legs}

    if args.arm or args.sequential or len(args.legs) == 1:
        for mode in args.legs:
            print(f"== {mode}: {configs[mode].study_dir}", flush=True)
            run_hpo_leg(configs[mode], args.data, ensembles[mode])
        if args.arm:
            return 0
    else:
        run_legs_pinned(__file__, sys.argv[1:], args.legs)

    columns = {mode: leg_rows(configs[mode], ensembles[mode]) for mode in args.legs}
    measures = list(dict.fromkeys(row for column in columns.values() if column for row in column))
    print(f"\nsame study, seed and budget ({args.budget} each):")
    print(comparison_table(measures, columns))
    ranked = []
    for mode in args.legs:
        study = load_hpo_study(configs[mode])
        report = ensemble_report(study, ensembles[mode]) if study else None
        if report:
            ranked.append((report["test"]["ensemble"]["log_loss"], mode))
    ranked.sort()
    if ranked:
        print(f"better ensemble by test log-loss: {ranked[0][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
