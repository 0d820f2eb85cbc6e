"""How many trials per second the study store takes, and what a dashboard reader waits meanwhile.

Runs no-op trials (the objective samples three parameters and returns at once) from 1, 4 and 16
processes against SQLite (the default store), PostgreSQL and Optuna's gRPC proxy in front of
PostgreSQL, for a fixed time each, and prints one table of trials per second. With 16 writers it
also times a reader doing what the dashboard does (load the study, read every trial) and prints
the median and worst latency. This measures the store's own limit: real trials take seconds to
hours, so a store that takes hundreds of trials per second is never what slows a study.

Usage (the PostgreSQL and proxy rows need a server; `.ci/postgres.sh start` gives one):
    python benchmarks/bench_storage.py [--seconds 10] [--postgres URL] [--processes 1 4 16]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

from hpo.store import open_storage, redact_url


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1, 1)
    trial.suggest_int("n", 1, 100)
    trial.suggest_categorical("c", ["a", "b", "c"])
    return x * x


def _writer(url: str, name: str, stop_at: float, counter: multiprocessing.Value) -> None:  # type: ignore[type-arg]
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(url, create=False, heartbeat=False)
    study = optuna.load_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler()
    )
    done = 0
    while time.time() < stop_at:
        study.optimize(_objective, n_trials=1)
        done += 1
    with counter.get_lock():
        counter.value += done


def _measure(url: str, processes: int, seconds: float) -> tuple[float, list[float]]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_storage(url, create=True, heartbeat=False))
    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    start_at = time.time() + 3  # let every process start before the clock runs
    stop_at = start_at + seconds
    workers = [
        context.Process(target=_writer, args=(url, name, stop_at, counter))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    latencies = []
    reader = open_storage(url, create=False, heartbeat=False)
    while time.time() < stop_at:
        began = time.perf_counter()
        study = optuna.load_study(study_name=name, storage=reader)
        study.get_trials(deepcopy=False)
        if time.time() > start_at:
            latencies.append(time.perf_counter() - began)
        time.sleep(0.2)
    for worker in workers:
        worker.join()
    return counter.value / seconds, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--postgres", default=os.environ.get("HPO_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    scratch = Path(tempfile.mkdtemp(prefix="hpo-bench-storage-"))
    stores = {"sqlite": f"sqlite:///{scratch / 'bench.db'}"}
    proxy = None
    if args.postgres:
        stores["postgresql"] = args.postgres
        port = 13000 + os.getpid() % 1000
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hpo",
                "storage-proxy",
                "--storage",
                args.postgres,
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stores["grpc proxy -> postgresql"] = f"grpc://127.0.0.1:{port}"
    print(
        f"{args.seconds:.0f} s per cell, no-op trials; PostgreSQL: "
        f"{redact_url(args.postgres) if args.postgres else 'not given'}",
        flush=True,
    )
    header = "".join(f"{p:>8} proc" for p in args.processes)
    print(f"{'store':<26}{header}   reader at {max(args.processes)} writers (median / max)")
    try:
        for label, url in stores.items():
            cells, reader = [], ""
            for processes in args.processes:
                rate, latencies = _measure(url, processes, args.seconds)
                cells.append(f"{rate:>10.1f}/s")
                if processes == max(args.processes) and latencies:
                    reader = (
                        f"{statistics.median(latencies) * 1000:.0f} ms / "
                        f"{max(latencies) * 1000:.0f} ms"
                    )
            print(f"{label:<26}{''.join(cells)}   {reader}", flush=True)
    finally:
        if proxy is not None:
            proxy.send_signal(signal.SIGTERM)
            proxy.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
