"""Countdown verifier: exact, safe, bounded.

A response is correct iff its last ``\\boxed{...}`` holds an arithmetic expression (or
``expression = target``) over integer literals with ``+ - * /``, parentheses and unary minus,
whose literals are exactly the given numbers (each used once) and whose exact rational value
equals the target. The expression is parsed with :mod:`ast` against a whitelist and computed
with :class:`fractions.Fraction`; nothing is ever evaluated as code.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from rrr_env.verdict import Verdict
from rrr_env.verifiers.boxed import last_boxed

#: The paper's error taxonomy for Countdown, ``ok`` first.
REASONS = ("ok", "no_answer", "invalid_expression", "wrong_numbers", "missed_target")

MAX_BOXED_CHARS = 10_000  # raw boxed content; longer is not a Countdown answer
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
_INT_LITERAL = re.compile(r"\s*\d{1,12}\s*")


def normalise(expression: str) -> str:
    """Rewrite LaTeX and Unicode operators to ``+ - * / ( )``.

    >>> normalise(r"\\left(3 \\times 4\\right) \\div \\frac{6}{3}")
    '(3 * 4) / ((6)/(3))'
    """
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
        if _INT_LITERAL.fullmatch(right):
            return left.strip(), int(right)
        if _INT_LITERAL.fullmatch(left):
            return right.strip(), int(left)
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
    """The expression is outside the whitelist or divides by zero."""


def _evaluate(node: ast.AST, literals: list[int]) -> Fraction:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, literals)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        literals.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, literals)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        left = _evaluate(node.left, literals)
        right = _evaluate(node.right, literals)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            raise _Invalid("division by zero")
        return left / right
    shown = node.op if isinstance(node, ast.BinOp | ast.UnaryOp) else node
    raise _Invalid(f"{type(shown).__name__} is not allowed")


def parse_expression(text: str) -> tuple[Fraction, list[int], str]:
    """Value, integer literals (in order) and canonical text of a Countdown expression.

    Raises:
        ValueError: if ``text`` is not a whitelisted expression or divides by zero.
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    if not _ALLOWED.fullmatch(text):
        raise ValueError("characters other than digits, + - * / ( ) and spaces")
    if _depth(text) > MAX_DEPTH:
        raise ValueError(f"parentheses nested deeper than {MAX_DEPTH}")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise ValueError(f"not an expression: {type(error).__name__}") from None
    literals: list[int] = []
    try:
        value = _evaluate(tree, literals)
    except (_Invalid, RecursionError) as error:
        raise ValueError(str(error) or type(error).__name__) from None
    return value, literals, ast.unparse(tree)


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
    boxed = last_boxed(response)
    if boxed is None or not boxed.strip():
        return Verdict(False, "no_answer")
    if len(boxed) > MAX_BOXED_CHARS:
        return Verdict(False, "invalid_expression", details={"error": "answer too long"})
    equation = _split_equation(normalise(boxed))
    if equation is None:
        return Verdict(False, "invalid_expression", details={"error": "ambiguous equation"})
    expression, claimed = equation
    try:
        value, literals, canonical = parse_expression(expression)
    except ValueError as error:
        return Verdict(False, "invalid_expression", details={"error": str(error)})
    details = {"value": str(value), "numbers_used": sorted(literals)}
    if Counter(literals) != Counter(int(n) for n in numbers):
        return Verdict(False, "wrong_numbers", canonical, details)
    if value != target or (claimed is not None and claimed != target):
        return Verdict(False, "missed_target", canonical, details)
    return Verdict(True, "ok", canonical, details)
