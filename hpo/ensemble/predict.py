"""Score new inputs with an exported ensemble.

Command line::

    python -m hpo.predict --ensemble ensembles/imdb-top5 "A wonderful film." "Dull and long."
    python -m hpo.predict --ensemble ensembles/imdb-top5 --file reviews.txt   # one review a line
    cat reviews.txt | python -m hpo.predict --ensemble ensembles/imdb-top5
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hpo.contract import CheckpointError, load_keras_file, refuse_unsafe_layers
from hpo.ensemble import EXPORT_NAME
from hpo.errors import ConfigError
from hpo.store import sha256_file

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["main", "predict", "verify_export"]


def predict(ensemble_dir: Path, texts: Sequence[str]) -> np.ndarray:
    """Probabilities of the positive class for `texts`, from `ensemble_dir/ensemble.keras`.

    The exported model is verified as the ensemble verifies its members: its SHA-256 must match
    the one `report.json` recorded when it was evaluated, it may hold no `Lambda` layer, and it
    is loaded in Keras safe mode.

    Raises:
        ConfigError: The folder holds no exported ensemble, or it does not verify.
    """
    path = Path(ensemble_dir) / EXPORT_NAME
    if not path.is_file():
        raise ConfigError(
            f"no {EXPORT_NAME} in {ensemble_dir}. Build one first: hpo ensemble --top 5."
        )
    verify_export(Path(ensemble_dir))
    model = load_keras_file(path)
    if not texts:
        return np.zeros(0)
    batch = np.array(list(texts), dtype=object)
    return np.asarray(model.predict(batch, batch_size=256, verbose=0), dtype=np.float64).reshape(-1)


def verify_export(ensemble_dir: Path) -> None:
    """Checks `ensemble.keras` against its recorded checksum and refuses unsafe layers.

    Raises:
        ConfigError: No report, no recorded checksum, a mismatch, or a `Lambda` layer.
    """
    report_path = ensemble_dir / "report.json"
    try:
        recorded = json.loads(report_path.read_text())["export"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{report_path} does not record the exported ensemble's checksum ({exc!r}); "
            f"rebuild the ensemble with hpo ensemble."
        ) from exc
    actual = sha256_file(ensemble_dir / EXPORT_NAME)
    if actual != recorded:
        raise ConfigError(
            f"{ensemble_dir / EXPORT_NAME} has checksum {actual[:12]}..., not the "
            f"{str(recorded)[:12]}... recorded when it was evaluated; it was changed or "
            f"truncated. Rebuild it with hpo ensemble."
        )
    try:
        refuse_unsafe_layers(ensemble_dir / EXPORT_NAME, "the exported ensemble")
    except CheckpointError as exc:
        raise ConfigError(f"{ensemble_dir / EXPORT_NAME}: {exc}") from exc


NEEDS_TENSORFLOW = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument(
        "--ensemble", required=True, type=Path, help="folder written by hpo.ensemble"
    )
    parser.add_argument("--file", type=Path, help="read inputs from this file, one per line")
    parser.add_argument("texts", nargs="*", help="inputs; without them and --file, read stdin")


def run(args: argparse.Namespace) -> int:
    """Prints probability, label and text per input."""
    if args.file is not None:
        try:
            texts = args.file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"--file {args.file} cannot be read: {exc}") from exc
    else:
        texts = args.texts or sys.stdin.read().splitlines()
    texts = [t for t in texts if t.strip()]
    probabilities = predict(args.ensemble, texts)
    for text, p in zip(texts, probabilities, strict=True):
        label = "positive" if p > 0.5 else "negative"
        preview = text if len(text) <= 70 else text[:67] + "..."
        print(f"{p:.4f}\t{label}\t{preview}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.predict`; returns the exit code."""
    from hpo.cli import run_module

    return run_module("predict", argv)


if __name__ == "__main__":
    sys.exit(main())
