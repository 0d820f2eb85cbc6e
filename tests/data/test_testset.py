"""The test set's fingerprint: stable across loads and processes, changed by one label or input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from hpo.config import load_study_config
from hpo.data.testset import change, fingerprint
from hpo.study import search_space
from hpo.tasks import get_task
from hpo.tasks.imdb import IMDB

from ..conftest import write_study
from ..tasks.test_images import _study as image_study
from ..tasks.test_images import write_images
from ..tasks.test_text import _study as text_study
from ..tasks.test_text import _texts

ROOT = Path(__file__).resolve().parents[2]


def test_the_fingerprint_is_stable_across_loads_and_processes(
    fake_imdb: Path, tmp_path: Path
) -> None:
    config = load_study_config(write_study(tmp_path, fake_imdb))
    folder = IMDB.prepare(config, None, search_space(IMDB, config.space).shared)
    first, second = (IMDB.load_test(config, None, folder) for _ in range(2))
    assert first.source == second.source == fake_imdb
    one = fingerprint(first.raw, first.y, first.source)
    assert one == fingerprint(second.raw, second.y, second.source)
    assert one.examples == 240
    assert len(one.sha256) == 64

    # Another process (another string hash seed) reading the reviews alone gets the same hash.
    script = (
        "import sys, numpy as np; from pathlib import Path; from hpo.data import imdb, testset; "
        "r = imdb.read_reviews(Path(sys.argv[1]), 'test'); "
        "print(testset.fingerprint(np.array(r.texts, dtype=object), r.labels, sys.argv[1]).sha256)"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, str(fake_imdb)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "random"},
    )
    assert other.stdout.strip() == one.sha256


def test_one_changed_label_or_input_changes_the_fingerprint(fake_imdb: Path) -> None:
    from hpo.data import imdb

    reviews = imdb.read_reviews(fake_imdb, "test")
    texts, labels = np.array(reviews.texts, dtype=object), reviews.labels
    base = fingerprint(texts, labels, fake_imdb)

    edited = texts.copy()
    edited[7] += " "
    text_changed = fingerprint(edited, labels, fake_imdb)
    assert text_changed.sha256 != base.sha256
    assert text_changed.inputs_sha256 != base.inputs_sha256
    assert text_changed.labels_sha256 == base.labels_sha256

    relabelled = labels.copy()
    relabelled[7] = 1 - relabelled[7]
    label_changed = fingerprint(texts, relabelled, fake_imdb)
    assert label_changed.sha256 != base.sha256
    assert label_changed.inputs_sha256 == base.inputs_sha256
    assert label_changed.labels_sha256 != base.labels_sha256

    # Moving texts between examples keeps the concatenation but not the texts.
    split = texts.copy()
    split[0], split[1] = texts[0] + texts[1][:3], texts[1][3:]
    assert fingerprint(split, labels, fake_imdb).inputs_sha256 != base.inputs_sha256

    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    image_labels = np.array([0, 1, 2, 0, 1, 2])
    pixel = images.copy()
    pixel[3, 4, 5, 1] ^= 1
    assert fingerprint(images, image_labels, "a") == fingerprint(images.copy(), image_labels, "a")
    assert fingerprint(pixel, image_labels, "a").inputs_sha256 != (
        fingerprint(images, image_labels, "a").inputs_sha256
    )


def test_image_and_table_tasks_fingerprint_their_test_split(tmp_path: Path) -> None:
    data = write_images(tmp_path / "images", {"train": 20, "test": 4})
    config = load_study_config(image_study(tmp_path / "shapes", data))
    task = get_task("images")
    folder = task.prepare(config, None, search_space(task, config.space).shared)
    first, second = (task.load_test(config, None, folder) for _ in range(2))
    assert first.source == data
    assert fingerprint(first.raw, first.y, first.source) == fingerprint(
        second.raw, second.y, second.source
    )
    assert fingerprint(first.raw, first.y, first.source).examples == 12

    table = tmp_path / "table"
    table.mkdir()
    columns = ["text", "label", "author"]
    pd.DataFrame(_texts(90, 0), columns=columns).to_csv(table / "train.csv", index=False)
    pd.DataFrame(_texts(30, 1), columns=columns).to_csv(table / "test.csv", index=False)
    config = load_study_config(text_study(table, table / "train.csv", 'test_path = "test.csv"'))
    task = get_task("text")
    folder = task.prepare(config, None, search_space(task, config.space).shared)
    first, second = (task.load_test(config, None, folder) for _ in range(2))
    assert first.source == table / "test.csv"
    loaded = fingerprint(first.raw, first.y, first.source)
    assert loaded == fingerprint(second.raw, second.y, second.source)
    assert loaded.examples == 30


def test_a_change_names_both_fingerprints_counts_and_what_differs() -> None:
    texts = np.array(["a b", "c d", "e f"], dtype=object)
    before = fingerprint(texts, np.array([0, 1, 0]), "/data/a")
    recorded = {**before.as_dict(), "out_dir": "ensembles/x-top5", "created": "2025-01-01"}
    assert change(None, before) is None
    assert change(recorded, before) is None
    # The same data read from elsewhere is the same test set.
    assert change(recorded, fingerprint(texts, np.array([0, 1, 0]), "/data/b")) is None

    after = fingerprint(texts[:2], np.array([0, 1]), "/data/b")
    found = change(recorded, after)
    assert found is not None
    assert found["previous"]["sha256"] == before.sha256
    assert found["current"] == after.as_dict()
    assert found["changed"] == [
        "the number of examples (3 -> 2)",
        "the inputs",
        "the labels",
        "the source (/data/a -> /data/b)",
    ]
    for part in (before.sha256, after.sha256, "3 examples", "2 examples", "ensembles/x-top5"):
        assert part in found["message"]
    # A table's test set is [data] test_path's, which --data does not replace.
    assert "point --data (for a table's test table, [data] test_path) at" in found["message"]

    labels_only = change(recorded, fingerprint(texts, np.array([1, 1, 0]), "/data/a"))
    assert labels_only is not None
    assert labels_only["changed"] == ["the labels"]
