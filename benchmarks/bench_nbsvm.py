"""NBSVM-bi (Wang & Manning 2012) on an IMDB study's own split: the linear reference beside it.

Features: scikit-learn's `CountVectorizer(ngram_range=(1, 2), binary=True)` on lowercased
words (one letter or more) and single punctuation marks ("!" carries sentiment), with no
vocabulary cap or length cut; on the default study's validation split these tokens score 0.908
against 0.900 for scikit-learn's default ones (words of two letters or more). The counts are
scaled by the naive-Bayes log-count ratio (alpha = 1) and fed to a logistic regression
(liblinear, dual): NBSVM's probabilistic variant, so log-loss and calibration compare with hpo's
models.

The rows are the study's own (`hpo.tasks.imdb.read_split`): NBSVM fits on the study's training
reviews, picks C from a grid by validation log-loss (validation accuracy barely moves with C: a
few reviews in 5,000) and reads the test set once, at the end. `--refit` adds the same model
with that C refitted on training + validation. Fit seconds (wall clock and CPU) cover
vectorizing, scaling and fitting at the chosen C, all on one core: on a busy machine the CPU
seconds are the figure to compare. When `hpo ensemble` has written its report for the study
(ensembles/<study>-top<K>/report.json, or `--ensemble DIR`), its ensemble and best single model
are printed beside NBSVM.

Needs scikit-learn: `pip install -e '.[bench]'`.

Usage:
    python benchmarks/bench_nbsvm.py [--study studies/imdb.toml] [--data PATH] [--refit]
        [--top 5 | --ensemble DIR] [--smoke] [--json FILE]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from _common import Stopwatch, benchmark_parser, run_main
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from hpo import metrics
from hpo.config import load_study_config
from hpo.data import imdb
from hpo.data.stratify import stratified_subset
from hpo.errors import ConfigError
from hpo.tasks.imdb import locate, read_split

if TYPE_CHECKING:
    import argparse

    from hpo.config import StudyConfig

C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
SMOKE_SIZE = 1000
TOKENS = r"(?u)\b\w+\b|[^\w\s]"
COLUMNS = (
    "model",
    "C",
    "train_examples",
    "val_acc",
    "accuracy",
    "roc_auc",
    "log_loss",
    "ece",
    "fit_s",
    "fit_cpu_s",
)


class NBSVM:
    """Binarized uni+bigram counts scaled by the naive-Bayes log-count ratio, then logistic."""

    def __init__(self, texts: list[str], labels: np.ndarray) -> None:
        self.vectorizer = CountVectorizer(
            ngram_range=(1, 2), binary=True, token_pattern=TOKENS, dtype=np.float64
        )
        x = self.vectorizer.fit_transform(texts)
        p = 1.0 + np.asarray(x[labels == 1].sum(axis=0)).ravel()
        q = 1.0 + np.asarray(x[labels == 0].sum(axis=0)).ravel()
        self.ratio = np.log(p / p.sum()) - np.log(q / q.sum())
        self.x, self.y = x.multiply(self.ratio).tocsr(), labels

    def features(self, texts: list[str]) -> Any:
        return self.vectorizer.transform(texts).multiply(self.ratio).tocsr()

    def fit(self, c: float) -> LogisticRegression:
        return LogisticRegression(C=c, solver="liblinear", dual=True, max_iter=1000).fit(
            self.x, self.y
        )


def probabilities(model: NBSVM, classifier: LogisticRegression, texts: list[str]) -> np.ndarray:
    return classifier.predict_proba(model.features(texts))[:, 1]


def smaller(texts: list[str], labels: np.ndarray, size: int) -> tuple[list[str], np.ndarray]:
    """A seeded, class-balanced subset of at most `size` texts (`--smoke`)."""
    if len(texts) <= size:
        return texts, labels
    index = stratified_subset(labels, np.arange(len(labels)), size, seed=0)
    return [texts[i] for i in index], labels[index]


def nbsvm_rows(
    config: StudyConfig, source: Path, refit: bool, smoke: bool
) -> tuple[list[dict[str, Any]], int, int]:
    """NBSVM fitted on the study's training reviews (C by validation), and optionally refitted.

    Returns:
        The table's rows, and the number of validation and test reviews.
    """
    train_texts, y_train, val_texts, y_val, _ = read_split(config, source)
    if smoke:
        train_texts, y_train = smaller(train_texts, y_train, SMOKE_SIZE)
        val_texts, y_val = smaller(val_texts, y_val, SMOKE_SIZE // 2)
    print(
        f"{len(train_texts)} training, {len(val_texts)} validation reviews; "
        f"C from {list(C_GRID)} by validation log-loss",
        flush=True,
    )
    clock = Stopwatch()
    model = NBSVM(train_texts, y_train)
    featurize = clock.seconds()
    x_val = model.features(val_texts)
    fits = []
    for c in C_GRID:
        clock = Stopwatch()
        classifier = model.fit(c)
        seconds = clock.seconds()
        p = classifier.predict_proba(x_val)[:, 1]
        val_acc, val_loss = metrics.accuracy(y_val, p), metrics.log_loss(y_val, p)
        print(f"  C={c:<5} val accuracy {val_acc:.4f}, log-loss {val_loss:.4f}", flush=True)
        fits.append((val_loss, val_acc, c, classifier, seconds))
    _, val_acc, best_c, classifier, seconds = min(fits, key=lambda fit: fit[0])
    # The test set is read once C is chosen, for the final evaluation only.
    test = imdb.read_reviews(source, "test")
    test_texts, y_test = test.texts, test.labels
    if smoke:
        test_texts, y_test = smaller(test_texts, y_test, SMOKE_SIZE)
    rows = [
        {
            "model": "NBSVM-bi, training reviews",
            "C": best_c,
            "train_examples": model.x.shape[0],
            "val_acc": val_acc,
            **metrics.summary(y_test, probabilities(model, classifier, test_texts)),
            "fit_s": featurize[0] + seconds[0],
            "fit_cpu_s": featurize[1] + seconds[1],
        }
    ]
    if refit:
        texts, labels = train_texts + val_texts, np.concatenate([y_train, y_val])
        clock = Stopwatch()
        model = NBSVM(texts, labels)
        classifier = model.fit(best_c)
        seconds = clock.seconds()
        rows.append(
            {
                "model": "NBSVM-bi, training + validation",
                "C": best_c,
                "train_examples": model.x.shape[0],
                **metrics.summary(y_test, probabilities(model, classifier, test_texts)),
                "fit_s": seconds[0],
                "fit_cpu_s": seconds[1],
            }
        )
    return rows, len(val_texts), len(test_texts)


def ensemble_rows(path: Path, val_examples: int, test_examples: int) -> list[dict[str, Any]]:
    """The ensemble's and its best member's test numbers from `hpo ensemble`'s report.json."""
    report = json.loads(path.read_text())
    if (report["test_examples"], report["val_examples"]) != (test_examples, val_examples):
        print(
            f"note: {path} was scored on {report['test_examples']} test and "
            f"{report['val_examples']} validation reviews, this run on {test_examples} and "
            f"{val_examples}: not the same split.",
            flush=True,
        )
    best = report["members"][0]
    return [
        {
            "model": f"ensemble of {report['top']} ({report['method']})",
            "val_acc": report["validation"]["ensemble"]["accuracy"],
            **report["test"]["ensemble"],
        },
        {
            "model": f"best single: trial {best['trial']} ({best['family']})",
            "val_acc": report["validation"]["best_member"]["accuracy"],
            **report["test"]["best_member"],
        },
    ]


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a terminal table; a blank where a model has no such number."""
    formats = {"C": "{:g}", "train_examples": "{:.0f}", "fit_s": "{:.1f}", "fit_cpu_s": "{:.1f}"}
    frame = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    for column in COLUMNS[1:]:
        form = formats.get(column, "{:.4f}")
        frame[column] = [form.format(v) if pd.notna(v) else "" for v in frame[column]]
    return frame.to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(
        __doc__, "studies/imdb.toml", "aclImdb/ folder or archive (default: as the study finds it)"
    )
    parser.add_argument("--refit", action="store_true", help="also refit on training + validation")
    parser.add_argument("--top", type=int, default=5, help="the ensemble's size, for its folder")
    parser.add_argument("--ensemble", type=Path, help="the ensemble's folder, if not the default")
    parser.add_argument(
        "--smoke", action="store_true", help=f"at most {SMOKE_SIZE} reviews a split"
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    return run_main(lambda: compare(args))


def compare(args: argparse.Namespace) -> None:
    """Fits NBSVM-bi and prints it beside hpo's ensemble.

    Raises:
        ConfigError: The study is not an IMDB study.
    """
    config = load_study_config(args.study)
    if config.task != "imdb":
        raise ConfigError(
            f"{args.study} is a '{config.task}' study; NBSVM-bi here reads IMDB's split "
            "(task = 'imdb'). Pass an IMDB study file, e.g. --study studies/imdb.toml."
        )
    rows, val_examples, test_examples = nbsvm_rows(
        config, locate(config, args.data), args.refit, args.smoke
    )
    folder = args.ensemble or Path("ensembles") / f"{config.name}-top{args.top}"
    report = folder / "report.json"
    if report.is_file():
        rows += ensemble_rows(report, val_examples, test_examples)
    else:
        print(f"no ensemble report at {report}: run `hpo ensemble` to print it beside", flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
