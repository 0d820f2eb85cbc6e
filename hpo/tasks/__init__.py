"""Tasks: a data set, the model families that fit it, and the metric a study optimizes.

Adding a task is adding a module that defines a `Task` and one line in `TASKS`.
"""

from __future__ import annotations

from hpo.errors import ConfigError
from hpo.tasks._base import Family, Task, TestSet, TrialData
from hpo.tasks.images import CIFAR10, IMAGES
from hpo.tasks.imdb import IMDB

__all__ = ["TASKS", "Family", "Task", "TestSet", "TrialData", "get_task"]

TASKS: dict[str, Task] = {task.name: task for task in (IMDB, CIFAR10, IMAGES)}


def get_task(name: str) -> Task:
    """Returns the task called `name`.

    Raises:
        ConfigError: No such task.
    """
    try:
        return TASKS[name]
    except KeyError as exc:
        raise ConfigError(f"'task' must be one of {sorted(TASKS)}, got {name!r}.") from exc
