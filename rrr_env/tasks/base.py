"""What every task provides to :class:`rrr_env.ReflectRetryEnv`."""

from __future__ import annotations

import abc
import json
import numbers
import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, TypedDict

import gymnasium
import numpy as np

from rrr_env.verdict import Verdict


class Message(TypedDict):
    """One chat message, as chat templates expect it."""

    role: str
    content: str


class Task(abc.ABC):
    """A verifiable task: its items, how to phrase them, and how to judge an answer.

    Subclasses take their options as keyword-only constructor arguments and raise
    ``ValueError`` with a fix-it message for bad values. Items are addressed by index
    ``0 .. len(task) - 1`` and the same index always gives the same item.
    """

    #: Short name, as used by ``ReflectRetryEnv(task=...)``.
    name: ClassVar[str]
    #: The user turn that asks for a self-reflection after a wrong answer (RRR).
    reflection_request: ClassVar[str] = (
        "You tried solving the problem and got the wrong answer. Reflect on what went wrong "
        "and write a short explanation that will help you do better next time."
    )
    #: The user turn that tells the model it was wrong, without reflection (RISE's oracle).
    feedback_message: ClassVar[str] = "The answer is incorrect. Please try again."
    #: The reasons a verdict of this task can carry, ``"ok"`` first.
    reasons: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of items."""

    @abc.abstractmethod
    def __getitem__(self, index: int) -> Any:
        """The item at ``index``."""

    @abc.abstractmethod
    def item_id(self, item: Any) -> str:
        """A stable identifier of ``item``."""

    @abc.abstractmethod
    def prompt(self, item: Any) -> list[Message]:
        """The messages that pose ``item`` for the first attempt."""

    def retry_prompt(self, item: Any) -> list[Message]:
        """The messages that pose ``item`` again after a reflection.

        The default repeats the user turns of :meth:`prompt`, as the RRR paper does.
        """
        return [m for m in self.prompt(item) if m["role"] == "user"]

    @abc.abstractmethod
    def verify(self, item: Any, response: str) -> Verdict:
        """Judge ``response`` to ``item``. Never raises on any string; bounded cost."""

    def tools(self, item: Any) -> list[dict[str, Any]] | None:
        """Tool schemas to pass to a chat template for ``item``, if the task has tools."""
        return None

    def problem_key(self, item: Any) -> str:
        """What makes two items the same problem (default: the same first-attempt prompt).

        Tasks whose prompts can phrase one problem in several ways (Countdown shows the
        numbers in any order) override it, so that held-out evaluations can count distinct
        problems (``agents.items.distinct_indices``).
        """
        return json.dumps([[m["role"], m["content"]] for m in self.prompt(item)])


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type, e.g. ``reflect="False"`` or ``max_attempts="2"``.

    Every argument check of the package raises this ``TypeError`` for a value of the wrong
    type and a plain ``ValueError`` for a value of the right type that is not accepted (e.g.
    ``max_attempts=0``). It is a ``ValueError`` too, because release 0.1 raised ``ValueError``
    for some type mistakes and code that catches those keeps working.
    """


def is_int(value: Any) -> bool:
    """True for an integer (``int``, ``numpy.int64``, any ``numbers.Integral``), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int``, or raise an error naming ``name``.

    Accepts any ``numbers.Integral`` (numpy integers included) and rejects bools.

    Raises:
        ArgumentTypeError: (a ``TypeError``) when ``value`` is not an integer.
        ValueError: when it is below ``minimum``.

    >>> check_int("size", np.int64(3), minimum=1)
    3
    """
    bound = "" if minimum is None else f" >= {minimum}"
    if not is_int(value):
        raise ArgumentTypeError(
            f"{name} must be an int{bound}, got {type(value).__name__} {value!r}"
        )
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int{bound}, got {value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` as a ``bool``, or raise :class:`ArgumentTypeError` (``"False"`` is none)."""
    if not isinstance(value, bool | np.bool_):
        raise ArgumentTypeError(
            f"{name} must be True or False, got {type(value).__name__} {value!r}"
        )
    return bool(value)


def check_choice(
    name: str, value: Any, choices: Sequence[str], *, optional: bool = False, hint: str = ""
) -> Any:
    """Return ``value`` if it is one of the ``str`` ``choices`` (or ``None`` when ``optional``).

    Raises:
        ArgumentTypeError: (a ``TypeError``) when ``value`` is not a ``str`` (nor ``None``).
        ValueError: for a ``str`` that is not one of ``choices``.

    >>> check_choice("split", "test", ("train", "test"))
    'test'
    """
    if optional and value is None:
        return None
    expected = f"one of {tuple(choices)}" + (" or None" if optional else "")
    if not isinstance(value, str):
        raise ArgumentTypeError(
            f"{name} must be {expected}, got {type(value).__name__} {value!r}{hint}"
        )
    if value not in choices:
        raise ValueError(f"{name} must be {expected}, got {value!r}{hint}")
    return value


def check_index(index: Any, size: int) -> int:
    """Return ``index`` as an int, or raise a clear error when it does not address an item."""
    if not is_int(index):
        raise ArgumentTypeError(f"item index must be an int, got {type(index).__name__}")
    if not 0 <= index < size:
        raise IndexError(f"item index {index} out of range for a task of {size} items")
    return int(index)


#: Folders whose frames :func:`caller_stacklevel` skips: this package and Gymnasium.
_INTERNAL_FOLDERS = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
    os.path.dirname(os.path.abspath(gymnasium.__file__)) + os.sep,
)


def caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the code that called into the package.

    Counted from the function that calls ``warnings.warn``: the first frame outside
    ``rrr_env`` and ``gymnasium`` (so through ``gym.make``, ``make_task`` or a task's
    constructor alike), or the outermost frame when there is none (e.g. in a vector env's
    worker process). Python 3.12's ``skip_file_prefixes`` does this; we support 3.11.
    """
    frame = sys._getframe(2)  # the caller of the function that asked
    level = 2
    while frame is not None:
        filename = frame.f_code.co_filename
        internal = filename.startswith("<frozen ") or os.path.abspath(filename).startswith(
            _INTERNAL_FOLDERS
        )
        if not internal:
            return level
        if frame.f_back is None:
            return level
        frame = frame.f_back
        level += 1
    return level
