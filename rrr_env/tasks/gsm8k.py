"""GSM8K: grade-school math word problems with one numeric answer (RISE's home task)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rrr_env import data as rrr_data
from rrr_env.tasks.base import Message, Task, check_choice, check_index, check_int
from rrr_env.verdict import Verdict
from rrr_env.verifiers import math_answer

#: Appended to the question, as in RISE / Qwen-Math style prompting.
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
HUB_DATASET = "openai/gsm8k"
HUB_CONFIG = "main"
SPLITS = ("train", "test")
#: The bundled copies of the original files, by split.
BUNDLED = {"train": rrr_data.GSM8K_TRAIN, "test": rrr_data.GSM8K_TEST}

_OFFLINE_HINT = (
    "Offline, use the bundled copy (data=None, the default: the same items) or a local file "
    "or folder (data='<train.jsonl, test.jsonl, or the folder holding them>')."
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

    ## Data

    ``data=None`` (the default): the bundled copy of the original files (MIT; the same items,
    ids and order as the hub). Otherwise: a hub id (``"openai/gsm8k"``, config ``main``; needs
    ``datasets`` and the network), a folder holding ``train.jsonl`` and ``test.jsonl``
    (``.gz`` too), one JSON / JSON Lines file, or a ``datasets.Dataset`` / iterable of
    ``{"question": ..., "answer": "... #### N"}`` dicts. A malformed row raises, naming its
    file and line.

    Args:
        data: ``None`` (default): the bundled copy of the original files. Otherwise a hub
            id (``"openai/gsm8k"``), a folder holding ``train.jsonl`` and ``test.jsonl``, one
            JSON / JSON Lines file, or a ``datasets.Dataset`` / iterable of ``{"question",
            "answer"}`` dicts (see Data above).
        split: ``"train"`` (default), ``"test"``, or ``None`` for every problem (train, then
            test). A file named ``train.jsonl`` / ``test.jsonl`` must match ``split``; other
            files and iterables have no split: every split selects all their rows.
        size: Use only the first ``size`` problems (default: all).
        source: Deprecated: ``"hub"`` is ``data="openai/gsm8k"``, ``"jsonl"`` goes with
            ``path``.
        path: Deprecated: pass ``data=path``.

    ## Version History

    - v0 (``rrr/GSM8K-v0``): initial release. Since 0.1: ``data=`` (bundled copy by default,
      so it works offline; the same items as the hub); ``source=`` / ``path=`` deprecated;
      the ``RRR_GSM8K_DIR`` variable is no longer read.

    Example:
        >>> import json, tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> row = {"question": "What is 3 + 4?", "answer": "3 + 4 = <<3+4=7>>7\\n#### 7"}
        >>> _ = (folder / "test.jsonl").write_text(json.dumps(row) + "\\n")
        >>> task = GSM8KTask(split="test", data=folder)
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
        data: Any = None,
        split: str | None = "train",
        size: int | None = None,
        source: str | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        check_choice("split", split, SPLITS, optional=True, hint=" (None: every item)")
        if size is not None:
            size = check_int("size", size, minimum=1)
        data = rrr_data.deprecated_source(
            "GSM8KTask",
            data,
            source,
            path,
            {"hub": HUB_DATASET, "jsonl": None},
            f"data=None (bundled copy), data='<file or folder>' or data={HUB_DATASET!r}",
        )
        self.split = split
        self.data = data
        splits = SPLITS if split is None else (split,)
        if data is None:
            self.source, self.path = "bundled", None
            parts = [(s, rrr_data.read_file(BUNDLED[s])) for s in splits]
        elif rrr_data.is_path_like(data):
            self.source, self.path = "jsonl", rrr_data.local_path(data)
            parts = _file_parts(self.path, split)
        elif isinstance(data, str):
            self.source, self.path = "hub", None
            parts = [
                (
                    s,
                    rrr_data.read_hub(data, config=HUB_CONFIG, split=s, offline_hint=_OFFLINE_HINT),
                )
                for s in splits
            ]
        else:
            self.source, self.path = "data", None
            parts = [(split or "data", rrr_data.read_iterable(data))]
        self._items: list[GSM8KItem] = []
        for label, rows in parts:
            left = None if size is None else size - len(self._items)
            if left == 0:
                break
            self._items += _items(rows, label, left)
        if not self._items:
            raise ValueError(f"no GSM8K problems in the {split!r} split of {self._where()}")
        if size is not None and len(self._items) < size:
            raise ValueError(
                f"size={size} but the {split!r} split of {self._where()} has only "
                f"{len(self._items)} problems; pass size <= {len(self._items)} or size=None"
            )

    def _where(self) -> str:
        if self.source == "bundled":
            return "the bundled GSM8K copy"
        if self.source == "hub":
            return f"{self.data} (hub)"
        return rrr_data.describe(self.data)

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


def _split_file(folder: Path, split: str) -> Path:
    for name in (f"{split}.jsonl", f"{split}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"no {split}.jsonl in {folder}; the folder must hold train.jsonl and test.jsonl "
        "(the original GSM8K files, .gz too), or pass data= one .jsonl file"
    )


def _file_stem(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    return name.rsplit(".", 1)[0] if "." in name else name


def _file_parts(path: Path, split: str | None) -> list[tuple[str, Iterable[tuple[str, Any]]]]:
    if path.is_dir():
        splits = SPLITS if split is None else (split,)
        return [(s, rrr_data.read_file(_split_file(path, s))) for s in splits]
    if not path.is_file():
        raise FileNotFoundError(f"GSM8K data not found: {path} is neither a folder nor a file")
    stem = _file_stem(path)
    if split is not None and stem in SPLITS and stem != split:
        raise ValueError(
            f"data {path} is the {stem!r} file but split={split!r}; pass "
            f"split={stem!r} or split=None, or data= the folder that holds both files"
        )
    return [(stem, rrr_data.read_file(path))]
