"""Countdown: combine the given numbers with + - * / to reach the target (TinyZero's task)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rrr_env import data as rrr_data
from rrr_env.shortcuts import COUNTDOWN_OPERATORS, COUNTDOWN_ORDERS, countdown_fold_value
from rrr_env.tasks.base import (
    ArgumentTypeError,
    Message,
    Task,
    caller_stacklevel,
    check_bool,
    check_choice,
    check_index,
    check_int,
    is_int,
)
from rrr_env.tasks.countdown_solver import reachable, reachable_values, solvable
from rrr_env.verdict import Verdict
from rrr_env.verifiers import countdown as countdown_verifier

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
USER_TEMPLATE = (
    "Using the numbers {numbers}, create an equation that equals {target}. You can use basic "
    "arithmetic operations (+, -, *, /) and each number can only be used once. "
    "Please reason step by step, and put your final answer within \\boxed{{}}."
)
HUB_DATASET = "Jiayi-Pan/Countdown-Tasks-3to4"
SPLITS = ("train", "validation", "test")
#: Share of all (numbers, target) keys that belong to the test split.
TEST_SHARE_PERCENT = 10
#: Share that ``rrr/Countdown-v1`` holds out for validation (from v0's train split).
VALIDATION_SHARE_PERCENT = 10
DEFAULT_SIZES = {"train": 10_000, "validation": 1_000, "test": 1_000}
MAX_CACHED_ITEMS = 100_000  # generated items kept in memory (a few hundred bytes each)
MAX_DRAWS = 10_000  # per generated item, before concluding the configuration is infeasible
#: The construction-time probe of the generator's knobs: per count of numbers, draws until
#: PROBE_HITS of them have a target in range; fewer hits in PROBE_DRAWS draws (1%) fail.
PROBE_DRAWS = 300
PROBE_HITS = 3
#: Data items have 1..MAX_NUMBERS numbers; those of up to MAX_CHECKED_NUMBERS are proved
#: solvable at load (milliseconds each; five numbers would take a fifth of a second).
MAX_NUMBERS = 6
MAX_CHECKED_NUMBERS = 4


@dataclass(frozen=True)
class CountdownItem:
    """One Countdown problem.

    Attributes:
        id: Stable identifier.
        numbers: The numbers to use, each exactly once, in the order shown to the model.
        target: The value to reach.
        solution: A known solution (from the solver), for generated items.
    """

    id: str
    numbers: tuple[int, ...]
    target: int
    solution: str | None = None


def split_of(numbers: Sequence[int], target: int, validation_percent: int = 0) -> str:
    """``"train"``, ``"validation"`` or ``"test"``: a stable hash of the sorted numbers and target.

    The split is a function of the problem itself, so the splits never share a problem,
    whatever the seeds or sizes. The test split is the same for every ``validation_percent``;
    the validation split takes its share from the train split (none by default, as in v0).

    >>> split_of([3, 7], 10), split_of([7, 3], 10)
    ('train', 'train')
    """
    key = json.dumps([sorted(int(n) for n in numbers), int(target)]).encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 100
    if bucket < TEST_SHARE_PERCENT:
        return "test"
    return "validation" if bucket < TEST_SHARE_PERCENT + validation_percent else "train"


def _int_range(name: str, value: Any, lowest: int, highest: int) -> tuple[int, int]:
    if is_int(value):
        value = (value, value)
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or not all(is_int(v) for v in value)
    ):
        raise ArgumentTypeError(
            f"{name} must be an int or a (low, high) pair of ints, got {type(value).__name__} "
            f"{value!r}"
        )
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a (low, high) pair of ints, got {value!r}")
    low, high = int(value[0]), int(value[1])
    if not lowest <= low <= high <= highest:
        raise ValueError(f"{name} must satisfy {lowest} <= low <= high <= {highest}, got {value!r}")
    return low, high


def _max_magnitude(count: int, largest: int) -> int:
    # Every value of `count` numbers of magnitude <= B is p/q with |p|, |q| <= 2**(count-1) B**c
    # (a sum of fractions doubles the bound of the product of the parts).
    return 2 ** (count - 1) * max(largest, 1) ** count


class CountdownTask(Task):
    """Countdown with a seeded generator of solvable items, or items from data.

    Args:
        data: ``None`` (default): the seeded generator (TinyZero's distribution, every item
            proved solvable). Otherwise the items, as rows ``{"nums": [int, ...], "target":
            int}``: a path to a JSON / JSON Lines file (gzipped or not; e.g.
            :data:`rrr_env.data.COUNTDOWN_TINYZERO_TEST`, TinyZero's test set, bundled), a
            ``datasets.Dataset`` or any iterable of such dicts, or a hub id such as
            ``"Jiayi-Pan/Countdown-Tasks-3to4"`` (its ``train`` split; needs ``datasets`` and
            the network). A malformed row raises, naming its file and line; rows that have no
            solution are left out with one warning.
        split: ``"train"``, ``"validation"`` (only with ``validation_percent > 0``) or
            ``"test"`` (disjoint by construction: a hash of the problem), or ``None`` for
            every item of the data (and ``"train"`` for the generator).
        validation_percent: Share of the problems held out from the train split for
            validation: 0 in ``rrr/Countdown-v0`` (train / test only), 10 in
            ``rrr/Countdown-v1``; the test split is the same in both.
        size: Number of items (generator default 10,000 train / 1,000 test; data: all).
        num_count: How many numbers per item: an int or an inclusive ``(low, high)``; 2..5.
        number_range: Inclusive range of the numbers (TinyZero: 1..99).
        target_range: Inclusive range of the target (TinyZero: 10..100).
        seed: Generator seed; item ``i`` depends only on the seed, the split and ``i``.
        exclude_fixed_forms: Generator only: leave out every target that one of the 16 fixed
            forms of :func:`rrr_env.shortcuts.countdown_forms` reaches (the numbers folded left
            to right with one operator, in the given, reversed, ascending or descending order),
            so that no item has that shortcut. Needs 3 or more numbers: with 2, every solvable
            problem is one operation, which a fixed form solves. The presets that set it say
            so in their id (``NoFixedForms``).
        source: Deprecated: ``"generator"`` is ``data=None``, ``"jsonl"`` is ``data=path``,
            ``"hub"`` is ``data="Jiayi-Pan/Countdown-Tasks-3to4"``.
        path: Deprecated: the file for ``source="jsonl"``; pass ``data=path``.

    The generator's knobs are checked at construction: ranges that no count of numbers can
    reach, or where fewer than 1 draw in 100 has a target in range, raise ``ValueError``, so
    every item that ``reset`` can pose is generated (each from up to 10,000 draws).

    Presets (``rrr_env.registration.ENV_IDS``: one id fixes every knob). The figures are on
    the first 200 distinct problems of the validation split (``python -m
    benchmarks.preset_search``, ``benchmarks/results/preset_search.md``); the *shortcut share*
    is the share solved by the best of the 16 fixed forms of :mod:`rrr_env.shortcuts`:

    - ``rrr/Countdown3-NoFixedForms-v1``: 3 numbers in 1..20, target 1..50,
      ``exclude_fixed_forms=True``, the validation split of ``rrr/Countdown-v1``. Shortcut
      share 0% by construction (the same ranges without the knob: 12.5%, ``a + b + c``; all
      16 forms together 19%). Not free of every constant policy: the best two-operator fold
      (``(max - mid) + min``) solves 19%, so report it beside a trained model. Greedy first
      attempt, first 100 problems: Qwen2.5-Coder-1.5B 18% with 512-token answers (65 of them
      cut at the limit; 1 of 32 with 256 tokens); Qwen2.5-Coder-0.5B 0% (256 tokens).

    Settings with 2 numbers (``num_count=2``, as in the CPU demos and the head-to-head) are
    smoke tests only: every solvable 2-number problem is one operation, so the 16 fixed forms
    together solve all of them, and ``a + b`` alone 52% of 2 numbers in 1..50 with a target in
    1..100, a score a constant policy reaches without any arithmetic.
    """

    name: ClassVar[str] = "countdown"
    reasons: ClassVar[tuple[str, ...]] = countdown_verifier.REASONS

    def __init__(
        self,
        *,
        data: Any = None,
        split: str | None = None,
        size: int | None = None,
        num_count: int | tuple[int, int] = (3, 4),
        number_range: tuple[int, int] = (1, 99),
        target_range: tuple[int, int] = (10, 100),
        seed: int = 0,
        validation_percent: int = 0,
        exclude_fixed_forms: bool = False,
        source: str | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        data = rrr_data.deprecated_source(
            "CountdownTask",
            data,
            source,
            path,
            {"generator": None, "jsonl": None, "hub": HUB_DATASET},
            f"data=None (generator), data='<path>' or data={HUB_DATASET!r}",
        )
        check_choice("split", split, SPLITS, optional=True)
        self.validation_percent = check_int("validation_percent", validation_percent, minimum=0)
        if self.validation_percent > 100 - TEST_SHARE_PERCENT - 1:
            raise ValueError(
                f"validation_percent must leave a train split: at most "
                f"{100 - TEST_SHARE_PERCENT - 1}, got {validation_percent}"
            )
        if split == "validation" and not self.validation_percent:
            raise ValueError(
                "this Countdown has no validation split (validation_percent=0, as in "
                "rrr/Countdown-v0); use rrr/Countdown-v1 or pass validation_percent"
            )
        if size is not None:
            size = check_int("size", size, minimum=1)
        self.seed = check_int("seed", seed)
        self.split = split
        self.data = data
        self.source = "generator" if data is None else _source_label(data)
        self.num_count = _int_range("num_count", num_count, 2, 5)
        self.number_range = _int_range("number_range", number_range, 0, 10_000)
        self.target_range = _int_range("target_range", target_range, -1_000_000, 1_000_000)
        exclude_fixed_forms = check_bool("exclude_fixed_forms", exclude_fixed_forms)
        if exclude_fixed_forms and data is not None:
            raise ValueError("exclude_fixed_forms applies to the generator only (data=None)")
        if exclude_fixed_forms and self.num_count[0] < 3:
            raise ValueError(
                "exclude_fixed_forms needs num_count >= 3: with 2 numbers every solvable "
                "problem is one operation, which a fixed form solves; got "
                f"num_count={num_count!r}"
            )
        self.exclude_fixed_forms = exclude_fixed_forms
        self._items: list[CountdownItem] | None = None
        if data is None:
            self.split = split or "train"
            self._size = size or DEFAULT_SIZES[self.split]
            self._cache: dict[int, CountdownItem] = {}
            self._check_feasible()
            self[0]
        else:
            rows = rrr_data.records(data, hub_split="train", offline_hint=_OFFLINE_HINT)
            self._items = self._items_from_rows(rows, size, data)
            self._size = len(self._items)
            if not self._items:
                raise ValueError(
                    f"no Countdown items in {rrr_data.describe(data)} for split {split!r}"
                )

    def _items_from_rows(
        self, rows: Iterable[tuple[str, Any]], size: int | None, data: Any
    ) -> list[CountdownItem]:
        proved = _is_bundled(data)  # the bundled file: every item proved solvable by a test
        items, unsolvable = [], []
        for index, (where, row) in enumerate(rows):
            numbers, target = _parse_row(where, row)
            if self.split is not None and self._split_of(numbers, target) != self.split:
                continue
            if not proved and len(numbers) <= MAX_CHECKED_NUMBERS and not solvable(numbers, target):
                unsolvable.append(where)
                continue
            items.append(CountdownItem(f"{self.source}-{index}", numbers, target))
            if size is not None and len(items) == size:
                break
        if unsolvable:
            warnings.warn(
                f"left out {len(unsolvable)} Countdown item(s) of {rrr_data.describe(data)} "
                f"that have no solution (first: {unsolvable[0]})",
                stacklevel=caller_stacklevel(),
            )
        return items

    def _check_feasible(self) -> None:
        # Fail at construction, in milliseconds, for ranges the generator cannot serve.
        low, high = self.target_range
        largest = max(abs(n) for n in self.number_range)
        where = (
            f"num_count={self.num_count}, number_range={self.number_range}, "
            f"target_range={self.target_range}"
        )
        if self.exclude_fixed_forms:
            where += ", exclude_fixed_forms=True"
        for count in range(self.num_count[0], self.num_count[1] + 1):
            bound = _max_magnitude(count, largest)
            if high < -bound or low > bound:
                raise ValueError(
                    f"no target in target_range={self.target_range} is reachable with {count} "
                    f"numbers in number_range={self.number_range} (|value| <= {bound}); "
                    "widen the ranges"
                )
            rng = random.Random(f"rrr-countdown-probe:{self.seed}:{self.split}:{count}")
            hits = 0
            for draw in range(1, PROBE_DRAWS + 1):  # noqa: B007 (reported below)
                numbers = tuple(rng.randint(*self.number_range) for _ in range(count))
                if self._targets(numbers, reachable_values(numbers)):
                    hits += 1
                    if hits == PROBE_HITS:
                        break
            if hits < PROBE_HITS:
                raise ValueError(
                    f"with {count} numbers, only {hits} of {draw} random draws can reach a "
                    f"{self.split} target in range ({where}); the generator needs at least 1 "
                    "in 100: widen the ranges"
                )

    def _targets(self, numbers: tuple[int, ...], values: Iterable[Fraction]) -> list[int]:
        # The targets the generator (and its construction-time probe) may pose for `numbers`.
        low, high = self.target_range
        shortcuts = _fixed_form_values(numbers) if self.exclude_fixed_forms else frozenset()
        return sorted(
            int(v)
            for v in values
            if v.denominator == 1
            and low <= v <= high
            and v not in shortcuts
            and self._split_of(numbers, v) == self.split
        )

    def _split_of(self, numbers: Sequence[int], target: int | Fraction) -> str:
        return split_of(numbers, int(target), self.validation_percent)

    def _generate(self, index: int) -> CountdownItem:
        # TinyZero-like: draw the numbers, then a target among the integers they can reach
        # (so every item is solvable), keeping only targets whose problem hashes to our split.
        rng = random.Random(f"rrr-countdown:{self.seed}:{self.split}:{index}")
        count = rng.randint(*self.num_count)  # before the loop, so counts stay uniform
        for _ in range(MAX_DRAWS):
            numbers = tuple(rng.randint(*self.number_range) for _ in range(count))
            solutions = reachable(numbers)
            targets = self._targets(numbers, solutions)
            if targets:
                target = rng.choice(targets)
                item_id = f"countdown-{self.split}-{self.seed}-{index}"
                return CountdownItem(item_id, numbers, target, solutions[Fraction(target)])
        raise ValueError(
            f"no solvable Countdown item in {MAX_DRAWS} draws with num_count={self.num_count}, "
            f"number_range={self.number_range}, target_range={self.target_range}; widen the ranges"
        )

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int) -> CountdownItem:
        index = check_index(index, self._size)
        if self._items is not None:
            return self._items[index]
        item = self._cache.get(index)
        if item is None:
            item = self._generate(index)
            if len(self._cache) < MAX_CACHED_ITEMS:
                self._cache[index] = item
        return item

    def item_id(self, item: CountdownItem) -> str:
        return item.id

    def problem_key(self, item: CountdownItem) -> str:
        """The sorted numbers and the target: the numbers in another order pose one problem."""
        return json.dumps([sorted(item.numbers), item.target])

    def prompt(self, item: CountdownItem) -> list[Message]:
        user = USER_TEMPLATE.format(numbers=list(item.numbers), target=item.target)
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def verify(self, item: CountdownItem, response: str) -> Verdict:
        return countdown_verifier.verify(response, item.numbers, item.target)


_OFFLINE_HINT = (
    "Offline, use the generator (data=None, the default), the bundled TinyZero test set "
    "(data=rrr_env.data.COUNTDOWN_TINYZERO_TEST) or a local JSON / JSONL file (data='<path>')."
)


def _fixed_form_values(numbers: Sequence[int]) -> frozenset[Fraction]:
    """The values of the 16 fixed forms of ``numbers`` (see :mod:`rrr_env.shortcuts`)."""
    values = (
        countdown_fold_value(numbers, operator, order)
        for operator in COUNTDOWN_OPERATORS
        for order in COUNTDOWN_ORDERS
    )
    return frozenset(v for v in values if v is not None)


def _source_label(data: Any) -> str:
    # Prefix of item ids: "jsonl-<row>" for files, "hub-<row>" for hub ids, "data-<row>" else.
    if rrr_data.is_path_like(data):
        return "jsonl"
    return "hub" if isinstance(data, str) else "data"


def _is_bundled(data: Any) -> bool:
    if not rrr_data.is_path_like(data):
        return False
    try:
        return Path(data).resolve() == rrr_data.COUNTDOWN_TINYZERO_TEST
    except OSError:
        return False


def _parse_row(where: str, row: Any) -> tuple[tuple[int, ...], int]:
    """The numbers and target of one row, or a ``ValueError`` naming ``where`` and the field."""
    if not isinstance(row, Mapping) or "nums" not in row or "target" not in row:
        raise ValueError(f"{where}: expected {{'nums': [int, ...], 'target': int}}, got {row!r}")
    numbers, target = row["nums"], row["target"]
    if (
        isinstance(numbers, str | bytes | Mapping)
        or not isinstance(numbers, Sequence | np.ndarray)
        or not 1 <= len(numbers) <= MAX_NUMBERS
        or not all(is_int(n) for n in numbers)
    ):
        raise ValueError(
            f"{where}: field 'nums' must be a list of 1 to {MAX_NUMBERS} ints, got {numbers!r}"
        )
    if not is_int(target):
        raise ValueError(f"{where}: field 'target' must be an int, got {target!r}")
    return tuple(int(n) for n in numbers), int(target)
