"""Tune a KerasTuner hypermodel on IMDB reviews with hpo.Tuner, then ensemble the best trials.

The same as `tuner_imdb.ipynb`, as a script. Run it with the IMDB archive (the official
`aclImdb_v1.tar.gz`, or its extracted `aclImdb/` folder):

    HPO_IMDB_PATH=aclImdb_v1.tar.gz python examples/tuner_imdb.py

Environment variables size the run (defaults: every review, 20 trials, 10 epochs, 30 minutes):
HPO_EXAMPLE_REVIEWS (reviews read per split), HPO_EXAMPLE_TRIALS, HPO_EXAMPLE_EPOCHS,
HPO_EXAMPLE_BUDGET and HPO_EXAMPLE_DIR (where the study goes, default `tuner_runs`). Running it
again continues the study where it stopped.

Each trial trains in a process of its own, which starts by importing this script (Python's
multiprocessing does so): the work is done under `if __name__ == "__main__":`, so that the
reviews are read once, not again in each trial's process (a script with no guard at all works
too: hpo then starts the trials without running it; see `docs/python.md`).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import keras
import numpy as np
from keras import layers

import hpo

IMDB = Path(os.environ.get("HPO_IMDB_PATH", "aclImdb_v1.tar.gz"))
REVIEWS = int(os.environ.get("HPO_EXAMPLE_REVIEWS", 25_000))
MAX_TRIALS = int(os.environ.get("HPO_EXAMPLE_TRIALS", 20))
EPOCHS = int(os.environ.get("HPO_EXAMPLE_EPOCHS", 10))
BUDGET = os.environ.get("HPO_EXAMPLE_BUDGET", "30m")
DIRECTORY = os.environ.get("HPO_EXAMPLE_DIR", "tuner_runs")
VOCABULARY = 20_000
SEQUENCE_LENGTH = 200


def load_reviews(split: str, limit: int) -> tuple[list[str], np.ndarray]:
    """Up to `limit` reviews of `split` ("train" or "test"), half of them positive."""
    texts: dict[str, list[str]] = {"neg": [], "pos": []}

    def wanted(parts: list[str]) -> bool:
        return (
            len(parts) == 4
            and parts[1] == split
            and parts[2] in texts
            and parts[3].endswith(".txt")
            and len(texts[parts[2]]) < limit // 2
        )

    if IMDB.is_dir():  # the extracted aclImdb/ folder
        for label in texts:
            for file in sorted((IMDB / split / label).glob("*.txt"))[: limit // 2]:
                texts[label].append(file.read_text(encoding="utf-8"))
    else:
        with tarfile.open(IMDB) as archive:
            for member in archive:
                parts = member.name.split("/")
                if wanted(parts):
                    file = archive.extractfile(member)
                    assert file is not None
                    texts[parts[2]].append(file.read().decode("utf-8"))
    labels = np.array([0] * len(texts["neg"]) + [1] * len(texts["pos"]))
    return texts["neg"] + texts["pos"], labels


def build_model(hp):
    """A KerasTuner hypermodel: its search space is declared as it builds."""
    inputs = keras.Input(shape=(SEQUENCE_LENGTH,), dtype="int64")
    x = layers.Embedding(VOCABULARY, hp.Choice("embedding_dim", [32, 64, 128]))(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(hp.Float("dropout", 0.0, 0.5, step=0.1))(x)
    x = layers.Dense(hp.Int("units", min_value=16, max_value=128, step=16), activation="relu")(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [1e-2, 3e-3, 1e-3])),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


def main() -> None:
    # Reviews as token ids: hpo.Tuner takes arrays of numbers.
    texts, labels = load_reviews("train", REVIEWS)
    test_texts, y_test = load_reviews("test", REVIEWS)
    order = np.random.default_rng(0).permutation(len(texts))
    vectorize = layers.TextVectorization(VOCABULARY, output_sequence_length=SEQUENCE_LENGTH)
    vectorize.adapt(texts)
    x = np.asarray(vectorize(texts))[order]
    y = labels[order]
    x_test = np.asarray(vectorize(test_texts))
    cut = int(len(x) * 0.8)
    x_train, y_train, x_val, y_val = x[:cut], y[:cut], x[cut:], y[cut:]
    print(f"{len(x_train)} training, {len(x_val)} validation, {len(x_test)} test reviews")

    # keras_tuner.RandomSearch(build_model, objective="val_accuracy", max_trials=...) -> hpo.Tuner
    tuner = hpo.Tuner(
        build_model,
        objective="val_accuracy",
        max_trials=MAX_TRIALS,
        budget=BUDGET,
        directory=DIRECTORY,
        project_name="imdb",
    )
    tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=EPOCHS)
    tuner.results_summary(3)

    best_hp = tuner.get_best_hyperparameters()[0]
    print("best hyperparameters:", best_hp.values)
    [best_model] = tuner.get_best_models(1)
    _, best_accuracy = best_model.evaluate(x_test, y_test, verbose=0)

    # What KerasTuner does not have: the best trials, weighted on validation, in one model.
    ensemble = tuner.ensemble(top=5)
    scores = ensemble.evaluate(x_test, y_test)
    print(ensemble)
    print(f"test accuracy: best model {best_accuracy:.4f}, ensemble {scores['accuracy']:.4f}")
    path = ensemble.export(Path(DIRECTORY) / "imdb_ensemble.keras")
    reloaded = hpo.load_model(path)
    print(f"exported to {path}; it predicts {reloaded.predict(x_test[:3], verbose=0).ravel()}")


if __name__ == "__main__":
    main()
