"""Function calling on APIGen / xLAM data (the RRR paper's second task), and the shared prompts.

:class:`ToolCallingTask` holds what every function-calling task shares: the paper's prompt
styles (appendix A.1), the reflection request and the wiring to
:mod:`rrr_env.verifiers.function_call`. :class:`FunctionCallingTask` serves xLAM-format records;
:class:`rrr_env.tasks.bfcl.BFCLTask` serves the Berkeley Function Calling Leaderboard.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rrr_env import data as rrr_data
from rrr_env.tasks.base import (
    Message,
    Task,
    caller_stacklevel,
    check_choice,
    check_index,
    is_int,
)
from rrr_env.verdict import Verdict
from rrr_env.verifiers import function_call

PROMPT_STYLES = function_call.STYLES
FORMATS = function_call.FORMATS
SPLITS = ("train", "test")
#: Share of item ids that belong to the test split.
TEST_SHARE_PERCENT = 20
HUB_DATASET = "Salesforce/xlam-function-calling-60k"

QWEN_SYSTEM = "You are a helpful assistant."
QWEN_TOOLS_TEMPLATE = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)
LLAMA_SYSTEM = (
    "When you receive a tool call response, use the output to format an answer to the original "
    "user question. You are a helpful assistant with tool calling capabilities."
)
LLAMA_USER_TEMPLATE = (
    "Given the following functions, please respond with a JSON for a function call with its "
    "proper arguments that best answers the given prompt.\n\n"
    'Respond in the format {{"name": function name, "parameters": dictionary of argument name '
    "and its value}}. Do not use variables.\n\n{tools}\n\nQuestion: {query}"
)
REFLECTION_REQUEST = (
    "You tried performing the task, but failed in generating the correct tool call. Reflect on "
    "what went wrong and write a short explanation that will help you do better next time."
)


def _message(role: str, content: str) -> Message:
    return {"role": role, "content": content}


def split_of(item_id: str) -> str:
    """``"train"`` or ``"test"``: a stable hash (SHA-256) of the item id, 20% test.

    >>> split_of("simple_python_0") in ("train", "test")
    True
    """
    bucket = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big") % 100
    return "test" if bucket < TEST_SHARE_PERCENT else "train"


def check_split(split: Any) -> str | None:
    """Return ``split`` if it is ``"train"``, ``"test"`` or ``None``; raise otherwise.

    Raises:
        ArgumentTypeError: (a ``TypeError``) for a value that is not a str nor None.
        ValueError: for another str.
    """
    return check_choice("split", split, SPLITS, optional=True, hint=" (None: every item)")


class ToolCallingTask(Task):
    """The prompts, reflection request and verification shared by function-calling tasks.

    Subclasses set :attr:`mode` and implement :meth:`messages` (the item's own turn),
    :meth:`functions` (the tool docs shown in the prompt), :meth:`gold` and
    :meth:`tool_schemas` (the tools for a chat template).

    Args:
        prompt_style: ``"qwen"``, ``"llama"`` or ``"chat_template"`` (see the subclasses).
        format: ``"strict"`` accepts only the answer format the prompt style asks for;
            ``"lenient"`` also fenced / bare JSON and either argument key.
    """

    reasons: ClassVar[tuple[str, ...]] = function_call.REASONS
    reflection_request: ClassVar[str] = REFLECTION_REQUEST
    #: The verifier's judgement: ``"exact"`` or ``"bfcl"``.
    mode: ClassVar[str]

    def __init__(self, *, prompt_style: str = "qwen", format: str = "strict") -> None:
        check_choice("prompt_style", prompt_style, PROMPT_STYLES)
        check_choice(
            "format",
            format,
            FORMATS,
            hint="; 'strict' accepts only the format the prompt asks for, 'lenient' also fenced "
            "or bare JSON",
        )
        self.prompt_style = prompt_style
        self.format = format

    # -- what subclasses provide ---------------------------------------------------------

    @abc.abstractmethod
    def messages(self, item: Any) -> list[Message]:
        """The item's own turn (its system message, if any, and the query), as fresh dicts."""

    @abc.abstractmethod
    def functions(self, item: Any) -> list[dict[str, Any]]:
        """The tool docs of ``item``, as the dataset writes them (shown in text prompts)."""

    @abc.abstractmethod
    def gold(self, item: Any) -> list[Any]:
        """The gold answer of ``item``, in the verifier's ``mode``."""

    @abc.abstractmethod
    def tool_schemas(self, item: Any) -> list[dict[str, Any]]:
        """The tools of ``item`` as chat templates take them (``{"type": "function", ...}``)."""

    # -- Task API ------------------------------------------------------------------------

    def prompt(self, item: Any) -> list[Message]:
        own = self.messages(item)
        if self.prompt_style == "chat_template":
            return own
        system = "\n\n".join(m["content"] for m in own if m["role"] == "system")
        turn = [m for m in own if m["role"] != "system"]
        docs = self.functions(item)
        if self.prompt_style == "qwen":
            # Like Qwen's chat template: the item's own system text replaces the default one.
            tools = "\n".join(json.dumps(doc, ensure_ascii=False) for doc in docs)
            content = (system or QWEN_SYSTEM) + QWEN_TOOLS_TEMPLATE.format(tools=tools)
            return [_message("system", content), *turn]
        tools = "\n\n".join(json.dumps(doc, indent=4, ensure_ascii=False) for doc in docs)
        first = next((i for i, m in enumerate(turn) if m["role"] == "user"), None)
        if first is not None:
            query = turn[first]["content"]
            turn[first] = _message("user", LLAMA_USER_TEMPLATE.format(tools=tools, query=query))
        content = LLAMA_SYSTEM + (f"\n\n{system}" if system else "")
        return [_message("system", content), *turn]

    def retry_prompt(self, item: Any) -> list[Message]:
        """``qwen`` repeats the system prompt and the query; the other styles only the query."""
        if self.prompt_style == "qwen":
            return self.prompt(item)
        return [m for m in self.messages(item) if m["role"] != "system"]

    def tools(self, item: Any) -> list[dict[str, Any]] | None:
        """The tool schemas with ``prompt_style="chat_template"``, else ``None``."""
        return self.tool_schemas(item) if self.prompt_style == "chat_template" else None

    def verify(self, item: Any, response: str) -> Verdict:
        return function_call.verify(
            response,
            self.gold(item),
            mode=self.mode,
            tools=self.functions(item) if self.mode == "bfcl" else None,
            format=self.format,
            style=self.prompt_style,
        )


# -- xLAM ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XLAMItem:
    """One APIGen / xLAM record.

    Attributes:
        id: Stable identifier (``xlam-<record id>``).
        query: The user's request.
        tools: The available tools, ``{"name", "description", "parameters": {param: {...}}}``.
        answers: The gold calls, ``{"name", "arguments"}`` each (several = parallel calls).
    """

    id: str
    query: str
    tools: tuple[dict[str, Any], ...]
    answers: tuple[dict[str, Any], ...]


def _xlam_json_type(declared: str) -> str:
    """JSON Schema type of an xLAM type string (``"List[int]"`` -> ``"array"``)."""
    base = declared.split(",")[0].strip().lower()
    if base.startswith(("list", "tuple", "set", "array", "sequence")):
        return "array"
    if base.startswith(("dict", "object", "mapping")):
        return "object"
    return {
        "int": "integer",
        "integer": "integer",
        "float": "number",
        "number": "number",
        "double": "number",
        "bool": "boolean",
        "boolean": "boolean",
    }.get(base, "string")


def xlam_tool_schema(tool: Mapping[str, Any]) -> dict[str, Any]:
    """An xLAM tool as a chat-template tool with a JSON Schema for its parameters.

    A parameter is required unless its type says ``optional``.

    >>> schema = xlam_tool_schema({"name": "f", "description": "d", "parameters": {
    ...     "n": {"description": "count", "type": "int"},
    ...     "tags": {"description": "t", "type": "List[str], optional", "default": []}}})
    >>> parameters = schema["function"]["parameters"]
    >>> parameters["required"], parameters["properties"]["tags"]["type"]
    (['n'], 'array')
    """
    parameters = tool.get("parameters") or {}
    if parameters.get("type") == "object" and isinstance(parameters.get("properties"), dict):
        schema = dict(parameters)  # already JSON Schema
    else:
        properties: dict[str, Any] = {}
        required = []
        for name, spec in parameters.items():
            spec = spec if isinstance(spec, dict) else {}
            declared = str(spec.get("type", ""))
            prop: dict[str, Any] = {"type": _xlam_json_type(declared)}
            if "description" in spec:
                prop["description"] = spec["description"]
            if "default" in spec:
                prop["default"] = spec["default"]
            properties[name] = prop
            if "optional" not in declared.lower():
                required.append(name)
        schema = {"type": "object", "properties": properties, "required": required}
    function = {
        "name": tool["name"],
        "description": tool.get("description", ""),
        "parameters": schema,
    }
    return {"type": "function", "function": function}


class FunctionCallingTask(ToolCallingTask):
    """APIGen / xLAM function calling, judged by exact match (the RRR paper).

    A response is correct iff its calls equal the record's answer calls as a multiset: same
    names, same argument names and values (numbers by value, strings exactly), parallel calls
    in any order. Reasons: ``ok``, ``format_error``, ``wrong_tool``, ``wrong_arguments``,
    ``wrong_values``, ``wrong_count``.

    Args:
        data: The records ``{"id", "query", "tools", "answers"}`` (``tools`` and ``answers``
            as JSON strings or lists): a path to a ``.json`` file (a list of records or JSON
            lines) or a ``.jsonl`` file (``.gz`` too), a ``datasets.Dataset`` or any iterable
            of such dicts,
            or a hub id such as ``"Salesforce/xlam-function-calling-60k"`` (gated; needs the
            ``datasets`` package and hub access). Required. A malformed record raises, naming
            its file and line; duplicate ids raise; records without gold calls are left out
            with one warning.
        split: ``"train"`` or ``"test"`` (80% / 20% by a SHA-256 of the item id, so disjoint
            and stable), or ``None`` for every record (default).
        prompt_style: ``"qwen"`` (default): the system prompt lists the tools in
            ``<tools></tools>`` and asks for ``<tool_call>`` blocks; the retry repeats the
            system prompt and the query. ``"llama"``: Llama 3.1's JSON tool prompt (tools in
            the user turn, ``{"name", "parameters"}`` answers); the retry repeats the query.
            ``"chat_template"``: the query alone, with the tools in ``info["tools"]`` for
            ``tokenizer.apply_chat_template(..., tools=...)``.
        format: ``"strict"`` (default) accepts only the answer format the prompt style asks
            for; ``"lenient"`` also accepts fenced or bare JSON and either argument key. Strict
            verdicts record the lenient judgement in ``details["lenient_correct"]``.
    """

    name: ClassVar[str] = "function_calling"
    mode: ClassVar[str] = "exact"

    def __init__(
        self,
        *,
        data: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | None = None,
        split: str | None = None,
        prompt_style: str = "qwen",
        format: str = "strict",
    ) -> None:
        super().__init__(prompt_style=prompt_style, format=format)
        self.split = check_split(split)
        if data is None:
            raise ValueError(
                "data is required: a path to xLAM-format JSON / JSONL records, a "
                f"datasets.Dataset, or the hub id {HUB_DATASET!r} (gated: accept its terms on "
                "the hub, then pip install datasets)"
            )
        rows = rrr_data.records(data, hub_split="train", offline_hint=_OFFLINE_HINT)
        items, unanswered, seen = [], [], {}
        for line, (where, row) in enumerate(rows):
            item = _xlam_item(row, line, where)
            if item.id in seen:
                raise ValueError(
                    f"record {line} ({where}): duplicate id {item.id!r}, first at {seen[item.id]}"
                )
            seen[item.id] = where
            if not item.answers:
                unanswered.append(where)
            elif split is None or split_of(item.id) == split:
                items.append(item)
        if unanswered:
            warnings.warn(
                f"left out {len(unanswered)} xLAM record(s) of {rrr_data.describe(data)} with no "
                f"gold call, which no response can match (first: {unanswered[0]})",
                stacklevel=caller_stacklevel(),
            )
        if not items:
            raise ValueError(f"no xLAM records in {rrr_data.describe(data)} for split {split!r}")
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> XLAMItem:
        return self._items[check_index(index, len(self._items))]

    def item_id(self, item: XLAMItem) -> str:
        return item.id

    def messages(self, item: XLAMItem) -> list[Message]:
        return [_message("user", item.query)]

    def functions(self, item: XLAMItem) -> list[dict[str, Any]]:
        return list(item.tools)

    def gold(self, item: XLAMItem) -> list[dict[str, Any]]:
        return list(item.answers)

    def tool_schemas(self, item: XLAMItem) -> list[dict[str, Any]]:
        return [xlam_tool_schema(tool) for tool in item.tools]


_OFFLINE_HINT = (
    "Offline, pass data= a local copy: a JSON / JSONL file of xLAM records, a datasets.Dataset "
    "or a list of dicts (tests/fixtures/xlam_sample.jsonl in the repository is a small sample)."
)


def _json_field(row: Mapping[str, Any], key: str, at: str) -> list[Any]:
    value = row.get(key)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as error:
            raise ValueError(f"{at}: field {key!r} is not valid JSON ({error})") from None
    if not isinstance(value, list):
        raise ValueError(f"{at}: field {key!r} must be a JSON list, got {type(value).__name__}")
    return value


def _xlam_item(row: Any, line: int, where: str) -> XLAMItem:
    at = f"record {line} ({where})"
    if not isinstance(row, Mapping):
        raise ValueError(f"{at}: expected a dict, got {type(row).__name__}")
    query = row.get("query")
    if not isinstance(query, str):
        raise ValueError(f'{at}: expected {{"query": str, "tools": ..., "answers": ...}}')
    tools = _json_field(row, "tools", at)
    answers = _json_field(row, "answers", at)
    for tool in tools:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise ValueError(f'{at}: field "tools": every tool needs a "name"')
    for answer in answers:
        if (
            not isinstance(answer, dict)
            or not isinstance(answer.get("name"), str)
            or not isinstance(answer.get("arguments"), dict)
        ):
            raise ValueError(
                f'{at}: field "answers": each is {{"name": str, "arguments": {{...}}}}'
            )
    record_id = row.get("id", line)
    if not (isinstance(record_id, str) or is_int(record_id)):
        raise ValueError(f"{at}: field 'id' must be a str or an int, got {record_id!r}")
    return XLAMItem(f"xlam-{record_id}", query, tuple(tools), tuple(answers))


__all__ = [
    "FunctionCallingTask",
    "ToolCallingTask",
    "XLAMItem",
    "check_split",
    "split_of",
    "xlam_tool_schema",
]
