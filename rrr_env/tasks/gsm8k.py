"""GSM8K: grade-school math word problems with one numeric answer (RISE's home task)."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rrr_env.tasks.base import Message, Task, check_index
from rrr_env.verdict import Verdict
from rrr_env.verifiers import math_answer

#: Appended to the question, as in RISE / Qwen-Math style prompting.
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
HUB_DATASET = "openai/gsm8k"
HUB_CONFIG = "main"
SPLITS = ("train", "test")
SOURCES = ("hub", "jsonl")
#: Environment variable naming a folder with ``train.jsonl`` / ``test.jsonl`` (or one file),
#: used when neither ``source`` nor ``path`` is given, so that ``gym.make("rrr/GSM8K-v0")``
#: runs offline.
DIR_ENV_VAR = "RRR_GSM8K_DIR"

_HOW_TO_GO_LOCAL = (
    "To use local files instead, pass source='jsonl', path='<folder with train.jsonl and "
    "test.jsonl, or one .jsonl file>' (e.g. gym.make('rrr/GSM8K-v0', source='jsonl', "
    f"path=...)), or set the environment variable {DIR_ENV_VAR} to that folder."
)


@dataclass(frozen=True)
class GSM8KItem:
    """One GSM8K problem.

    Attributes:
        id: Stable identifier, ``gsm8k-<split>-<row>`` (the row within the split, from 0;
            for a file not named after a split, its stem replaces ``<split>``).
        question: The word problem.
        solution: The reference worked solution, ending in ``#### <answer>``.
        gold: The final answer, the text after ``####`` (e.g. ``"1,080"``).
    """

    id: str
    question: str
    solution: str
    gold: str


class GSM8KTask(Task):
    """GSM8K word problems, verified by their final number.

    ## Description

    Each item is a question of `openai/gsm8k <https://huggingface.co/datasets/openai/gsm8k>`_
    (config ``main``): 7,473 train and 1,319 test problems, in the dataset's order.

    ## Prompt

    One user turn: the question, a newline, then "Please reason step by step, and put your
    final answer within \\boxed{}." There is no system message, so chat templates without a
    system role work and the instruction is repeated whenever the task is posed again.

    ## Verification

    :func:`rrr_env.verifiers.math_answer.verify`: the last non-empty ``\\boxed{}`` (else the
    last number), compared exactly as a rational with the gold answer. Reasons: ``ok``,
    ``no_answer``, ``unparsable``, ``wrong_answer``.

    ## Data source

    With ``source=None`` (the default): ``path`` if given, else the folder or file in the
    environment variable ``RRR_GSM8K_DIR`` if set, else the Hugging Face hub (needs the
    ``datasets`` package and network access). ``source="jsonl"`` without ``path`` also reads
    ``RRR_GSM8K_DIR``. A JSONL file has one ``{"question": ..., "answer": "... #### N"}``
    object per line, like the original ``train.jsonl`` / ``test.jsonl``.

    Args:
        split: ``"train"`` (default) or ``"test"``.
        source: ``"hub"``, ``"jsonl"``, or ``None`` to decide as described above.
        path: A folder holding ``train.jsonl`` and ``test.jsonl``, or one JSONL file (a file
            named ``train.jsonl`` / ``test.jsonl`` must match ``split``). Only with
            ``source="jsonl"`` or ``None``.
        size: Use only the first ``size`` problems of the split (default: all).

    ## Version History

    - v0 (``rrr/GSM8K-v0``): initial release.

    Example:
        >>> import json, tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> row = {"question": "What is 3 + 4?", "answer": "3 + 4 = <<3+4=7>>7\\n#### 7"}
        >>> _ = (folder / "test.jsonl").write_text(json.dumps(row) + "\\n")
        >>> task = GSM8KTask(split="test", source="jsonl", path=folder)
        >>> len(task), task[0].id, task[0].gold
        (1, 'gsm8k-test-0', '7')
        >>> task.verify(task[0], "3 + 4 = 7, so the answer is \\\\boxed{7}.").reason
        'ok'
    """

    name: ClassVar[str] = "gsm8k"
    reasons: ClassVar[tuple[str, ...]] = math_answer.REASONS

    def __init__(
        self,
        *,
        split: str = "train",
        source: str | None = None,
        path: str | os.PathLike[str] | None = None,
        size: int | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if source is not None and source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES} or None (automatic), got {source!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"size must be a positive int or None (all items), got {size!r}")
        if path is not None and not isinstance(path, str | os.PathLike):
            raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        if source == "hub" and path is not None:
            raise ValueError("path is only allowed with source='jsonl' (or source=None)")
        if path is None and source in (None, "jsonl"):
            path = os.environ.get(DIR_ENV_VAR) or None
            if path is None and source == "jsonl":
                raise ValueError(
                    f"source='jsonl' needs path='<folder with train.jsonl and test.jsonl, or one "
                    f".jsonl file>' or the environment variable {DIR_ENV_VAR} set to that folder"
                )
        self.split = split
        self.source = "hub" if path is None else "jsonl"
        self.path = None if path is None else Path(path)
        if self.path is None:
            rows, label = _hub_rows(split), split
        else:
            rows = _jsonl_rows(self.path, split)
            label = split if self.path.is_dir() or self.path.stem in SPLITS else self.path.stem
        self._items = _items(rows, label, size)
        if not self._items:
            raise ValueError(f"no GSM8K problems in the {split!r} split of {self._where()}")
        if size is not None and len(self._items) < size:
            raise ValueError(
                f"size={size} but the {split!r} split of {self._where()} has only "
                f"{len(self._items)} problems; pass size <= {len(self._items)} or size=None"
            )

    def _where(self) -> str:
        return f"{HUB_DATASET} (hub)" if self.path is None else str(self.path)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> GSM8KItem:
        return self._items[check_index(index, len(self._items))]

    def item_id(self, item: GSM8KItem) -> str:
        return item.id

    def prompt(self, item: GSM8KItem) -> list[Message]:
        return [{"role": "user", "content": f"{item.question}\n{INSTRUCTION}"}]

    def verify(self, item: GSM8KItem, response: str) -> Verdict:
        return math_answer.verify(response, item.gold)


def _items(rows: Iterable[tuple[str, Any]], label: str, size: int | None) -> list[GSM8KItem]:
    """Validate ``(where, row)`` pairs into items ``gsm8k-<label>-<row>``, stopping at ``size``."""
    items = []
    for index, (where, row) in enumerate(itertools.islice(rows, size)):
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("question"), str)
            or not isinstance(row.get("answer"), str)
        ):
            raise ValueError(f"{where}: expected {{'question': str, 'answer': '... #### N'}}")
        try:
            gold = math_answer.gold_answer(row["answer"])
            math_answer.parse_answer(gold)
        except ValueError as error:
            raise ValueError(f"{where}: no numeric answer after '####': {error}") from None
        items.append(GSM8KItem(f"gsm8k-{label}-{index}", row["question"], row["answer"], gold))
    return items


def _jsonl_rows(path: Path, split: str) -> Iterable[tuple[str, Any]]:
    if path.is_dir():
        folder, path = path, path / f"{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(
                f"no {path.name} in {folder}; the folder must hold train.jsonl and test.jsonl "
                "(the original GSM8K files), or pass path= one .jsonl file"
            )
    elif not path.is_file():
        raise FileNotFoundError(f"GSM8K data not found: {path} is neither a folder nor a file")
    elif path.stem in SPLITS and path.stem != split:
        raise ValueError(
            f"path {path} is the {path.stem!r} file but split={split!r}; pass "
            f"split={path.stem!r}, or path= the folder that holds both files"
        )
    return _read_jsonl(path)


def _read_jsonl(path: Path) -> Iterable[tuple[str, Any]]:
    # A generator, so that size=N reads only the first N lines.
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not JSON ({error})") from None
            yield f"{path}:{number}", row


def _hub_rows(split: str) -> Iterable[tuple[str, Any]]:
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            f"loading GSM8K from the Hugging Face hub needs the datasets package "
            f"(pip install datasets). {_HOW_TO_GO_LOCAL}"
        ) from error
    try:
        dataset = datasets.load_dataset(HUB_DATASET, HUB_CONFIG, split=split)
    except Exception as error:  # network, cache and hub errors have no common base class
        raise RuntimeError(
            f"could not load {HUB_DATASET} (config {HUB_CONFIG!r}, split {split!r}) from the "
            f"Hugging Face hub: {type(error).__name__}: {error}. {_HOW_TO_GO_LOCAL}"
        ) from error
    return ((f"{HUB_DATASET}[{split}][{i}]", row) for i, row in enumerate(dataset))
