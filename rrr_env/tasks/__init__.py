"""Tasks, one per module, looked up by name without importing the others."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from rrr_env.tasks.base import Message, Task

#: Task name -> "module:Class". Importing a task module happens only when it is used.
TASKS: dict[str, str] = {
    "countdown": "rrr_env.tasks.countdown:CountdownTask",
    "gsm8k": "rrr_env.tasks.gsm8k:GSM8KTask",
    "function_calling": "rrr_env.tasks.function_calling:FunctionCallingTask",
    "bfcl": "rrr_env.tasks.bfcl:BFCLTask",
}


def make_task(name: str, **options: Any) -> Task:
    """Build the task called ``name`` with its keyword ``options``.

    Raises:
        ValueError: for an unknown task name.
        TypeError: for an option the task does not have, naming the ones it has.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    module_name, class_name = TASKS[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    accepted = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"unknown option(s) {unknown} for task {name!r}; "
            f"it takes max_attempts, reflect, feedback, render_mode and {accepted}"
        )
    return cls(**options)


__all__ = ["TASKS", "Message", "Task", "make_task"]
