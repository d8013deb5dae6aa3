"""An exact Countdown solver: proves that generated items have a solution."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction


def reachable(numbers: Sequence[int]) -> dict[Fraction, str]:
    """Every value reachable by using each number exactly once, with one expression for each.

    Dynamic programming over subsets of the numbers, with exact rational arithmetic, so a
    value missing from the result is proved unreachable. Cost grows fast with the count of
    numbers: well under a millisecond for 3, milliseconds for 4, about a second for 5.

    >>> sorted(str(value) for value in reachable([2, 3]))
    ['-1', '1', '2/3', '3/2', '5', '6']
    """
    count = len(numbers)
    if count == 0:
        raise ValueError("need at least one number")
    table: dict[int, dict[Fraction, str]] = {
        1 << i: {Fraction(n): str(n)} for i, n in enumerate(numbers)
    }
    full = (1 << count) - 1
    for mask in sorted(range(1, full + 1), key=int.bit_count):
        if mask in table:
            continue
        values: dict[Fraction, str] = {}
        # Each unordered split {left, right} once: left holds the lowest set bit.
        low = mask & -mask
        left = (mask - 1) & mask
        while left:
            if left & low:
                right = mask ^ left
                for x, ex in table[left].items():
                    for y, ey in table[right].items():
                        values.setdefault(x + y, f"{ex} + {ey}")
                        values.setdefault(x - y, f"{ex} - ({ey})")
                        values.setdefault(y - x, f"{ey} - ({ex})")
                        values.setdefault(x * y, f"({ex}) * ({ey})")
                        if y:
                            values.setdefault(x / y, f"({ex}) / ({ey})")
                        if x:
                            values.setdefault(y / x, f"({ey}) / ({ex})")
            left = (left - 1) & mask
        table[mask] = values
    return table[full]


def solve(numbers: Sequence[int], target: int) -> str | None:
    """An expression using every number once that equals ``target``, or ``None`` if none does.

    >>> solve([4, 73, 4, 23], 76) is not None
    True
    >>> solve([1, 1], 5) is None
    True
    """
    return reachable(numbers).get(Fraction(target))
