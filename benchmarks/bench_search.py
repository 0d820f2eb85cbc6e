"""Search benchmarks, measured side by side in one run.

1. Data load: cold (read the archive, split, tokenize, write the cache) vs warm (read the cached
   arrays and derive one trial's inputs), at the study's settings.
2. Worker memory over a sequence of trials: the same models trained one after another in one
   process (with `keras.backend.clear_session()` between them) vs one child process per trial,
   as the search runs them. Prints resident memory after each trial and the growth.

Usage:
    python benchmarks/bench_search.py --study studies/imdb.toml [--trials 8] [--data PATH]
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import optuna
from _common import benchmark_parser, prepare, scratch_study

from hpo.config import StudyConfig, load_study_config
from hpo.study import sample_params, search_space
from hpo.tasks import study_task
from hpo.training.isolation import call_isolated


def rss_mb() -> float:
    """Current resident set size of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare_cold(args: tuple[StudyConfig, str | None]) -> tuple[Path, float]:
    started = time.perf_counter()
    _, folder = prepare(*args)
    return folder, time.perf_counter() - started


def load_warm(args: tuple[StudyConfig, Path, dict[str, Any]]) -> float:
    config, folder, params = args
    task = study_task(config)
    started = time.perf_counter()
    task.trial_data(folder, params)
    return time.perf_counter() - started


def train_one(config: StudyConfig, folder: Path, params: dict[str, Any]) -> None:
    from hpo.training.runner import build_model

    task = study_task(config)
    data = task.trial_data(folder, params)
    model = build_model(task, params)
    model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=1,
        batch_size=params["batch_size"],
        verbose=0,
    )
    model.predict(data.x_val, verbose=0)


def train_in_one_process(args: tuple[StudyConfig, Path, list[dict[str, Any]]]) -> list[float]:
    import keras

    config, folder, sequence = args
    after = []
    for params in sequence:
        train_one(config, folder, params)
        keras.backend.clear_session()
        after.append(rss_mb())
    return after


def train_isolated(args: tuple[StudyConfig, Path, dict[str, Any]]) -> float:
    config, folder, params = args
    train_one(config, folder, params)
    return peak_rss_mb()


def sample_sequence(config: StudyConfig, n: int) -> list[dict[str, Any]]:
    task = study_task(config)
    space = search_space(task, config.space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=config.sampler.seed))
    sequence = []
    for _ in range(n):
        trial = study.ask()
        sequence.append(sample_params(trial, task, space))
        study.tell(trial, 0.0)
    return sequence


def main() -> int:
    parser = benchmark_parser(__doc__, "studies/imdb.toml")
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = load_study_config(args.study)
    with scratch_study(base, "hpo-bench-") as config:
        subset = config.data.train_size or "all"
        print(f"# Data load ({base.name}: val_size={config.data.val_size}, train_size={subset})")
        folder, cold = call_isolated(prepare_cold, (config, args.data))
        sequence = sample_sequence(config, args.trials)
        warm = call_isolated(load_warm, (config, folder, sequence[0]))
        print(f"cold (read + split + tokenize + cache): {cold:7.2f} s")
        print(f"warm (cached arrays + derive):          {warm:7.2f} s")
        print(f"ratio cold / warm:                      {cold / warm:7.1f} x")

        print(f"\n# Worker memory over {args.trials} trials (1 epoch each, {base.name} space)")
        in_process = call_isolated(train_in_one_process, (config, folder, sequence))
        worker_before = rss_mb()
        worker_after, child_peaks = [], []
        for params in sequence:
            child_peaks.append(call_isolated(train_isolated, (config, folder, params)))
            worker_after.append(rss_mb())
        print("trial  one-process RSS MB  isolated: worker RSS MB  trial-process peak MB")
        for i, (a, b, c) in enumerate(zip(in_process, worker_after, child_peaks, strict=True)):
            print(f"{i:>5}  {a:18.0f}  {b:23.0f}  {c:21.0f}")
        growth_one = in_process[-1] - in_process[0]
        growth_iso = worker_after[-1] - worker_before
        print(f"growth from first to last trial, one process:       {growth_one:+8.0f} MB")
        print(f"growth of the worker over all trials, isolated:     {growth_iso:+8.0f} MB")
        print(f"largest trial-process peak (freed after each trial): {max(child_peaks):8.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
