"""Tasks, one per module, looked up by name without importing the others."""

from __future__ import annotations

import importlib
from typing import Any

from rrr_env.tasks.base import ArgumentTypeError, Message, Task

#: Task name -> "module:Class". Importing a task module happens only when it is used.
TASKS: dict[str, str] = {
    "countdown": "rrr_env.tasks.countdown:CountdownTask",
    "gsm8k": "rrr_env.tasks.gsm8k:GSM8KTask",
    "function_calling": "rrr_env.tasks.function_calling:FunctionCallingTask",
    "bfcl": "rrr_env.tasks.bfcl:BFCLTask",
}


def check_task_name(name: Any) -> str:
    """Return ``name`` if it names a task.

    Raises:
        ArgumentTypeError: (a ``TypeError``) when ``name`` is not a str.
        ValueError: for an unknown task name.
    """
    if not isinstance(name, str):
        raise ArgumentTypeError(
            f"task must be a task name {sorted(TASKS)} or a Task instance, got "
            f"{type(name).__name__} {name!r}"
        )
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return name


def make_task(name: str, **options: Any) -> Task:
    """Build the task called ``name`` with its keyword ``options``.

    Raises:
        ValueError: for an unknown task name (``TypeError`` for a name that is not a str).
        TypeError: for an option the task does not have, naming the ones it has.
    """
    from rrr_env.describe import task_options  # it reads the task classes of this module

    check_task_name(name)
    options_of_task = task_options(name)
    unknown = sorted(set(options) - {o.name for o in options_of_task})
    if unknown:
        listed = [o.name for o in options_of_task if not o.deprecated]
        raise TypeError(f"unknown option(s) {unknown} for task {name!r}; accepted: {listed}")
    module_name, class_name = TASKS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)(**options)


__all__ = ["TASKS", "Message", "Task", "check_task_name", "make_task"]
