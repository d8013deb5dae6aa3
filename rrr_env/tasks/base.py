"""What every task provides to :class:`rrr_env.ReflectRetryEnv`."""

from __future__ import annotations

import abc
import json
import numbers
from typing import Any, ClassVar, TypedDict

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


def is_int(value: Any) -> bool:
    """True for an integer (``int``, ``numpy.int64``, any ``numbers.Integral``), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int``, or raise a ``ValueError`` naming ``name``.

    Accepts any ``numbers.Integral`` (numpy integers included) and rejects bools.

    >>> check_int("size", np.int64(3), minimum=1)
    3
    """
    if not is_int(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an int{bound}, got {value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` as a ``bool``, or raise a ``TypeError`` (``"False"`` is not a bool)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_index(index: Any, size: int) -> int:
    """Return ``index`` as an int, or raise a clear error when it does not address an item."""
    if not is_int(index):
        raise TypeError(f"item index must be an int, got {type(index).__name__}")
    if not 0 <= index < size:
        raise IndexError(f"item index {index} out of range for a task of {size} items")
    return int(index)
