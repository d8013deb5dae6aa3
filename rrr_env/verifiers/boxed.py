"""Find the last ``\\boxed{...}`` in a response, in linear time on any input."""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\boxed\s*\{")


def last_boxed(text: str) -> str | None:
    """Return the content of the last ``\\boxed{...}`` whose braces balance, or ``None``.

    One pass pairs every brace, so the cost is linear in ``len(text)`` even for hostile
    input such as a million unclosed ``\\boxed{``.

    >>> last_boxed(r"so \\boxed{1} or rather \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> last_boxed(r"\\boxed{unclosed") is None
    True
    """
    if "boxed" not in text:
        return None
    closing: dict[int, int] = {}
    stack: list[int] = []
    for match in re.finditer(r"[{}]", text):
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
