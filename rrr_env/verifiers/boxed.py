"""Find the last ``\\boxed{...}`` in a response, in linear time on any input."""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\boxed\s*\{")
_BRACE = re.compile(r"[{}]")


def last_boxed(text: str) -> str | None:
    """Return the content of the last ``\\boxed{...}`` whose braces balance, or ``None``.

    One pass pairs every brace, so the cost is linear in ``len(text)`` even for hostile
    input such as a million unclosed ``\\boxed{``.

    >>> last_boxed(r"so \\boxed{1} or rather \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> last_boxed(r"\\boxed{unclosed") is None
    True
    """
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    # Fast path: a brace's partner depends only on what follows it, so if the last \boxed
    # closes, scanning from it alone settles the answer.
    match = _BOXED.match(text, start)
    if match is not None:
        depth = 0
        for brace in _BRACE.finditer(text, match.end() - 1):
            depth += 1 if brace.group() == "{" else -1
            if depth == 0:
                return text[match.end() : brace.start()]
    closing: dict[int, int] = {}
    stack: list[int] = []
    for match in _BRACE.finditer(text):
        pos = match.start()
        if text[pos] == "{":
            stack.append(pos)
        elif stack:
            closing[stack.pop()] = pos
    starts = [m.end() - 1 for m in _BOXED.finditer(text)]
    for brace in reversed(starts):
        end = closing.get(brace)
        if end is not None:
            return text[brace + 1 : end]
    return None
