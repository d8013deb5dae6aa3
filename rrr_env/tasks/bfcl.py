"""Berkeley Function Calling Leaderboard (BFCL v4) single-turn categories, judged as BFCL does.

The data comes from the ``bfcl-eval`` package (Apache-2.0), whose data files are read through
:mod:`importlib.resources`; none of its code is imported. Install it without its (large)
dependencies: ``pip install --no-deps bfcl-eval==2026.3.23``.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from rrr_env import data as rrr_data
from rrr_env.tasks.base import ArgumentTypeError, Message, check_index
from rrr_env.tasks.function_calling import ToolCallingTask, check_split, split_of
from rrr_env.verifiers.function_call import ToolCall

#: The AST-checked single-turn categories, as named in BFCL v4's file names
#: (``BFCL_v4_<category>.json``; BFCL v1-v2 called ``simple_python`` just ``simple``).
CATEGORIES = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
PACKAGE = "bfcl_eval"
INSTALL_HINT = "pip install --no-deps bfcl-eval==2026.3.23"

# BFCL's parameter types -> JSON Schema types, for chat templates.
_JSON_SCHEMA_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}
_OMIT = object()


@dataclass(frozen=True)
class BFCLItem:
    """One BFCL test case.

    Attributes:
        id: BFCL's id, e.g. ``"simple_python_0"`` or ``"live_parallel_3-0-3"``.
        category: The category it comes from.
        messages: The question's single turn (a user message, sometimes after a system one).
        functions: The function docs (``{"name", "description", "parameters"}``, BFCL types).
        ground_truth: The acceptable calls, ``{name: {param: [acceptable values]}}`` each,
            where ``""`` among the values means the parameter may be omitted.
    """

    id: str
    category: str
    messages: tuple[Message, ...]
    functions: tuple[dict[str, Any], ...]
    ground_truth: tuple[dict[str, Any], ...]


def data_files(category: str, root: str | os.PathLike[str] | None = None) -> tuple[Any, Any]:
    """The question and possible-answer files of ``category``.

    Args:
        category: One of :data:`CATEGORIES`.
        root: A folder laid out like ``bfcl_eval/data`` (``BFCL_v4_<category>.json`` and
            ``possible_answer/BFCL_v4_<category>.json``); default: the installed package's.

    Raises:
        ImportError: when ``root`` is None and ``bfcl-eval`` is not installed, with the command
            that installs it.
    """
    if root is None:
        try:
            folder: Any = importlib.resources.files(PACKAGE) / "data"
        except ModuleNotFoundError as error:
            raise ImportError(
                "the BFCL data comes from the bfcl-eval package, of which only the data files "
                "are read; install it without its dependencies (they pin numpy==1.26.4 and "
                f"add ~50 packages that rrr does not use): {INSTALL_HINT}  (or pass data= a "
                "folder laid out like bfcl_eval/data)"
            ) from error
    else:
        folder = Path(root)
    name = f"BFCL_v4_{category}.json"
    return folder / name, folder / "possible_answer" / name


def _json_lines(resource: Any) -> list[dict[str, Any]]:
    if not resource.is_file():
        raise FileNotFoundError(f"BFCL data file not found: {resource}")
    rows = []
    with resource.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{resource}:{number}: not JSON ({error.msg})") from None
    return rows


def load_category(
    category: str, root: str | os.PathLike[str] | None = None
) -> tuple[BFCLItem, ...]:
    """Every item of one category, in BFCL's order.

    The installed package's categories are cached (items are shared, do not mutate them); a
    folder's files are read on every call, so that edits to them show.

    Args:
        category: One of :data:`CATEGORIES`.
        root: A folder laid out like ``bfcl_eval/data``; default: the installed package's.

    Raises:
        ValueError: for an unknown category or inconsistent data files.
        ImportError: when ``root`` is None and ``bfcl-eval`` is not installed.
    """
    if root is None:
        return _load_package_category(category)
    return _load_category(category, root)


@cache
def _load_package_category(category: str) -> tuple[BFCLItem, ...]:
    return _load_category(category, None)


def _load_category(category: str, root: str | os.PathLike[str] | None) -> tuple[BFCLItem, ...]:
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL category {category!r}; choose from {CATEGORIES}")
    questions_file, answers_file = data_files(category, root)
    questions, answers = _json_lines(questions_file), _json_lines(answers_file)
    answer_by_id = {row["id"]: row["ground_truth"] for row in answers}
    items = []
    for row in questions:
        item_id = row["id"]
        if item_id not in answer_by_id:
            raise ValueError(f"BFCL {category}: no possible answer for {item_id}")
        if len(row["question"]) != 1:
            raise ValueError(f"BFCL {category}: {item_id} has {len(row['question'])} turns, not 1")
        functions = tuple(row["function"])
        names = {function["name"] for function in functions}
        ground_truth = tuple(answer_by_id[item_id])
        for entry in ground_truth:
            if len(entry) != 1 or next(iter(entry)) not in names:
                raise ValueError(f"BFCL {category}: {item_id} has a gold call without a doc")
        messages = tuple(Message(role=m["role"], content=m["content"]) for m in row["question"][0])
        items.append(BFCLItem(item_id, category, messages, functions, ground_truth))
    return tuple(items)


def _first_acceptable(options: Any) -> Any:
    if not isinstance(options, list):
        return options
    return next((option for option in options if option != ""), _OMIT)


def _reference_dict(answer: Mapping[str, Any]) -> dict[str, Any]:
    chosen = {key: _first_acceptable(options) for key, options in answer.items()}
    return {key: value for key, value in chosen.items() if value is not _OMIT}


def reference_calls(item: BFCLItem) -> list[ToolCall]:
    """One answer that BFCL's rules accept, built from the ground truth.

    Each parameter takes its first acceptable value other than ``""``; optional parameters
    (``""`` acceptable) are left out when they have no other value or are missing from the
    function doc, and a required parameter whose only acceptable value is ``""`` gets ``""``.
    Dict parameters (and lists of dicts) list acceptable values per key; those are resolved the
    same way. A few BFCL items contradict their own docs (a required parameter with no
    acceptable value, or a gold-only parameter that is not optional); their reference fails.
    """
    docs = {function["name"]: function for function in reversed(item.functions)}
    calls = []
    for entry in item.ground_truth:
        ((name, params),) = entry.items()
        schema = docs[name]["parameters"]
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        arguments = {}
        for param, options in params.items():
            optional = isinstance(options, list) and "" in options
            if optional and param not in properties:
                continue
            value = _first_acceptable(options)
            if value is _OMIT:
                if not (optional and param in required):
                    continue
                value = ""
            doc = properties.get(param, {})
            items = doc.get("items") or {}
            if doc.get("type") == "dict" and isinstance(value, dict):
                value = _reference_dict(value)
            elif items.get("type") == "dict" and isinstance(value, list):
                value = [_reference_dict(v) if isinstance(v, dict) else v for v in value]
            arguments[param] = value
        calls.append(ToolCall(name, arguments))
    return calls


def _to_json_schema(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                _JSON_SCHEMA_TYPES.get(value, value)
                if key == "type" and isinstance(value, str)
                else _to_json_schema(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_to_json_schema(value) for value in node]
    return node


def bfcl_tool_schema(function: Mapping[str, Any]) -> dict[str, Any]:
    """A BFCL function doc as a chat-template tool, its types mapped to JSON Schema.

    ``dict`` -> ``object``, ``float`` -> ``number``, ``tuple`` -> ``array``, ``any`` ->
    ``string`` (as BFCL does for OpenAI-style tools); the name is kept, dots included.

    >>> tool = bfcl_tool_schema({"name": "math.hypot", "description": "d", "parameters": {
    ...     "type": "dict", "properties": {"x": {"type": "float"}}, "required": ["x"]}})
    >>> tool["function"]["name"], tool["function"]["parameters"]
    ('math.hypot', {'type': 'object', 'properties': {'x': {'type': 'number'}}, 'required': ['x']})
    """
    return {"type": "function", "function": _to_json_schema(copy.deepcopy(dict(function)))}


def _check_categories(category: Any) -> tuple[str, ...]:
    chosen = (category,) if isinstance(category, str) else category
    if not isinstance(chosen, Sequence) or not all(isinstance(c, str) for c in chosen):
        raise ArgumentTypeError(
            f"category must be a name or a non-empty list of names, got {category!r}"
        )
    if not chosen:
        raise ValueError("category must be a name or a non-empty list of names, got none")
    unknown = [c for c in chosen if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown BFCL categories {unknown}; choose from {CATEGORIES}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"category lists a name twice: {list(chosen)}")
    return tuple(chosen)


class BFCLTask(ToolCallingTask):
    """BFCL v4's single-turn Python categories, judged by BFCL's AST rules.

    A response is correct iff each gold call is matched by one predicted call (any order),
    with the same count, every required parameter, no parameter that is undocumented or absent
    from the gold answer, every gold parameter that is not optional, and acceptable values by
    BFCL's type rules (an ``integer`` parameter given ``10.0`` is wrong, a ``float`` one accepts
    ``10``; strings compare ignoring case and `` ,./-_*^``). See
    :mod:`rrr_env.verifiers.function_call`. Function names must be given as in the docs (dots
    included), as BFCL requires of models that are shown dotted names.

    Args:
        data: ``None`` (default): the data files of the installed ``bfcl-eval`` package.
            Otherwise a folder laid out like ``bfcl_eval/data`` (``BFCL_v4_<category>.json``
            and ``possible_answer/BFCL_v4_<category>.json``, JSON lines), e.g. another BFCL
            release. BFCL items need both files, so rows, datasets and hub ids do not apply.
        category: One name or a list of names from :data:`CATEGORIES`; default all eight.
        split: ``"train"`` or ``"test"`` (80% / 20% by a SHA-256 of the BFCL id, so disjoint
            and stable), or ``None`` for every item (default).
        prompt_style: ``"qwen"`` (default): the system prompt lists the function docs in
            ``<tools></tools>`` and asks for ``<tool_call>`` blocks (an item's own system
            message replaces "You are a helpful assistant.", as in Qwen's template); the retry
            repeats the system prompt and the query. ``"llama"``: Llama 3.1's JSON tool prompt;
            the retry repeats the query. ``"chat_template"``: the item's messages alone, with
            the tools (JSON Schema) in ``info["tools"]``.
        format: ``"strict"`` (default) accepts only the answer format the prompt style asks
            for; ``"lenient"`` also accepts fenced or bare JSON and either argument key. Strict
            verdicts record the lenient judgement in ``details["lenient_correct"]``.

    Example:
        >>> task = BFCLTask(category="simple_python", split="test")
        >>> item = task[0]
        >>> task.verify(item, "I would call a function.").reason
        'format_error'
        >>> from rrr_env.verifiers.function_call import render_calls
        >>> task.verify(item, render_calls(reference_calls(item))).reason
        'ok'
    """

    name: ClassVar[str] = "bfcl"
    mode: ClassVar[str] = "bfcl"

    def __init__(
        self,
        *,
        data: str | os.PathLike[str] | None = None,
        category: str | Sequence[str] = CATEGORIES,
        split: str | None = None,
        prompt_style: str = "qwen",
        format: str = "strict",
    ) -> None:
        super().__init__(prompt_style=prompt_style, format=format)
        takes = (
            "BFCL's data= takes None (the bfcl-eval package's files) or a folder laid out "
            "like bfcl_eval/data (BFCL_v4_<category>.json and possible_answer/)"
        )
        if data is not None and not isinstance(data, str | os.PathLike):
            raise ArgumentTypeError(f"{takes}, got {type(data).__name__} {data!r}")
        if data is not None and not rrr_data.local_path(data).is_dir():
            if rrr_data.is_path_like(data) and not rrr_data.local_path(data).exists():
                raise FileNotFoundError(f"BFCL data folder not found: {data} ({takes})")
            raise ValueError(f"{takes}, got {data!r}")
        self.data = None if data is None else str(rrr_data.local_path(data).resolve())
        self.categories = _check_categories(category)
        self.split = check_split(split)
        self._items = [
            item
            for name in self.categories
            for item in load_category(name, self.data)
            if split is None or split_of(item.id) == split
        ]
        if not self._items:
            raise ValueError(f"no BFCL items in {self.categories} for split {split!r}")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> BFCLItem:
        return self._items[check_index(index, len(self._items))]

    def item_id(self, item: BFCLItem) -> str:
        return item.id

    def messages(self, item: BFCLItem) -> list[Message]:
        return [Message(role=m["role"], content=m["content"]) for m in item.messages]

    def functions(self, item: BFCLItem) -> list[dict[str, Any]]:
        return list(item.functions)

    def gold(self, item: BFCLItem) -> list[dict[str, Any]]:
        return list(item.ground_truth)

    def tool_schemas(self, item: BFCLItem) -> list[dict[str, Any]]:
        return [bfcl_tool_schema(function) for function in item.functions]


__all__ = [
    "CATEGORIES",
    "BFCLItem",
    "BFCLTask",
    "bfcl_tool_schema",
    "load_category",
    "reference_calls",
]
