"""Tasks: a data set, the model families that fit it, and the metric a study optimizes.

Adding a task is adding a module that defines a `Task` and one line in `TASKS`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

from hpo.errors import ConfigError
from hpo.tasks._base import Family, Task, TestSet, TrialData
from hpo.tasks.images import CIFAR10, IMAGES
from hpo.tasks.imdb import IMDB
from hpo.tasks.text import TEXT

if TYPE_CHECKING:
    from pathlib import Path

    from hpo.config import StudyConfig

__all__ = ["TASKS", "Family", "Task", "TestSet", "TrialData", "get_task", "study_task"]

TASKS: dict[str, Task] = {task.name: task for task in (IMDB, TEXT, CIFAR10, IMAGES)}


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
    if not config.families:
        return task
    return _with_families(task.name, tuple(config.families.items()), config.study_dir.parent)


@functools.lru_cache(maxsize=8)
def _with_families(name: str, specs: tuple[tuple[str, str], ...], base: Path) -> Task:
    from hpo.models.external import load_families
    from hpo.space import TRAINING_SPACE

    task = TASKS[name]
    reserved = {"family", *TRAINING_SPACE, *task.space}
    for family in task.families.values():
        reserved.update(family.SPACE)
    extra = load_families(dict(specs), base, task.families, reserved)
    return dataclasses.replace(task, families={**task.families, **extra})
