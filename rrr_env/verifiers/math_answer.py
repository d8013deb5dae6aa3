"""Numeric final-answer verifier (GSM8K and other problems whose answer is one number).

The answer is the content of the last non-empty ``\\boxed{...}`` or, when there is none, the
last number in the response. It is normalised (thousands separators, ``$``, ``%``, units and
other words, ``\\text{...}``, LaTeX spacing, a trailing ``.``), read as one rational number
(an integer, a decimal, ``a/b`` or ``\\frac{a}{b}``, optionally signed) and compared exactly
with the gold answer as a :class:`fractions.Fraction`. Nothing is evaluated as code, numbers
are built from capped digit strings, and only a bounded tail of the response is scanned, so
the cost is bounded on any input.

Words are dropped as units (``18 dollars``, ``$18/hour``, ``5 cm^2``), except those that
change the value. Deliberately not accepted (reason ``unparsable``): arithmetic (``3 + 4``),
mixed numbers (``2 1/2``), scientific notation, constants (``\\pi``), lists, ranges, and scale
or fraction words (``1.5 million``, ``18 and a half``), whose meaning depends on the question.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

from rrr_env.verdict import Verdict
from rrr_env.verifiers.boxed import last_boxed

#: Verdict reasons, ``ok`` first: nothing to extract / extracted but not a number / a
#: different number.
REASONS = ("ok", "no_answer", "unparsable", "wrong_answer")

MAX_BOXED_SCAN_CHARS = 100_000  # tail of the response searched for \boxed{...}
MAX_NUMBER_SCAN_CHARS = 10_000  # tail searched for a bare number when nothing is boxed
MAX_ANSWER_CHARS = 1_000  # longer boxed content is not one number
MAX_DIGITS = 100  # per number literal (integer plus decimal digits); more is unparsable
MAX_SHOWN_CHARS = 100  # of the extracted text, kept in ``Verdict.details``

# One number literal: digits with optional comma thousands separators and decimals.
_LITERAL = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
# The whole normalised answer: a signed literal, optionally over another signed literal.
_ANSWER = re.compile(rf"([+-]?)\s*({_LITERAL})\s*(?:/\s*([+-]?)\s*({_LITERAL}))?")
# A bare number in running text (the fallback): a literal, "a/b" or "\frac{a}{b}"; a minus
# counts only when it is not binary ("3-4" ends in 4, not in -4).
_NUMBER_IN_TEXT = re.compile(
    rf"(?:(?<![\w)\]}}])-)?"
    rf"(?:\\[dt]?frac\s*\{{\s*-?(?:{_LITERAL})\s*\}}\s*\{{\s*-?(?:{_LITERAL})\s*\}}"
    rf"|(?:{_LITERAL})(?:\s*/\s*(?:{_LITERAL}))?)"
)

_WRAPPERS = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|operatorname)"
    r"\s*\{([^{}]*)\}"
)
_FRAC = re.compile(r"\\[dt]?frac\s*(?:\{([^{}]*)\}\s*\{([^{}]*)\}|(\d)\s*(\d))")
_DEGREES = re.compile(r"\^\s*(?:\{\s*\\circ\s*\}|\\circ)")
# Everything after the last "=" or "\approx" is the answer ("x = 18" -> "18").
_RELATION = re.compile(r"=|\\approx|≈")
# A word (a unit, usually), with an optional power as in "cm^2" and an optional "/" as in
# "$18/hour" or "km/h"; never (part of) a LaTeX command name.
_WORD = re.compile(r"(?:/\s*)?(?<!\\)(?<![^\W\d_])[^\W\d_]+(?:\s*\^\s*(?:\{\s*\d\s*\}|\d)|[²³])?")
# Words that change the value, so that dropping them would accept a different answer. Words
# between two numbers ("3 times 6") need no entry: two numbers are unparsable anyway.
_VALUE_WORDS = frozenset(
    {
        *("half", "halves", "dozen", "dozens", "minus", "negative"),
        *("hundred", "hundreds", "thousand", "thousands", "million", "millions"),
        *("billion", "billions", "trillion", "trillions"),
    }
)
_REPLACEMENTS = (
    ("{,}", ","),  # 1{,}234
    ("\\,", ""),  # thin space, also a thousands separator: 1\,234
    ("\\!", ""),
    ("\\;", " "),
    ("\\:", " "),
    ("\\ ", " "),
    ("\\qquad", " "),
    ("\\quad", " "),
    ("~", " "),
    ("\\left", ""),
    ("\\right", ""),
    ("\\displaystyle", ""),
    ("\\$", ""),
    ("$", ""),
    ("\\%", ""),
    ("%", ""),
    ("°", ""),
    ("\u2009", ""),  # thin space
    ("\u202f", ""),  # narrow no-break space
    ("−", "-"),  # U+2212 minus sign
)


class _Unparsable(ValueError):
    """The text is not one rational number."""


def gold_answer(answer_field: str) -> str:
    """The final answer of a GSM8K ``answer`` field: the text after its last ``####``.

    Args:
        answer_field: The worked solution, ending in ``#### <answer>``.

    Returns:
        The answer text, stripped (it may contain thousands separators).

    Raises:
        ValueError: if there is no ``####``.

    >>> gold_answer("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\\n#### 1,080")
    '1,080'
    """
    _, marker, tail = answer_field.rpartition("####")
    if not marker:
        raise ValueError(f"no '#### <answer>' in the answer field {answer_field[-80:]!r}")
    return tail.strip()


def _literal(text: str) -> Fraction:
    digits = text.replace(",", "")
    whole, _, decimals = digits.partition(".")
    if len(whole) + len(decimals) > MAX_DIGITS:
        raise _Unparsable(f"a number with more than {MAX_DIGITS} digits")
    return Fraction(
        int(whole or "0") * 10 ** len(decimals) + int(decimals or "0"), 10 ** len(decimals)
    )


def _signed(sign: str, text: str) -> Fraction:
    value = _literal(text)
    return -value if sign == "-" else value


def _number(text: str) -> Fraction:
    """The value of a normalised answer; raises :class:`_Unparsable` if it is not one."""
    match = _ANSWER.fullmatch(text.strip())
    if match is None:
        raise _Unparsable("not a number")
    sign, numerator, denominator_sign, denominator = match.groups()
    value = _signed(sign, numerator)
    if denominator is not None:
        divisor = _signed(denominator_sign, denominator)
        if divisor == 0:
            raise _Unparsable("division by zero")
        value /= divisor
    return value


def _normalise(answer: str) -> tuple[str, list[str]]:
    text = answer
    for _ in range(4):  # \text{} rarely nests; bounded passes keep the cost linear
        text, count = _WRAPPERS.subn(r" \1 ", text)
        if not count:
            break
    text = _RELATION.split(text)[-1]
    for _ in range(4):
        text, count = _FRAC.subn(lambda m: f" {m[1] or m[3]}/{m[2] or m[4]} ", text)
        if not count:
            break
    text = _DEGREES.sub("", text)
    for old, new in _REPLACEMENTS:
        text = text.replace(old, new)
    words = _WORD.findall(text)
    return _WORD.sub(" ", text).strip().rstrip(".").strip(), words


def normalise(answer: str) -> str:
    """Strip the decorations around a numeric answer, leaving ``[sign] a[/b]`` if it is one.

    Args:
        answer: An extracted answer such as the content of ``\\boxed{...}``.

    Returns:
        The normalised text; not necessarily a number (:func:`parse_answer` decides).

    >>> normalise(r"\\$1,234.00 \\text{ dollars}.")
    '1,234.00'
    >>> normalise(r"x = -\\dfrac{3}{4}")
    '- 3/4'
    """
    return _normalise(answer)[0]


def parse_answer(answer: str) -> Fraction:
    """The exact value of a numeric answer, e.g. the content of ``\\boxed{...}``.

    Args:
        answer: An integer, decimal, ``a/b`` or ``\\frac{a}{b}``, optionally signed, with
            optional thousands separators, ``$``, ``%``, units and LaTeX decorations.

    Returns:
        The value as a :class:`~fractions.Fraction`.

    Raises:
        ValueError: if ``answer`` is not one number (see the module docstring).

    >>> parse_answer(r"\\frac{3}{4}") == parse_answer("0.75")
    True
    >>> str(parse_answer("$1,234.50"))
    '2469/2'
    """
    if len(answer) > MAX_ANSWER_CHARS:
        raise _Unparsable(f"longer than {MAX_ANSWER_CHARS} characters")
    text, words = _normalise(answer)
    value_words = sorted({w.lower() for w in words} & _VALUE_WORDS)
    if value_words:
        raise _Unparsable(f"words that change the value: {value_words}")
    if "\\" in text:
        raise _Unparsable("LaTeX that is not a plain number")
    return _number(text)


@lru_cache(maxsize=4096)
def _gold_value(gold: str) -> Fraction:
    try:
        return parse_answer(gold)
    except ValueError as error:
        raise ValueError(f"gold answer {gold!r} is not a number: {error}") from None


def _last_number(response: str) -> tuple[str, bool] | None:
    """The last number in the scanned tail, and whether the window may have cut it."""
    tail = response[-MAX_NUMBER_SCAN_CHARS:]
    last = None
    for last in _NUMBER_IN_TEXT.finditer(tail):  # noqa: B007 - the last match is wanted
        pass
    if last is None:
        return None
    cut = len(response) > len(tail) and last.start() == 0 and response[-len(tail) - 1].isdigit()
    return last[0], cut


def verify(response: str, gold: str) -> Verdict:
    """Judge a response whose final answer should be the number ``gold``.

    Args:
        response: The model's full response.
        gold: The reference answer, a number such as ``"1,080"``, ``"-3"`` or ``"2.5"``.

    Returns:
        A :class:`Verdict` with reason ``ok``, ``no_answer`` (no non-empty ``\\boxed{}`` and
        no number), ``unparsable`` (an extracted answer that is not one number) or
        ``wrong_answer``. ``answer`` is the extracted value as a canonical rational
        (``"18"``, ``"-3/4"``, ``"5/2"``), so equal answers compare equal. ``details`` has
        ``source`` (``"boxed"`` or ``"last_number"``) and the ``extracted`` text. Never
        raises for a ``str`` response; bounded cost.

    Raises:
        TypeError: if ``response`` is not a ``str``.
        ValueError: if ``gold`` is not a number (a data error, not a model error).

    >>> verify(r"... so she makes \\boxed{\\$18} every day.", "18").correct
    True
    >>> verify("Half of 7 is 3.5", "7/2").answer
    '7/2'
    >>> verify(r"\\boxed{eighteen}", "18").reason
    'unparsable'
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    expected = _gold_value(gold)
    boxed = last_boxed(response[-MAX_BOXED_SCAN_CHARS:])
    if boxed is not None and boxed.strip():
        source, extracted = "boxed", boxed
    else:
        # An empty \boxed{} is usually the instruction echoed back, not an answer.
        found = _last_number(response)
        if found is None:
            return Verdict(False, "no_answer")
        source, (extracted, cut) = "last_number", found
    details = {"source": source, "extracted": extracted[:MAX_SHOWN_CHARS]}
    if source == "last_number" and cut:
        error = f"a number longer than the {MAX_NUMBER_SCAN_CHARS} characters scanned"
        return Verdict(False, "unparsable", details={**details, "error": error})
    try:
        value = parse_answer(extracted)
    except ValueError as error:
        return Verdict(False, "unparsable", details={**details, "error": str(error)})
    if value != expected:
        return Verdict(False, "wrong_answer", str(value), details)
    return Verdict(True, "ok", str(value), details)
