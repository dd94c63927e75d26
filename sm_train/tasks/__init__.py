"""The task registry. A task outside the package is named 'module:Class' (the module ships in source_dir)."""

from __future__ import annotations

import importlib

from sm_train.errors import ConfigError
from sm_train.tasks.base import Task
from sm_train.tasks.question_answering import QuestionAnswering
from sm_train.tasks.summarization import Summarization
from sm_train.tasks.text_classification import TextClassification

TASKS: dict[str, type[Task]] = {t.name: t for t in (TextClassification, QuestionAnswering, Summarization)}


def get_task(name: str) -> type[Task]:
    if name in TASKS:
        return TASKS[name]
    if ":" in name:
        module_name, _, class_name = name.partition(":")
        try:
            task = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"task={name!r}: cannot import {class_name} from {module_name} ({e}).") from e
        if not (isinstance(task, type) and issubclass(task, Task)):
            raise ConfigError(f"task={name!r} is not a sm_train.tasks.base.Task subclass.")
        return task
    raise ConfigError(f"Unknown task {name!r}. Supported tasks: {', '.join(TASKS)} (or 'module:Class').")


__all__ = ["TASKS", "Task", "get_task"]
