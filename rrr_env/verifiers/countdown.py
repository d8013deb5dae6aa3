"""Countdown verifier: exact, safe, bounded.

A response is correct iff its last ``\\boxed{...}`` holds an arithmetic expression (or
``expression = target``) over integer literals with ``+ - * /``, parentheses and unary minus,
whose literals are exactly the given numbers (each used once) and whose exact rational value
equals the target. A small evaluator accepts only that grammar and computes the value exactly
(an ``int`` when it is whole, else a :class:`fractions.Fraction`); nothing is ever evaluated as
code, and :mod:`ast` is not used either: ``ast.parse`` alone would cost more than this whole
check.

Speed (issue 27): most answers are short plain arithmetic in the last box
(``\\boxed{(96 - 74) + 37 - 7}``). Those take a fast path: :func:`_plain_box` finds the box with
two string searches, and :func:`_evaluate` reads it once, character by character, with no
regular expression, recursion or :class:`~fractions.Fraction` arithmetic on the way. It gives
the very verdict the general path gives (tests/test_countdown.py checks that on random
input); anything else (LaTeX, equations, nested braces, boxes over
:data:`FAST_PATH_CHARS`, the rarer errors) takes the general path, whose bounds are unchanged:
:func:`~rrr_env.verifiers.boxed.last_boxed`, :func:`normalise`, then
:func:`parse_expression`, where the recursive :class:`_Parser` words the errors the evaluator
leaves to it.
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
#: Boxed answers up to this long that are plain arithmetic take the fast path. Below
#: ``2 * MAX_DEPTH + 3``, so that no answer the fast path accepts nests too deep.
FAST_PATH_CHARS = 120

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
    canonical = "".join(tokens)  # no adjacent numbers: the same tokens
    try:
        evaluated = _evaluate(canonical)
    except _Invalid as error:
        raise ValueError(str(error)) from None
    if evaluated is not None:
        return *evaluated, canonical
    parser = _Parser(tokens)  # only the parser can tell what is wrong
    try:
        value = parser.expression()
        if parser.position != len(tokens):  # stopped before the end: e.g. "1 + 2) * 3"
            raise _Invalid(f"unexpected {tokens[parser.position]!r}")
    except _Invalid as error:
        raise ValueError(str(error)) from None
    return value, parser.literals, "".join(tokens)


# -- the fast path ---------------------------------------------------------------------------


def _plain_box(response: str) -> str | None:
    """The content of the last box when it is simple, else ``None`` (then ask :func:`last_boxed`).

    Simple: the last ``\\boxed`` before the last ``}`` starts at most
    :data:`FAST_PATH_CHARS` characters before that ``}`` and is followed directly by ``{``,
    and its next ``}`` comes before any other ``{``. That box is exactly the one
    :func:`last_boxed` returns: it looks at boxes from the last one before the last ``}``
    back, and this one's braces balance at that ``}``. ``""`` when the response has no ``}``
    (beyond its first character): :func:`last_boxed` finds no box then, and no box and an
    empty box get the same verdict. Cost: a ``str.rfind`` for one character and a search of
    :data:`FAST_PATH_CHARS` characters, so that a response that is not simple costs
    :func:`last_boxed`'s scan once, not twice.
    """
    last_close = response.rfind("}")
    if last_close <= 0:
        return ""
    window = last_close - FAST_PATH_CHARS - 7  # the box starts after this, if it is simple
    start = response.rfind("\\boxed", window if window > 0 else 0, last_close) + 7
    if start < 7 or response[start - 1] != "{":
        return None
    end = response.find("}", start, start + FAST_PATH_CHARS + 1)
    if end < 0:
        return None
    box = response[start:end]
    return None if "{" in box else box


_DIGITS = "0123456789"  # ``char in _DIGITS``: one test of an ASCII digit, not two


def _evaluate(text: str) -> tuple[Value, list[int]] | None:
    """Value and literals of ``text`` in the grammar of :class:`_Parser`, read once.

    The same grammar over the same tokens (ASCII numbers, ``+ - * / ( )``; spaces only
    separate them), in one loop over the characters and with no recursion: each ``(`` saves
    the state of the enclosing expression (the sum so far, the product so far, how the next
    operand joins that, whether it is negated) and its ``)`` restores it. Values are exact:
    a numerator and a denominator, reduced once at the end (an ``int`` when whole, else a
    :class:`~fractions.Fraction`, equal to the parser's).
    Errors are found at the token where the parser finds them, with its message.

    Returns:
        ``(value, literals)``; ``None`` where only the parser can tell what is wrong (no
        tokens, a character outside the alphabet, an operator where an operand belongs, a
        number right after an operand).

    Raises:
        _Invalid: for the common errors (an expression that ends early, unbalanced
            parentheses, a leading zero, a division by zero).
    """
    literals: list[int] = []
    saved: list[tuple[int, int, int, int, str, bool]] = []
    sum_n, sum_d = 0, 1  # the sum of the finished terms
    term_n = term_d = 1  # the current term: the product so far
    mul = ""  # how the next operand joins the product ("" for its first operand)
    negative = False  # negate the next operand: odd minus signs before it (a - b = a + -b)
    operand = True  # an operand is expected next
    number = ""  # the digits of the number being read
    for char in text + " ":  # the space ends a number at the end
        if number:
            if char in _DIGITS:
                number += char
                continue
            if number[0] == "0" and len(number) > 1:
                raise _Invalid("integer literal with a leading zero")
            value = int(number)
            literals.append(value)
            number = ""
            # the number joins the product (as a parenthesised operand does below)
            if negative:
                value, negative = -value, False
            if not mul:
                term_n, term_d = value, 1
            elif mul == "*":
                term_n *= value
            elif value:
                term_d *= value
            else:
                raise _Invalid("division by zero")
            operand = False
        if char == " ":
            continue
        if operand:
            if char in _DIGITS:
                number = char
            elif char == "-":
                negative = not negative
            elif char == "(":
                saved.append((sum_n, sum_d, term_n, term_d, mul, negative))
                sum_n, sum_d, mul, negative = 0, 1, "", False
            elif char == "+" or char == ")":
                raise _Invalid(f"unexpected {char!r}")
            else:
                return None  # "*" or "/" (the parser may say "**"), or outside the alphabet
        elif char == "+" or char == "-":
            if sum_d == term_d:
                sum_n += term_n
            else:
                sum_n, sum_d = sum_n * term_d + term_n * sum_d, sum_d * term_d
            mul, operand, negative = "", True, char == "-"
        elif char == "*" or char == "/":
            mul, operand = char, True
        elif char == ")":
            if not saved:
                raise _Invalid("unexpected ')'")
            if sum_d == term_d:
                value_n, value_d = sum_n + term_n, sum_d
            else:
                value_n, value_d = sum_n * term_d + term_n * sum_d, sum_d * term_d
            sum_n, sum_d, term_n, term_d, mul, negative = saved.pop()
            # the parenthesised operand joins the product (as a number does above)
            if negative:
                value_n, negative = -value_n, False
            if not mul:
                term_n, term_d = value_n, value_d
            elif mul == "*":
                term_n, term_d = term_n * value_n, term_d * value_d
            elif value_n:
                term_n, term_d = term_n * value_d, term_d * value_n
            else:
                raise _Invalid("division by zero")
        elif char == "(":
            raise _Invalid("unbalanced parentheses" if saved else "unexpected '('")
        else:
            return None  # a number right after an operand, or outside the alphabet
    if operand:
        if not literals and not negative and not saved:
            return None  # no tokens at all
        raise _Invalid("unexpected end")
    if saved:
        raise _Invalid("unbalanced parentheses")
    if sum_d == term_d:
        value_n, value_d = sum_n + term_n, sum_d
    else:
        value_n, value_d = sum_n * term_d + term_n * sum_d, sum_d * term_d
    if value_n % value_d == 0:
        return value_n // value_d, literals
    return Fraction(value_n, value_d), literals


def _judge(
    value: Value,
    literals: list[int],
    canonical: str,
    claimed: int | None,
    numbers: Sequence[int],
    target: int,
) -> Verdict:
    used = sorted(literals)
    details = {"value": str(value), "numbers_used": used}
    try:
        given = sorted(numbers)  # ints, as a rule: int() each only when that differs
    except TypeError:
        given = None
    if used != given and used != sorted(map(int, numbers)):
        return Verdict(False, "wrong_numbers", canonical, details)
    if value != target or (claimed is not None and claimed != target):
        return Verdict(False, "missed_target", canonical, details)
    return Verdict(True, "ok", canonical, details)


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
    box = _plain_box(response)
    if box is not None:
        try:
            evaluated = _evaluate(box)
        except _Invalid as error:
            # The parser's verdict too, unless a check on the whole text comes first.
            if (
                _ALLOWED.fullmatch(box)
                and box.count("(") <= MAX_DEPTH
                and not _ADJACENT_NUMBERS.search(box)
            ):
                return Verdict(False, "invalid_expression", details={"error": str(error)})
            evaluated = None
        if evaluated is not None:
            value, literals = evaluated
            return _judge(value, literals, box.replace(" ", ""), None, numbers, target)
    return _verify_general(response, numbers, target, box)


def _verify_general(
    response: str, numbers: Sequence[int], target: int, boxed: str | None = None
) -> Verdict:
    """:func:`verify` without the fast path: every response, in bounded time.

    ``boxed``: the content of the last box where :func:`_plain_box` found it already.
    """
    if boxed is None:
        try:
            boxed = last_boxed(response, MAX_BOXED_CHARS)
        except BoxedTooLong as error:
            return Verdict(False, "invalid_expression", details={"error": str(error)})
    if boxed is None or not boxed.strip():
        return Verdict(False, "no_answer")
    equation = _split_equation(normalise(boxed))
    if equation is None:
        return Verdict(False, "invalid_expression", details={"error": "ambiguous equation"})
    return _judge_expression(*equation, numbers, target)


def _judge_expression(
    expression: str, claimed: int | None, numbers: Sequence[int], target: int
) -> Verdict:
    try:
        value, literals, canonical = parse_expression(expression)
    except ValueError as error:
        return Verdict(False, "invalid_expression", details={"error": str(error)})
    return _judge(value, literals, canonical, claimed, numbers, target)
