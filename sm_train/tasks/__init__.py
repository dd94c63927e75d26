"""The task registry. A task outside the package is named 'module:Class' (the module ships in source_dir)."""

from __future__ import annotations

from sm_train.catalog import imported_task
from sm_train.errors import ConfigError
from sm_train.tasks.base import Task
from sm_train.tasks.question_answering import QuestionAnswering
from sm_train.tasks.summarization import Summarization
from sm_train.tasks.text_classification import TextClassification

TASKS: dict[str, type[Task]] = {t.name: t for t in (TextClassification, QuestionAnswering, Summarization)}


def get_task(name: str) -> type[Task]:
    if name in TASKS:
        return TASKS[name]
    task = imported_task(name)
    if not (isinstance(task, type) and issubclass(task, Task)):
        raise ConfigError(f"task={name!r} is not a sm_train.tasks.base.Task subclass.")
    return task


__all__ = ["TASKS", "Task", "get_task"]
