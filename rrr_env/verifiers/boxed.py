"""Find the last ``\\boxed{...}`` in a response, in bounded time on any input.

A box's content is an answer, so it is short: a box that does not close within
``max_chars`` characters is not an answer. That bound is what keeps the cost small on any
response the env accepts (up to a million characters): only braces within ``max_chars`` of a
box are ever looked at one by one; everything else is searched by ``str.rfind``.
"""

from __future__ import annotations

import re

MAX_BOXED_CHARS = 1_000  # default bound on a box's content
MAX_BOX_CANDIDATES = 16  # "\boxed" tokens without a "{" skipped before giving up
MAX_BOX_SPACES = 16  # whitespace allowed between "\boxed" and its "{"

_BOXED = re.compile(rf"\\boxed\s{{0,{MAX_BOX_SPACES}}}\{{")
_BRACE = re.compile(r"[{}]")


class BoxedTooLong(ValueError):
    """The last box does not close within the bound (too long, or left open far from the end)."""


def _close(text: str, brace: int, limit: int) -> int | None:
    """Position of the ``}`` that closes the ``{`` at ``brace``, if it lies before ``limit``."""
    depth = 0
    for match in _BRACE.finditer(text, brace, limit):
        depth += 1 if match.group() == "{" else -1
        if depth == 0:
            return match.start()
    return None


def _closing(text: str, start: int) -> dict[int, int]:
    """``{position of "{": position of its "}"}`` for the braces of ``text[start:]``.

    A brace's partner depends only on what follows it, so pairing the tail alone is exact.
    """
    closing: dict[int, int] = {}
    stack: list[int] = []
    for match in _BRACE.finditer(text, start):
        if match.group() == "{":
            stack.append(match.start())
        elif stack:
            closing[stack.pop()] = match.start()
    return closing


def _box_braces(text: str, end: int) -> list[int]:
    """Positions of the ``{`` of the last :data:`MAX_BOX_CANDIDATES` boxes before ``end``.

    Last first. Raises :class:`BoxedTooLong` when more ``\\boxed`` tokens remain unseen.
    """
    braces: list[int] = []
    for _ in range(MAX_BOX_CANDIDATES):
        start = text.rfind("\\boxed", 0, end)
        if start < 0:
            return braces
        match = _BOXED.match(text, start)
        if match is not None:
            braces.append(match.end() - 1)
        end = start
    if text.rfind("\\boxed", 0, end) >= 0:
        braces.append(-1)  # a marker: more boxes than were looked at
    return braces


def last_boxed(text: str, max_chars: int = MAX_BOXED_CHARS) -> str | None:
    """Return the content of the last ``\\boxed{...}`` whose braces balance, or ``None``.

    Boxes are tried from the last one back. One that is still open at the end of ``text`` is
    skipped for the one before it, but only while the end is within ``max_chars`` of it (or no
    ``}`` follows it at all): a box that neither closes within ``max_chars`` characters nor is
    plainly left open is an overlong or unclosed answer and raises :class:`BoxedTooLong`,
    rather than letting an earlier box stand in for it; so do more than
    :data:`MAX_BOX_CANDIDATES` open boxes in a row. Cost: at most ``2 * max_chars`` braces
    looked at in Python, plus a few ``str.rfind`` over ``text``.

    Args:
        text: The response.
        max_chars: The longest content a box may have.

    Raises:
        BoxedTooLong: as above (a :class:`ValueError`).

    >>> last_boxed(r"so \\boxed{1} or rather \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> last_boxed(r"\\boxed{unclosed") is None
    True
    >>> last_boxed(r"\\boxed{1} and \\boxed{ then more")
    '1'
    """
    last_close = text.rfind("}")  # a box opening after it cannot close
    tail = max(0, len(text) - max_chars - 1)  # a box opening here may reach the end open
    closing: dict[int, int] | None = None  # pairs of the braces in the tail, found once
    for brace in _box_braces(text, last_close) if last_close > 0 else ():
        if brace < 0:
            raise BoxedTooLong(f"more than {MAX_BOX_CANDIDATES} unclosed boxes")
        if brace < tail:
            end = _close(text, brace, brace + max_chars + 2)
            if end is None:
                raise BoxedTooLong(f"a \\boxed not closed within {max_chars} characters")
            return text[brace + 1 : end]
        if closing is None:
            closing = _closing(text, tail)
        end = closing.get(brace)
        if end is not None:
            return text[brace + 1 : end]
    return None
