"""What stopped writers left: the files `hpo gc` removes, and those it keeps."""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING

import optuna
from optuna.artifacts import upload_artifact
from optuna.trial import TrialState, create_trial

from hpo.config import load_study_config
from hpo.contract import Attr, store_trial_artifacts
from hpo.leftovers import STALE_AFTER, sweep_leftovers
from hpo.store import AtomicFileSystemArtifactStore

from .conftest import write_study

if TYPE_CHECKING:
    from pathlib import Path
    from typing import BinaryIO


def _aged(path: Path, seconds: float, size: int = 100) -> Path:
    if not path.exists():
        path.write_bytes(bytes(size))
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_an_upload_is_named_on_its_trial_before_the_file_is_written(tmp_path: Path) -> None:
    # A trial's process SIGKILLed right after storing its checkpoint (Optuna writes the file,
    # then returns its id) left 13.5 MB in artifacts/ that no record named, which gc kept.
    checkpoint, predictions = tmp_path / "best.keras", tmp_path / "val.npy"
    checkpoint.write_bytes(b"c" * 2_000)
    predictions.write_bytes(b"p" * 500)
    trial = optuna.create_study().ask()
    named_before: list[object] = []

    class Store(AtomicFileSystemArtifactStore):
        def write(self, artifact_id: str, content_body: BinaryIO) -> None:
            recorded = trial.storage.get_trial(trial._trial_id).user_attrs.get(Attr.UPLOADS)
            named_before.append(artifact_id in (recorded or []))
            super().write(artifact_id, content_body)

    store_trial_artifacts(trial, Store(tmp_path / "artifacts"), checkpoint, predictions)
    assert named_before == [True, True]
    attrs = trial.storage.get_trial(trial._trial_id).user_attrs
    assert attrs[Attr.UPLOADS] == [attrs[Attr.CHECKPOINT_ID], attrs[Attr.PREDICTIONS_ID]]


def test_gc_removes_what_stopped_writers_left_and_nothing_that_may_be_in_use(
    tmp_path: Path,
) -> None:
    config = load_study_config(write_study(tmp_path, tmp_path / "data.csv"))
    artifacts = config.artifact_dir
    artifacts.mkdir(parents=True)
    store = AtomicFileSystemArtifactStore(artifacts)
    study = optuna.create_study()

    def stored(size: int) -> str:
        artifact = str(uuid.uuid4())
        (artifacts / artifact).write_bytes(bytes(size))
        return artifact

    def partial(artifact: str, age: float = 0.0) -> Path:
        return _aged(artifacts / f".{artifact}.{uuid.uuid4().hex[:8]}.partial", age)

    # The study's own artifact (an ensemble's report.json), which a record (wrong, or of a
    # study copied into this one's store) of a trial's uploads names too.
    report = tmp_path / "report.json"
    report.write_text("{}")
    own = upload_artifact(artifact_store=store, file_path=str(report), study_or_trial=study)
    # Killed after storing its checkpoint, before recording it; and mid-way through storing its
    # predictions (a partial file).
    killed, killed_after, killed_mid = stored(3000), stored(10), str(uuid.uuid4())
    torn = partial(killed_mid)
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={Attr.UPLOADS: [killed, own]}))
    study.add_trial(
        create_trial(state=TrialState.FAIL, user_attrs={Attr.UPLOADS: [killed_after, killed_mid]})
    )
    # A complete trial's files, both recorded.
    checkpoint, predictions = stored(1000), stored(100)
    study.add_trial(
        create_trial(
            state=TrialState.COMPLETE,
            value=0.5,
            user_attrs={
                Attr.UPLOADS: [checkpoint, predictions],
                Attr.CHECKPOINT_ID: checkpoint,
                Attr.PREDICTIONS_ID: predictions,
            },
        )
    )
    # A running trial storing its checkpoint right now, maybe on another machine.
    running = study.ask()
    uploading = stored(2000)
    running.set_user_attr(Attr.UPLOADS, [uploading])
    partial(uploading)
    # Another study's, sharing the folder: never named here.
    theirs = stored(500)
    their_upload = partial(str(uuid.uuid4()), age=60)
    stale = partial(str(uuid.uuid4()), age=STALE_AFTER + 60)
    # hpo report killed while its figures were in place: stale, and one being written.
    reports = config.study_dir / "reports"
    reports.mkdir(parents=True)
    figure = _aged(reports / ".history.png.4242-0a1b2c3d.part", 2 * STALE_AFTER, 700)
    fresh = _aged(reports / ".report.html.4243-0a1b2c3d.part", 0)
    mine = _aged(reports / ".notes.part", 2 * STALE_AFTER)  # not a name hpo gives one

    dry = sweep_leftovers(config, study, dry_run=True)
    going = {leftover.path.name: leftover for leftover in dry}
    assert set(going) == {killed, killed_after, torn.name, stale.name, figure.name}
    assert going[killed].size == 3000
    assert going[killed].why == "stored by trial 0, which was stopped before recording it"
    assert going[figure.name].why.startswith("part of a figure or page of hpo report, unchanged")
    assert all(leftover.path.exists() for leftover in dry)

    assert sweep_leftovers(config, study) == dry
    assert not any(leftover.path.exists() for leftover in dry)
    left = {p.name for p in artifacts.iterdir()}
    assert {checkpoint, predictions, uploading, own, theirs, their_upload.name} <= left
    assert fresh.exists() and mine.exists()
    assert sweep_leftovers(config, study) == []
    # A study folder not known to be the study's (gc by a server's URL): reports/ stays.
    figure.write_bytes(b"")
    _aged(figure, 2 * STALE_AFTER)
    assert sweep_leftovers(config, study, reports=False) == []
