"""Countdown verifier: exact, safe, bounded.

A response is correct iff its last ``\\boxed{...}`` holds an arithmetic expression (or
``expression = target``) over integer literals with ``+ - * /``, parentheses and unary minus,
whose literals are exactly the given numbers (each used once) and whose exact rational value
equals the target. A small parser accepts only that grammar and computes the value exactly
(integers, and :class:`fractions.Fraction` once a division is inexact); nothing is ever
evaluated as code, and :mod:`ast` is not used either: ``ast.parse`` alone would cost more
than this whole check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

from rrr_env.verdict import Verdict
from rrr_env.verifiers.boxed import BoxedTooLong, last_boxed

#: The paper's error taxonomy for Countdown, ``ok`` first.
REASONS = ("ok", "no_answer", "invalid_expression", "wrong_numbers", "missed_target")

MAX_BOXED_CHARS = 2_000  # raw boxed content; longer is not a Countdown answer (bounds cost)
MAX_EXPRESSION_CHARS = 1_000  # after normalisation; bounds parsing and exact arithmetic
MAX_DEPTH = 64  # parenthesis nesting; CPython's parser gives up near 200

_REPLACEMENTS = (
    ("\\left", ""),
    ("\\right", ""),
    ("\\times", "*"),
    ("\\cdot", "*"),
    ("\\ast", "*"),
    ("\\div", "/"),
    ("×", "*"),
    ("·", "*"),
    ("∗", "*"),
    ("÷", "/"),
    ("−", "-"),
    ("–", "-"),
    ("\\,", " "),
    ("\\;", " "),
    ("\\!", ""),
    ("\\ ", " "),
    ("$", ""),
    ("[", "("),
    ("]", ")"),
    ("{", "("),
    ("}", ")"),
)
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_ALLOWED = re.compile(r"[0-9+\-*/()\s]*")
_ALLOWED_OR_EQUALS = re.compile(r"[0-9+\-*/()\s=]*")
_INT_LITERAL = re.compile(r"\s*(-?)\s*(\d{1,12})\s*")  # targets may be negative


def normalise(expression: str) -> str:
    """Rewrite LaTeX and Unicode operators to ``+ - * / ( )``.

    >>> normalise(r"\\left(3 \\times 4\\right) \\div \\frac{6}{3}")
    '(3 * 4) / ((6)/(3))'
    """
    if _ALLOWED_OR_EQUALS.fullmatch(expression):
        return expression.strip()  # the common case: plain ASCII arithmetic
    for _ in range(8):  # \frac nests rarely; a bounded number of passes keeps cost linear
        expression, count = _FRAC.subn(r"((\1)/(\2))", expression)
        if not count:
            break
    for old, new in _REPLACEMENTS:
        expression = expression.replace(old, new)
    return expression.strip()


def _split_equation(text: str) -> tuple[str, int | None] | None:
    """``a = b`` -> (the side that is not a bare integer, that integer); ``None`` if ambiguous."""
    sides = text.split("=")
    if len(sides) == 1:
        return text.strip(), None
    if len(sides) == 2:
        left, right = sides
        if literal := _INT_LITERAL.fullmatch(right):
            return left.strip(), int(literal[1] + literal[2])
        if literal := _INT_LITERAL.fullmatch(left):
            return right.strip(), int(literal[1] + literal[2])
    return None


def _depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    return deepest


class _Invalid(Exception):
    """The expression is outside the grammar or divides by zero."""


_TOKEN = re.compile(r"\d+|[-+*/()]")
_ADJACENT_NUMBERS = re.compile(r"\d\s+\d")
Value = int | Fraction


class _Parser:
    """Precedence climbing over the whitelisted grammar, computing exactly as it parses.

    ``expr := term (("+" | "-") term)*``, ``term := unary (("*" | "/") unary)*``,
    ``unary := "-"* primary``, ``primary := INTEGER | "(" expr ")"``. Recursion happens
    only at parentheses, whose depth is capped before parsing.
    """

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = [*tokens, ""]  # a sentinel, so that looking ahead never overruns
        self.position = 0
        self.literals: list[int] = []

    def expression(self) -> Value:
        value = self._term()
        tokens = self.tokens
        while (op := tokens[self.position]) in ("+", "-"):
            self.position += 1
            right = self._term()
            value = value + right if op == "+" else value - right
        return value

    def _term(self) -> Value:
        value = self._unary()
        tokens = self.tokens
        while (op := tokens[self.position]) in ("*", "/"):
            self.position += 1
            if tokens[self.position] in ("*", "/"):
                raise _Invalid("** and // are not allowed")
            right = self._unary()
            if op == "*":
                value = value * right
            elif right == 0:
                raise _Invalid("division by zero")
            elif type(value) is int and type(right) is int and value % right == 0:
                value = value // right
            else:
                value = Fraction(value) / right
        return value

    def _unary(self) -> Value:
        negative = False
        while self.tokens[self.position] == "-":
            negative = not negative
            self.position += 1
        value = self._primary()
        return -value if negative else value

    def _primary(self) -> Value:
        token = self.tokens[self.position]
        self.position += 1
        if token == "(":
            value = self.expression()
            if self.tokens[self.position] != ")":
                raise _Invalid("unbalanced parentheses")
            self.position += 1
            return value
        if token.isdigit():
            if token[0] == "0" and len(token) > 1:
                raise _Invalid("integer literal with a leading zero")
            literal = int(token)
            self.literals.append(literal)
            return literal
        raise _Invalid(f"unexpected {token!r}" if token else "unexpected end")


def parse_expression(text: str) -> tuple[int | Fraction, list[int], str]:
    """Value, integer literals (in order) and canonical text of a Countdown expression.

    The grammar is a whitelist: integer literals, binary ``+ - * /``, unary minus and
    parentheses. Anything else (``**``, ``//``, ``%``, decimals, names, calls) is rejected.

    Raises:
        ValueError: if ``text`` is outside the grammar or divides by zero.
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    if not _ALLOWED.fullmatch(text):
        raise ValueError("characters other than digits, + - * / ( ) and spaces")
    if text.count("(") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise ValueError(f"parentheses nested deeper than {MAX_DEPTH}")
    if _ADJACENT_NUMBERS.search(text):
        raise ValueError("two numbers with no operator between them")
    tokens = _TOKEN.findall(text)
    parser = _Parser(tokens)
    try:
        value = parser.expression()
        if parser.position != len(tokens):  # stopped before the end: e.g. "1 + 2) * 3"
            raise _Invalid(f"unexpected {tokens[parser.position]!r}")
    except _Invalid as error:
        raise ValueError(str(error)) from None
    return value, parser.literals, "".join(tokens)


def verify(response: str, numbers: Sequence[int], target: int) -> Verdict:
    """Judge a Countdown response.

    Args:
        response: The model's full response; only its last ``\\boxed{...}`` is read.
        numbers: The given numbers; each must be used exactly once.
        target: The value the expression must take.

    Returns:
        A :class:`Verdict` with reason ``ok``, ``no_answer``, ``invalid_expression``,
        ``wrong_numbers`` or ``missed_target``. Never raises for a ``str`` response.

    >>> verify(r"\\boxed{(96 - 74) + 37 - 7}", [96, 74, 37, 7], 52).correct
    True
    >>> verify(r"\\boxed{96 - 74}", [96, 74, 37, 7], 22).reason
    'wrong_numbers'
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    try:
        boxed = last_boxed(response, MAX_BOXED_CHARS)
    except BoxedTooLong as error:
        return Verdict(False, "invalid_expression", details={"error": str(error)})
    if boxed is None or not boxed.strip():
        return Verdict(False, "no_answer")
    equation = _split_equation(normalise(boxed))
    if equation is None:
        return Verdict(False, "invalid_expression", details={"error": "ambiguous equation"})
    expression, claimed = equation
    try:
        value, literals, canonical = parse_expression(expression)
    except ValueError as error:
        return Verdict(False, "invalid_expression", details={"error": str(error)})
    details = {"value": str(value), "numbers_used": sorted(literals)}
    if sorted(literals) != sorted(int(n) for n in numbers):
        return Verdict(False, "wrong_numbers", canonical, details)
    if value != target or (claimed is not None and claimed != target):
        return Verdict(False, "missed_target", canonical, details)
    return Verdict(True, "ok", canonical, details)
