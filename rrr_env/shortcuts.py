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

import re
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
        family: Forms that answer alike, for counting a model's answers by form (Countdown:
            one operator in any order, e.g. ``"+ fold"``); default: the name.
    """

    name: str
    respond: Callable[[Any], str]
    family: str = ""

    @property
    def kind(self) -> str:
        """:attr:`family`, or :attr:`name` where none is given."""
        return self.family or self.name


def countdown_order(numbers: Sequence[int], order: str) -> list[int]:
    """``numbers`` in one of :data:`COUNTDOWN_ORDERS`."""
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
    terms = [str(n) for n in countdown_order(numbers, order)]
    expression = terms[0]
    for position, term in enumerate(terms[1:]):
        left = f"({expression})" if position else expression
        expression = f"{left} {operator} {term}"
    return expression


def fold_value(values: Sequence[int], operators: Sequence[str]) -> Fraction | None:
    """``values`` folded left to right, ``operators[i]`` between the running total and value i+1.

    Exact arithmetic; ``None`` where it divides by zero. One operator repeated is a fixed
    form's value; a different operator per gap is a fold template (a stronger shortcut
    family that the preset search also measures).

    >>> fold_value([9, 2, 8], ["*", "+"])
    Fraction(26, 1)
    """
    if len(operators) != len(values) - 1:
        raise ValueError(
            f"{len(values)} values need {len(values) - 1} operators, got {operators!r}"
        )
    total = Fraction(values[0])
    for value, operator in zip(values[1:], operators, strict=True):
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


def countdown_fold_value(numbers: Sequence[int], operator: str, order: str) -> Fraction | None:
    """The value of :func:`countdown_fold`, or ``None`` where it divides by zero."""
    values = countdown_order(numbers, order)
    return fold_value(values, [operator] * (len(values) - 1))


def countdown_forms() -> list[FixedForm]:
    """Countdown's 16 fixed forms: each operator in each order, as ``\\boxed{...}`` answers."""
    forms = []
    for operator in COUNTDOWN_OPERATORS:
        for order in COUNTDOWN_ORDERS:

            def respond(item: Any, operator: str = operator, order: str = order) -> str:
                return f"\\boxed{{{countdown_fold(item.numbers, operator, order)}}}"

            forms.append(FixedForm(f"{operator} {order}", respond, f"{operator} fold"))
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


# -- GSM8K ---------------------------------------------------------------------------------

#: A number as GSM8K writes one: digits with optional thousands commas and decimals.
_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w,]\d)|(?<![\w.])\d+(?:\.\d+)?")


def question_numbers(text: str) -> list[Fraction]:
    """The numbers written in ``text``, in order (thousands commas dropped).

    >>> [str(n) for n in question_numbers("She sold 1,200 cups at $2.50 and 3 more.")]
    ['1200', '5/2', '3']
    """
    return [Fraction(match.replace(",", "")) for match in _NUMBER.findall(text)]


def _boxed_number(value: Fraction | None) -> str:
    if value is None:
        return "I cannot tell."
    text = str(value.numerator) if value.denominator == 1 else str(float(value))
    return f"\\boxed{{{text}}}"


def _gsm8k_form(name: str, pick: Callable[[list[Fraction]], Fraction | None]) -> FixedForm:
    def respond(item: Any) -> str:
        numbers = question_numbers(item.question)
        return _boxed_number(pick(numbers) if numbers else None)

    return FixedForm(name, respond)


def gsm8k_forms() -> list[FixedForm]:
    """GSM8K's fixed forms: one number picked from the question (or their sum), boxed."""
    return [
        _gsm8k_form("largest number", max),
        _gsm8k_form("smallest number", min),
        _gsm8k_form("first number", lambda numbers: numbers[0]),
        _gsm8k_form("last number", lambda numbers: numbers[-1]),
        _gsm8k_form("sum of the numbers", sum),
    ]


# -- function calling ----------------------------------------------------------------------

_QUOTED = re.compile(r"(?<!\w)'([^']{1,200})'(?!\w)|\"([^\"]{1,200})\"")
_CAPITALISED = re.compile(r"\b[A-Z][\w-]*(?:[ \t]+[A-Z][\w-]*)*")
_WORD = re.compile(r"[a-z0-9]+")


def query_values(query: str) -> dict[str, list[Any]]:
    """What a query spells out verbatim: its numbers, quoted texts and capitalised names.

    Capitalised words at the start of the query or of a sentence are not names.

    >>> query_values("What's the weather in New York? Use 'celsius' for 3 days.")
    {'numbers': [3], 'strings': ['celsius', 'New York']}
    """
    numbers = [
        int(value) if value.denominator == 1 else float(value) for value in question_numbers(query)
    ]
    quoted = [a or b for a, b in _QUOTED.findall(query)]
    rest = _QUOTED.sub(" ", query)
    names = [
        match.group()
        for match in _CAPITALISED.finditer(rest)
        if rest[: match.start()].rstrip()[-1:] not in ("", ".", "!", "?", "\n")
        and match.group() not in quoted
    ]
    return {"numbers": numbers, "strings": quoted + names}


def _query_text(messages: Sequence[Any]) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] == "user")


def _filled_call(schema: dict[str, Any], query: str) -> dict[str, Any]:
    """``schema``'s function with its required arguments taken from ``query`` where they appear.

    Numeric parameters take the query's numbers in order, string parameters its quoted texts
    and then its capitalised names in order; a required parameter with nothing left to take
    (or of another type) is left out.
    """
    function = schema["function"]
    parameters = function.get("parameters") or {}
    properties = parameters.get("properties") or {}
    values = query_values(query)
    numbers, strings = iter(values["numbers"]), iter(values["strings"])
    arguments: dict[str, Any] = {}
    for name in parameters.get("required") or []:
        kind = (properties.get(name) or {}).get("type")
        value = None
        if kind in ("integer", "number"):
            value = next(numbers, None)
            if kind == "integer" and isinstance(value, float):
                value = None
        elif kind == "string":
            value = next(strings, None)
        if value is not None:
            arguments[name] = value
    return {"name": function["name"], "arguments": arguments}


def _name_overlap(schema: dict[str, Any], query: str) -> int:
    function = schema["function"]
    words = set(_WORD.findall(f"{function['name']} {function.get('description', '')}".lower()))
    return len(words & set(_WORD.findall(query.lower())))


def function_call_forms(task: Any) -> list[FixedForm]:
    """Function calling's fixed forms, rendered in ``task``'s prompt style.

    - ``first tool, query values``: the first tool, its required arguments taken from the
      query verbatim where they appear (see :func:`query_values`);
    - ``best-named tool, query values``: the same for the tool whose name and description
      share the most words with the query (the first on a tie);
    - ``first tool, no arguments``.

    Args:
        task: A :class:`rrr_env.tasks.function_calling.ToolCallingTask` (xLAM or BFCL).
    """
    from rrr_env.verifiers.function_call import render_calls

    style = task.prompt_style

    def first(item: Any) -> str:
        query = _query_text(task.messages(item))
        return render_calls([_filled_call(task.tool_schemas(item)[0], query)], style)

    def best_named(item: Any) -> str:
        query = _query_text(task.messages(item))
        schemas = task.tool_schemas(item)
        best = max(schemas, key=lambda schema: _name_overlap(schema, query))
        return render_calls([_filled_call(best, query)], style)

    def bare(item: Any) -> str:
        name = task.tool_schemas(item)[0]["function"]["name"]
        return render_calls([{"name": name, "arguments": {}}], style)

    return [
        FixedForm("first tool, query values", first),
        FixedForm("best-named tool, query values", best_named),
        FixedForm("first tool, no arguments", bare),
    ]


# -- any task ------------------------------------------------------------------------------


def forms_for(task: Any) -> list[FixedForm]:
    """The fixed forms of ``task`` (a :class:`rrr_env.tasks.base.Task`), by its ``name``.

    Raises:
        ValueError: A task without fixed forms.
    """
    if task.name == "countdown":
        return countdown_forms()
    if task.name == "gsm8k":
        return gsm8k_forms()
    if task.name in ("function_calling", "bfcl"):
        return function_call_forms(task)
    raise ValueError(f"no fixed forms for task {task.name!r}")


def form_verdicts(task: Any, form: FixedForm, indices: Sequence[int]) -> dict[int, Any]:
    """The verifier's verdict on ``form``'s response to each item in ``indices``."""
    return {index: task.verify(task[index], form.respond(task[index])) for index in indices}


def form_solves(task: Any, form: FixedForm, indices: Sequence[int]) -> set[int]:
    """The indices among ``indices`` whose item ``form`` solves."""
    return {i for i, verdict in form_verdicts(task, form, indices).items() if verdict.correct}


@dataclass(frozen=True)
class FormChoice:
    """The best fixed forms of a task on the items they were chosen on.

    Attributes:
        form: The form that solves the most items (the first of :func:`forms_for` on a tie).
        second: The form that solves the most items ``form`` does not (a second answer).
        solved: Items solved, by form name.
        indices: The items the choice was made on.
    """

    form: FixedForm
    second: FixedForm
    solved: dict[str, set[int]]
    indices: tuple[int, ...]


def best_form(task: Any, indices: Sequence[int]) -> FormChoice:
    """Choose ``task``'s best fixed form, and its best second answer, on ``indices``.

    Choose on items that are not the ones scored (a validation split), then score the chosen
    forms on the held-out items: a shortcut arm is a fixed policy, not an oracle.
    """
    forms = forms_for(task)
    solved = {form.name: form_solves(task, form, indices) for form in forms}
    first = max(forms, key=lambda form: len(solved[form.name]))
    rest = [form for form in forms if form is not first] or [first]
    second = max(rest, key=lambda form: len(solved[form.name] - solved[first.name]))
    return FormChoice(first, second, solved, tuple(indices))
