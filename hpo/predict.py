"""Score new inputs with an exported ensemble.

Command line::

    python -m hpo.predict --ensemble ensembles/imdb-top5 "A wonderful film." "Dull and long."
    python -m hpo.predict --ensemble ensembles/imdb-top5 --file reviews.txt   # one review a line
    cat reviews.txt | python -m hpo.predict --ensemble ensembles/imdb-top5
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hpo.checkpoints import load_keras_file
from hpo.ensemble import EXPORT_NAME
from hpo.errors import ConfigError, HpoError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main", "predict"]


def predict(ensemble_dir: Path, texts: Sequence[str]) -> np.ndarray:
    """Probabilities of the positive class for `texts`, from `ensemble_dir/ensemble.keras`.

    Raises:
        ConfigError: The folder holds no exported ensemble.
    """
    path = Path(ensemble_dir) / EXPORT_NAME
    if not path.is_file():
        raise ConfigError(
            f"no {EXPORT_NAME} in {ensemble_dir}. Build one first: python -m hpo.ensemble --top 5."
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    model = load_keras_file(path)
    if not texts:
        return np.zeros(0)
    batch = np.array(list(texts), dtype=object)
    return np.asarray(model.predict(batch, batch_size=256, verbose=0), dtype=np.float64).reshape(-1)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.predict`; prints probability, label and text per input."""
    parser = argparse.ArgumentParser(
        prog="python -m hpo.predict", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--ensemble", required=True, type=Path, help="folder written by hpo.ensemble"
    )
    parser.add_argument("--file", type=Path, help="read inputs from this file, one per line")
    parser.add_argument("texts", nargs="*", help="inputs; without them and --file, read stdin")
    args = parser.parse_args(argv)
    try:
        if args.file is not None:
            try:
                texts = args.file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"--file {args.file} cannot be read: {exc}") from exc
        else:
            texts = args.texts or sys.stdin.read().splitlines()
        texts = [t for t in texts if t.strip()]
        probabilities = predict(args.ensemble, texts)
    except HpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for text, p in zip(texts, probabilities, strict=True):
        label = "positive" if p > 0.5 else "negative"
        preview = text if len(text) <= 70 else text[:67] + "..."
        print(f"{p:.4f}\t{label}\t{preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
