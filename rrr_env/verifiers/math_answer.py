"""Numeric final-answer verifier (GSM8K and other problems whose answer is one number).

The answer is the content of the last non-empty ``\\boxed{...}`` or, when there is none, the
last number in the response. It is normalised (thousands separators, ``$``, ``%``, units and
other words, ``\\text{...}``, LaTeX spacing, a trailing ``.``), read as one rational number
(an integer, a decimal, ``a/b`` or ``\\frac{a}{b}``, optionally signed) and compared exactly
with the gold answer as a :class:`fractions.Fraction`. Nothing is evaluated as code, numbers
are built from capped digit strings, and only a bounded tail of the response is scanned, so
the cost is bounded on any input.

Only the words of a closed list of units and currencies (:data:`UNIT_WORDS`) are dropped
(``18 dollars``, ``$18/hour``, ``5 cm^2``); any other word makes the answer ``unparsable``, as
it may change the value (``not 5``, ``5 squared``, ``twice 5``, ``1.5 million``). Before an
``=`` only a short label may stand (``x = 18``, ``\\text{Total} = 18``): ``5 = 6`` is not the
answer 6. Deliberately not accepted either: arithmetic (``3 + 4``), mixed numbers
(``2 1/2``), scientific notation, constants (``\\pi``), lists, ranges and non-ASCII digits.

The whole response is judged, however long: the last box is found by :func:`last_boxed`
(bounded by :data:`MAX_ANSWER_CHARS`), the last number by ``str.rfind`` of the last digit and a
pattern search in a bounded window before it.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

from rrr_env.verdict import Verdict
from rrr_env.verifiers.boxed import BoxedTooLong, last_boxed

#: Verdict reasons, ``ok`` first: nothing to extract / extracted but not a number / a
#: different number.
REASONS = ("ok", "no_answer", "unparsable", "wrong_answer")

MAX_ANSWER_CHARS = 1_000  # longer boxed content is not one number
MAX_NUMBER_CHARS = 1_000  # window before the last digit searched for the last number
MAX_SPACES = 16  # whitespace inside \frac{a}{b} when it is read from running text
MAX_DIGITS = 100  # per number literal (integer plus decimal digits); more is unparsable
MAX_SHOWN_CHARS = 100  # of the extracted text, kept in ``Verdict.details``

# One number literal: digits with optional comma thousands separators and decimals.
_LITERAL = r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+"
# The whole normalised answer: a signed literal, optionally over another signed literal.
_ANSWER = re.compile(rf"([+-]?)\s*({_LITERAL})\s*(?:/\s*([+-]?)\s*({_LITERAL}))?")
# A bare number in running text (the fallback): a literal, "a/b" or "\frac{a}{b}"; a minus
# counts only when it is not binary ("3-4" ends in 4, not in -4). Whitespace is bounded, so
# that a match around the last digit lies within a bounded window. Group 1: a bare literal.
_S = rf"\s{{0,{MAX_SPACES}}}"
_NUMBER_IN_TEXT = re.compile(
    rf"(?:(?<![\w)\]}}])-)?"
    rf"(?:\\[dt]?frac{_S}\{{{_S}-?(?:{_LITERAL}){_S}\}}{_S}\{{{_S}-?(?:{_LITERAL}){_S}\}}"
    rf"|((?:{_LITERAL})(?:{_S}/{_S}(?:{_LITERAL}))?))"
)
# What may stand before a number in braces read from running text: "\text{18}" is 18, but
# "x^{2}", "\sqrt{2}" or a "\frac" the pattern did not take are not the number 2.
_WRAPPER_BEFORE_BRACE = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox)\s*\{\s*\Z"
)

_WRAPPERS = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|operatorname)"
    r"\s*\{([^{}]*)\}"
)
_FRAC = re.compile(r"\\[dt]?frac\s*(?:\{([^{}]*)\}\s*\{([^{}]*)\}|([0-9])\s*([0-9]))")
_DEGREES = re.compile(r"\^\s*(?:\{\s*\\circ\s*\}|\\circ)")
# Everything after the last "=" or "\approx" is the answer ("x = 18" -> "18").
_RELATION = re.compile(r"=|\\approx|≈")
# A word (a unit, usually), with an optional power as in "cm^2" and an optional "/" as in
# "$18/hour" or "km/h"; never (part of) a LaTeX command name.
_WORD = re.compile(
    r"(?:/\s*)?(?<!\\)(?<![^\W\d_])([^\W\d_]+)(?:\s*\^\s*(?:\{\s*[23]\s*\}|[23])|[²³])?"
)
#: The words dropped from an answer: units and currencies, singular and plural, lower case.
#: A closed list on purpose: any other word may change the value ("not", "squared", "twice",
#: "half", "dozen", "million", "minus") and makes the answer unparsable.
UNIT_WORDS = frozenset(
    {
        # money
        *("dollar", "dollars", "usd", "cent", "cents", "euro", "euros", "eur", "pound"),
        *("pounds", "gbp", "yen", "rupee", "rupees", "buck", "bucks", "penny", "pennies"),
        *("nickel", "nickels", "dime", "dimes", "quarter", "quarters"),
        # time
        *("second", "seconds", "sec", "secs", "s", "minute", "minutes", "min", "mins"),
        *("hour", "hours", "hr", "hrs", "h", "day", "days", "week", "weeks", "month"),
        *("months", "year", "years", "yr", "yrs"),
        # length, area, volume
        *("mm", "cm", "m", "km", "meter", "meters", "metre", "metres", "centimeter"),
        *("centimeters", "kilometer", "kilometers", "inch", "inches", "foot", "feet", "ft"),
        *("yard", "yards", "yd", "mile", "miles", "mi", "sq", "square", "cubic"),
        *("l", "liter", "liters", "litre", "litres", "ml", "milliliter", "milliliters"),
        *("gallon", "gallons", "gal", "quart", "quarts", "pint", "pints", "cup", "cups"),
        # mass
        *("g", "gram", "grams", "kg", "kilogram", "kilograms", "mg", "lb", "lbs", "ounce"),
        *("ounces", "oz", "ton", "tons", "tonne", "tonnes"),
        # rates, angles, counts of occurrences
        *("per", "mph", "kph", "percent", "degree", "degrees", "time", "times"),
    }
)
# Words that may stand before "=" as the name of the answer ("x = 18", "total cost = 18").
_LABEL = re.compile(r"[^\W\d_]+(?:[ _]+[^\W\d_]+){0,2}")
_NEGATIONS = frozenset({"not", "no", "never", "non", "isnt", "minus", "negative"})
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
    ("€", ""),
    ("£", ""),
    ("¥", ""),
    ("₹", ""),
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


def _normalise(answer: str) -> tuple[str, list[str], list[str]]:
    """The answer after the last relation, its words, and what stood before each relation."""
    text = answer
    for _ in range(4):  # \text{} rarely nests; bounded passes keep the cost linear
        text, count = _WRAPPERS.subn(r" \1 ", text)
        if not count:
            break
    *labels, text = _RELATION.split(text)
    for _ in range(4):
        text, count = _FRAC.subn(lambda m: f" {m[1] or m[3]}/{m[2] or m[4]} ", text)
        if not count:
            break
    text = _DEGREES.sub("", text)
    for old, new in _REPLACEMENTS:
        text = text.replace(old, new)
    words = _WORD.findall(text)
    return _WORD.sub(" ", text).strip().rstrip(".").strip(), words, labels


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
    text, words, labels = _normalise(answer)
    other_words = sorted({w.lower() for w in words} - UNIT_WORDS)
    if other_words:
        raise _Unparsable(f"words that are not units: {other_words[:5]}")
    for label in labels:
        label = label.strip().replace("$", "").strip()
        if _LABEL.fullmatch(label) is None or _NEGATIONS & set(label.lower().split()):
            raise _Unparsable(f"{label[:40]!r} = ... is not a name for the answer")
    if "\\" in text:
        raise _Unparsable("LaTeX that is not a plain number")
    return _number(text)


@lru_cache(maxsize=4096)
def _gold_value(gold: str) -> Fraction:
    try:
        return parse_answer(gold)
    except ValueError as error:
        raise ValueError(f"gold answer {gold!r} is not a number: {error}") from None


def _last_number(response: str) -> tuple[str, str | None] | None:
    """The last number in ``response`` and why it is not a readable answer (``None`` if it is).

    Found without scanning the whole text in Python: ``str.rfind`` locates the last digit, and
    the pattern runs over a window of :data:`MAX_NUMBER_CHARS` before it.
    """
    last_digit = max(response.rfind(digit) for digit in "0123456789")
    if last_digit < 0:
        return None
    start = max(0, last_digit - MAX_NUMBER_CHARS)
    last = None
    for last in _NUMBER_IN_TEXT.finditer(response, start, last_digit + MAX_SPACES + 2):  # noqa: B007
        pass
    assert last is not None  # the last digit alone is a number
    if start > 0 and last.start() == start:
        return last[0], f"a number longer than the {MAX_NUMBER_CHARS} characters read"
    if last[1] is not None:  # a bare literal: is it the number, or part of some LaTeX?
        before = response[max(0, last.start() - MAX_NUMBER_CHARS) : last.start()].rstrip()
        if not before and last.start() > MAX_NUMBER_CHARS:
            return last[0], "a number after more whitespace than is read"
        if before.endswith("{") and _WRAPPER_BEFORE_BRACE.search(before[-40:]) is None:
            return last[0], "a number inside LaTeX braces (a power, root or fraction part)"
    return last[0], None


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
    try:
        boxed = last_boxed(response, MAX_ANSWER_CHARS)
    except BoxedTooLong as error:
        details = {"source": "boxed", "extracted": "", "error": str(error)}
        return Verdict(False, "unparsable", details=details)
    if boxed is not None and boxed.strip():
        error = None
        source, extracted = "boxed", boxed
    else:
        # An empty \boxed{} is usually the instruction echoed back, not an answer.
        found = _last_number(response)
        if found is None:
            return Verdict(False, "no_answer")
        source, (extracted, error) = "last_number", found
    details = {"source": source, "extracted": extracted[:MAX_SHOWN_CHARS]}
    if error is not None:
        return Verdict(False, "unparsable", details={**details, "error": error})
    try:
        value = parse_answer(extracted)
    except ValueError as error:
        return Verdict(False, "unparsable", details={**details, "error": str(error)})
    if value != expected:
        return Verdict(False, "wrong_answer", str(value), details)
    return Verdict(True, "ok", str(value), details)
