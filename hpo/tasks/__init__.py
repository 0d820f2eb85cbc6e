"""Tasks: a data set, the model families that fit it, and the metric a study optimizes.

Adding a task is adding a module that defines a `Task` and one line in `TASKS`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

from hpo.errors import ConfigError
from hpo.tasks._base import Family, Task, TestSet, TrialData
from hpo.tasks.arrays import ARRAYS
from hpo.tasks.images import CIFAR10, IMAGES
from hpo.tasks.imdb import IMDB
from hpo.tasks.text import TEXT

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    import keras
    import optuna

    from hpo.config import StudyConfig
    from hpo.space import Space

__all__ = ["TASKS", "Family", "Task", "TestSet", "TrialData", "get_task", "study_task"]

TASKS: dict[str, Task] = {task.name: task for task in (IMDB, TEXT, CIFAR10, IMAGES, ARRAYS)}


def get_task(name: str) -> Task:
    """Returns the task called `name`.

    Raises:
        ConfigError: No such task.
    """
    try:
        return TASKS[name]
    except KeyError as exc:
        raise ConfigError(f"'task' must be one of {sorted(TASKS)}, got {name!r}.") from exc


def study_task(config: StudyConfig) -> Task:
    """The study's task, with the families its study file adds (`[families]`).

    Raises:
        ConfigError: No such task, or a family that cannot be loaded.
    """
    task = get_task(config.task)
    if config.hypermodel is not None:
        # Given in memory (`hpo.Tuner`): carried to this process by value, never imported.
        from hpo.space import TRAINING_SPACE

        reserved = {"family", *TRAINING_SPACE, *task.space}
        family = config.hypermodel.family(reserved)
        return dataclasses.replace(task, families={family.name: family})
    if not config.families:
        return task
    if not config.import_families:
        # Read from a study store: the names are data, never imported (see `StoredFamily`).
        stored = {name: StoredFamily(name, spec) for name, spec in config.families.items()}
        return dataclasses.replace(task, families={**task.families, **stored})
    # `[space]` entries named `family/parameter` narrow a hypermodel's own parameters.
    narrowed = tuple(
        (key, tuple(value))
        for key, value in sorted(config.space.items())
        if key.partition("/")[0] in config.families
    )
    return _with_families(
        task.name, tuple(config.families.items()), config.study_dir.parent, narrowed
    )


class StoredFamily:
    """A user's family named by a study store, which hpo does not import.

    Reading the study (status, ensembles of stored checkpoints) needs no family code; building
    one of its models says how to give hpo the module.
    """

    SPACE: Mapping[str, Any] = {}
    DEFAULTS: Mapping[str, Any] = {}
    STORED = True

    def __init__(self, name: str, spec: str) -> None:
        self.name, self.spec = name, spec

    def suggest(self, trial: optuna.Trial, space: Space) -> dict[str, Any]:
        """Raises, as `build` does."""
        self.build({})
        return {}

    def build(self, params: Mapping[str, Any]) -> keras.Model:
        """Raises: the family's code is not imported from a store."""
        raise ConfigError(
            f"family {self.name!r} ({self.spec!r}) is named by the study store, and hpo never "
            f"imports code that a store names. Pass the study file that names it: --study FILE "
            f"(with --storage URL)."
        )


@functools.lru_cache(maxsize=8)
def _with_families(
    name: str,
    specs: tuple[tuple[str, str], ...],
    base: Path,
    narrowed: tuple[tuple[str, tuple[Any, ...]], ...] = (),
) -> Task:
    from hpo.models.external import load_families
    from hpo.space import TRAINING_SPACE

    task = TASKS[name]
    reserved = {"family", *TRAINING_SPACE, *task.space}
    for family in task.families.values():
        reserved.update(family.SPACE)
    space = {key: list(value) for key, value in narrowed}
    extra = load_families(dict(specs), base, task.families, reserved, space)
    return dataclasses.replace(task, families={**task.families, **extra})
