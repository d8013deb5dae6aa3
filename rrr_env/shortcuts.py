"""Model-free shortcut answers: fixed forms that solve some items without reading them closely.

A benchmark on which one fixed form (say ``a + b`` for every 2-number Countdown problem)
scores well cannot tell learning from learning the form. These are the controls: each
:class:`FixedForm` turns an item into a response by a fixed rule, and the env's own verifier
grades it, so a shortcut arm is scored exactly as a model is.

Countdown's forms fold the numbers left to right with one operator (``+ - * /``), in the
given, reversed, ascending or descending order: ``descending -`` is "larger minus smaller"
for two numbers.

>>> [f.name for f in countdown_forms()][:3]
['+ given', '+ reversed', '+ ascending']
>>> countdown_fold((3, 10), "-", "descending")
'10 - 3'
>>> sorted(countdown_solving_forms((3, 10), 7))
['- descending', '- reversed']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

#: Operators and orders of Countdown's fixed forms.
COUNTDOWN_OPERATORS = ("+", "-", "*", "/")
COUNTDOWN_ORDERS = ("given", "reversed", "ascending", "descending")


@dataclass(frozen=True)
class FixedForm:
    """One model-free answering rule.

    Attributes:
        name: Short label, e.g. ``"- descending"``.
        respond: Maps an item of the task to the full response text (e.g. with
            ``\\boxed{...}``), which the task's verifier then grades.
    """

    name: str
    respond: Callable[[Any], str]


def _ordered(numbers: Sequence[int], order: str) -> list[int]:
    if order == "given":
        return list(numbers)
    if order == "reversed":
        return list(reversed(numbers))
    if order == "ascending":
        return sorted(numbers)
    if order == "descending":
        return sorted(numbers, reverse=True)
    raise ValueError(f"order must be one of {COUNTDOWN_ORDERS}, got {order!r}")


def countdown_fold(numbers: Sequence[int], operator: str, order: str) -> str:
    """The expression that folds ``numbers`` (in ``order``) left to right with ``operator``.

    Args:
        numbers: The item's numbers.
        operator: One of ``+ - * /``.
        order: One of ``given``, ``reversed``, ``ascending``, ``descending``.

    Returns:
        The expression, parenthesised so that it folds left to right, e.g. ``(a - b) - c``.
    """
    if operator not in COUNTDOWN_OPERATORS:
        raise ValueError(f"operator must be one of {COUNTDOWN_OPERATORS}, got {operator!r}")
    terms = [str(n) for n in _ordered(numbers, order)]
    expression = terms[0]
    for position, term in enumerate(terms[1:]):
        left = f"({expression})" if position else expression
        expression = f"{left} {operator} {term}"
    return expression


def countdown_fold_value(numbers: Sequence[int], operator: str, order: str) -> Fraction | None:
    """The value of :func:`countdown_fold`, or ``None`` where it divides by zero."""
    values = [Fraction(n) for n in _ordered(numbers, order)]
    total = values[0]
    for value in values[1:]:
        if operator == "+":
            total += value
        elif operator == "-":
            total -= value
        elif operator == "*":
            total *= value
        elif operator == "/":
            if value == 0:
                return None
            total /= value
        else:
            raise ValueError(f"operator must be one of {COUNTDOWN_OPERATORS}, got {operator!r}")
    return total


def countdown_forms() -> list[FixedForm]:
    """Countdown's 16 fixed forms: each operator in each order, as ``\\boxed{...}`` answers."""
    forms = []
    for operator in COUNTDOWN_OPERATORS:
        for order in COUNTDOWN_ORDERS:

            def respond(item: Any, operator: str = operator, order: str = order) -> str:
                return f"\\boxed{{{countdown_fold(item.numbers, operator, order)}}}"

            forms.append(FixedForm(f"{operator} {order}", respond))
    return forms


def countdown_solving_forms(numbers: Sequence[int], target: int) -> list[str]:
    """Names of the Countdown fixed forms whose value is ``target`` (exact arithmetic)."""
    return [
        f"{operator} {order}"
        for operator in COUNTDOWN_OPERATORS
        for order in COUNTDOWN_ORDERS
        if countdown_fold_value(numbers, operator, order) == target
    ]


def countdown_fixed_form_solves(numbers: Sequence[int], target: int) -> bool:
    """Whether any Countdown fixed form reaches ``target``: the item has a shortcut."""
    return bool(countdown_solving_forms(numbers, target))
