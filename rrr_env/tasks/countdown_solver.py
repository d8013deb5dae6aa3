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


def _combine(left: set[Fraction], right: set[Fraction]) -> set[Fraction]:
    values: set[Fraction] = set()
    for x in left:
        for y in right:
            values.update((x + y, x - y, y - x, x * y))
            if y:
                values.add(x / y)
            if x:
                values.add(y / x)
    return values


def _subset_values(numbers: Sequence[int]) -> dict[int, set[Fraction]]:
    # Values (no expressions) of every non-empty proper subset, by bit mask.
    count = len(numbers)
    table: dict[int, set[Fraction]] = {1 << i: {Fraction(n)} for i, n in enumerate(numbers)}
    full = (1 << count) - 1
    for mask in sorted(range(1, full), key=int.bit_count):
        if mask in table:
            continue
        values: set[Fraction] = set()
        low = mask & -mask
        left = (mask - 1) & mask
        while left:
            if left & low:
                values |= _combine(table[left], table[mask ^ left])
            left = (left - 1) & mask
        table[mask] = values
    return table


def reachable_values(numbers: Sequence[int]) -> set[Fraction]:
    """The values of :func:`reachable`, without building expressions (several times faster).

    >>> sorted(str(v) for v in reachable_values([2, 3]))
    ['-1', '1', '2/3', '3/2', '5', '6']
    """
    if not numbers:
        raise ValueError("need at least one number")
    if len(numbers) == 1:
        return {Fraction(numbers[0])}
    table = _subset_values(numbers)
    full = (1 << len(numbers)) - 1
    values: set[Fraction] = set()
    left = (full - 1) & full
    while left:
        if left & 1:
            values |= _combine(table[left], table[full ^ left])
        left = (left - 1) & full
    return values


def solvable(numbers: Sequence[int], target: int) -> bool:
    """Whether some expression using every number once equals ``target``.

    Like ``solve(...) is not None``, but the last operation is found by solving for the
    missing operand, so that checking a whole data file at load takes milliseconds per item.

    >>> solvable([1, 1], 5), solvable([4, 73, 4, 23], 76), solvable([3, 8], -5)
    (False, True, True)
    """
    if not numbers:
        raise ValueError("need at least one number")
    goal = Fraction(target)
    if len(numbers) == 1:
        return Fraction(numbers[0]) == goal
    table = _subset_values(numbers)
    full = (1 << len(numbers)) - 1
    left = (full - 1) & full
    while left:
        if left & 1:
            right = table[full ^ left]
            for x in table[left]:
                # The y in `right` that would make x + y, x - y, y - x, x * y, y / x or
                # x / y (y != 0) equal the goal.
                needed = {goal - x, x - goal, goal + x}
                if x:
                    needed.update((goal / x, goal * x))
                    if goal:
                        needed.add(x / goal)
                elif not goal:
                    return True  # 0 * y == 0
                if not needed.isdisjoint(right):
                    return True
        left = (left - 1) & full
    return False
