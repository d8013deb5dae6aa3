"""Countdown: combine the given numbers with + - * / to reach the target (TinyZero's task)."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rrr_env.tasks.base import Message, Task, check_index
from rrr_env.tasks.countdown_solver import reachable
from rrr_env.verdict import Verdict
from rrr_env.verifiers import countdown as countdown_verifier

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
USER_TEMPLATE = (
    "Using the numbers {numbers}, create an equation that equals {target}. You can use basic "
    "arithmetic operations (+, -, *, /) and each number can only be used once. "
    "Please reason step by step, and put your final answer within \\boxed{{}}."
)
HUB_DATASET = "Jiayi-Pan/Countdown-Tasks-3to4"
SOURCES = ("generator", "jsonl", "hub")
SPLITS = ("train", "test")
#: Share of all (numbers, target) keys that belong to the test split.
TEST_SHARE_PERCENT = 10
DEFAULT_SIZES = {"train": 10_000, "test": 1_000}
MAX_CACHED_ITEMS = 100_000  # generated items kept in memory (a few hundred bytes each)
MAX_DRAWS = 10_000  # per generated item, before concluding the configuration is infeasible


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


def split_of(numbers: Sequence[int], target: int) -> str:
    """``"train"`` or ``"test"``: a stable hash of the sorted numbers and the target.

    The split is a function of the problem itself, so train and test never share a problem,
    whatever the seeds or sizes.
    """
    key = json.dumps([sorted(int(n) for n in numbers), int(target)]).encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 100
    return "test" if bucket < TEST_SHARE_PERCENT else "train"


def _int_range(name: str, value: Any, lowest: int, highest: int) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"{name} must be an int or a (low, high) pair of ints, got {value!r}")
    low, high = value
    if not lowest <= low <= high <= highest:
        raise ValueError(f"{name} must satisfy {lowest} <= low <= high <= {highest}, got {value!r}")
    return int(low), int(high)


class CountdownTask(Task):
    """Countdown with a seeded generator of solvable items or a file / hub dataset.

    Args:
        split: ``"train"`` or ``"test"`` (disjoint by construction), or ``None`` for every
            item of a file / hub dataset (and ``"train"`` for the generator).
        source: ``"generator"`` (TinyZero's distribution, every item proved solvable),
            ``"jsonl"`` (a file of ``{"nums": [...], "target": T}`` lines, e.g. TinyZero's
            test set) or ``"hub"`` (``Jiayi-Pan/Countdown-Tasks-3to4`` via ``datasets``).
        path: The JSONL file, for ``source="jsonl"``.
        size: Number of items (generator default 10,000 train / 1,000 test; files: all).
        num_count: How many numbers per item: an int or an inclusive ``(low, high)``; 2..5.
        number_range: Inclusive range of the numbers (TinyZero: 1..99).
        target_range: Inclusive range of the target (TinyZero: 10..100).
        seed: Generator seed; item ``i`` depends only on the seed, the split and ``i``.
    """

    name: ClassVar[str] = "countdown"
    reasons: ClassVar[tuple[str, ...]] = countdown_verifier.REASONS

    def __init__(
        self,
        *,
        split: str | None = None,
        source: str = "generator",
        path: str | Path | None = None,
        size: int | None = None,
        num_count: int | tuple[int, int] = (3, 4),
        number_range: tuple[int, int] = (1, 99),
        target_range: tuple[int, int] = (10, 100),
        seed: int = 0,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"size must be a positive int or None, got {size!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if (path is None) != (source != "jsonl"):
            raise ValueError("path is required with source='jsonl' and only allowed with it")
        self.source = source
        self.split = split
        self.seed = seed
        self.num_count = _int_range("num_count", num_count, 2, 5)
        self.number_range = _int_range("number_range", number_range, 0, 10_000)
        self.target_range = _int_range("target_range", target_range, -1_000_000, 1_000_000)
        self._items: list[CountdownItem] | None = None
        if source == "generator":
            self.split = split or "train"
            self._size = size or DEFAULT_SIZES[self.split]
            self._cache: dict[int, CountdownItem] = {}
            self[0]  # fail now, with a clear message, if the ranges admit no solvable item
        else:
            rows = _read_jsonl(Path(path)) if source == "jsonl" else _read_hub()
            self._items = self._items_from_rows(rows, size)
            self._size = len(self._items)
            if not self._items:
                raise ValueError(f"no Countdown items in {source} data for split {split!r}")

    def _items_from_rows(self, rows: list[dict[str, Any]], size: int | None) -> list[CountdownItem]:
        items = []
        for line, row in enumerate(rows):
            try:
                numbers = tuple(int(n) for n in row["nums"])
                target = int(row["target"])
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"row {line}: expected {{'nums': [...], 'target': int}}"
                ) from error
            if self.split is not None and split_of(numbers, target) != self.split:
                continue
            items.append(CountdownItem(f"{self.source}-{line}", numbers, target))
            if size is not None and len(items) == size:
                break
        return items

    def _generate(self, index: int) -> CountdownItem:
        # TinyZero-like: draw the numbers, then a target among the integers they can reach
        # (so every item is solvable), keeping only targets whose problem hashes to our split.
        rng = random.Random(f"rrr-countdown:{self.seed}:{self.split}:{index}")
        low, high = self.target_range
        count = rng.randint(*self.num_count)  # before the loop, so counts stay uniform
        for _ in range(MAX_DRAWS):
            numbers = tuple(rng.randint(*self.number_range) for _ in range(count))
            solutions = {
                int(value): expression
                for value, expression in reachable(numbers).items()
                if value.denominator == 1 and low <= value <= high
            }
            targets = sorted(t for t in solutions if split_of(numbers, t) == self.split)
            if targets:
                target = rng.choice(targets)
                item_id = f"countdown-{self.split}-{self.seed}-{index}"
                return CountdownItem(item_id, numbers, target, solutions[target])
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

    def prompt(self, item: CountdownItem) -> list[Message]:
        user = USER_TEMPLATE.format(numbers=list(item.numbers), target=item.target)
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def verify(self, item: CountdownItem, response: str) -> Verdict:
        return countdown_verifier.verify(response, item.numbers, item.target)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"Countdown data file not found: {path}")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _read_hub() -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            "source='hub' needs the datasets package: pip install datasets"
        ) from error
    return list(datasets.load_dataset(HUB_DATASET, split="train"))
