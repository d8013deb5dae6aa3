"""Function-calling verifier: parse tool calls with ``json`` only, judge exactly or as BFCL does.

Two judgements share one parser:

- ``mode="exact"`` (the RRR paper on APIGen / xLAM): the multiset of predicted calls equals the
  gold calls. Names are equal, argument dicts are equal regardless of key order, numbers compare
  by value (``5 == 5.0``, but ``true != 1``) and strings exactly. Parallel calls match in any
  order.
- ``mode="bfcl"``: the Berkeley Function Calling Leaderboard's AST checker rules for its Python
  categories, re-implemented here (no BFCL code is imported): every gold call is matched by one
  predicted call (any order), required parameters are present, no parameter is unknown to the
  function doc or absent from the gold answer, a gold parameter without ``""`` among its
  acceptable values is present, and every value is acceptable under BFCL's type rules.

Where ``bfcl`` mode knowingly differs from ``bfcl_eval``'s ``ast_checker``:

- Parallel calls are paired by a true one-to-one matching. BFCL pairs greedily (each gold call
  takes the first predicted call it accepts), so when one predicted call suits two gold calls
  BFCL can reject an answer in one order and accept it in another; we accept it in every order.
- Function names must be written as documented, dots included. BFCL also expects ``.`` -> ``_``
  only from models configured with ``underscore_to_dot`` (API models whose tool names may not
  contain dots, and that were shown renamed tools); our prompts show the names unchanged.
- The reason (not the verdict) reports argument-name problems before value problems.
- Unparsable JSON is a ``format_error``; BFCL decodes Python-syntax calls (with ``eval`` for
  some models), which this module never does.

Responses are parsed with :func:`json.loads` and never evaluated. The whole response is read
(the text after the last ``</think>``), and cost is bounded on any input: responses over
:data:`MAX_RESPONSE_CHARS` characters are a ``format_error`` ("response longer than ...")
without being read; the text is searched with ``str.find`` and
C-level patterns, and the Python-level scans of brackets and quotes, together with the
values decoded, are charged to a budget of :data:`MAX_SCAN_STEPS` per parse: a response that
needs more (tens of kilobytes of JSON, thousands of prose quotes in a lenient search) is a
``format_error`` that says so, never judged from a part of it. So are more than
:data:`MAX_CALLS` ``<tool_call>`` blocks or fences, JSON nested deeper than
:data:`MAX_DEPTH`, and number literals longer than :data:`MAX_NUMBER_CHARS` as well as
``NaN`` / ``Infinity``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rrr_env.verdict import Verdict

#: The paper's error taxonomy for function calling, ``ok`` first.
REASONS = ("ok", "format_error", "wrong_tool", "wrong_arguments", "wrong_values", "wrong_count")
MODES = ("exact", "bfcl")
FORMATS = ("strict", "lenient")
STYLES = ("qwen", "llama", "chat_template")

# Longer responses are a format_error without being read. A quarter of the env's largest
# action: room for a long reasoning trace before the calls, and a bound on the few full-text
# searches (a multi-character str.find costs up to ~3 ns a character on unlucky text).
MAX_RESPONSE_CHARS = 250_000
MAX_SCAN_STEPS = 1_500  # brackets, quotes and values handled in Python per parse (bounds cost)
MAX_DEPTH = 32  # JSON nesting; tool arguments rarely nest beyond 4
MAX_NUMBER_CHARS = 100  # digits of one number literal; 10**100000 is not an argument
MAX_CALLS = 64  # calls in one response

_TOOL_CALL_OPEN = "<tool_call>"
_TOOL_CALL_CLOSE = "</tool_call>"
_FENCE = "```"
_NAME_KEY = '"name"'
# str.find("```") is slow on some text (a run of spaces defeats its skip table); re is not.
_FENCE_PATTERN = re.compile(re.escape(_FENCE))
# One structural character; searched for within a short window before str.find takes over.
_STRUCTURAL = re.compile(r'[\[\]{}"]')
_WINDOW = 64
# The rest of a short JSON string without escapes, after its opening quote.
_SHORT_STRING = re.compile(r'[^"\\]{0,256}"')
_SEPARATOR_CHARS = " \t\r\n;,"

# BFCL's Python type table: the type a value must have for each documented parameter type.
_BFCL_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
}
# BFCL ignores case and these characters when comparing strings ("April 1, 2024" == "april 12024").
_IGNORED_IN_STRINGS = str.maketrans("", "", " ,./-_*^")
# Severity of a mismatch between one predicted and one gold call, mildest first.
_SEVERITY = {"wrong_values": 1, "wrong_arguments": 2, "wrong_tool": 3}
_NO_ANSWER = object()


@dataclass(frozen=True)
class ToolCall:
    """One parsed call: a function name and its arguments."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ParsedResponse:
    """The calls found in a response, or why none were.

    Attributes:
        calls: The calls in response order, or ``None`` when the response has no parsable call.
        format: Where they were found: ``"tool_call"`` (``<tool_call>`` blocks), ``"json"``
            (the whole response is JSON), ``"fence"`` (fenced code blocks) or ``"embedded"``
            (JSON inside other text); ``None`` without calls.
        error: Why no calls were found, for ``calls=None``.
    """

    calls: tuple[ToolCall, ...] | None
    format: str | None = None
    error: str | None = None


class _Rejected(ValueError):
    """A JSON text outside our bounds (too deep, huge number, NaN) or not a call."""


# -- JSON decoding with bounds ---------------------------------------------------------------


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Rejected(f"number literal longer than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Rejected(f"number literal longer than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        raise _Rejected(f"number {text} is out of range")
    return value


def _parse_constant(text: str) -> Any:
    raise _Rejected(f"{text} is not a JSON value")


_DECODER = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


class _OverBudget(_Rejected):
    """The parse needs more Python-level steps than :data:`MAX_SCAN_STEPS`."""


class _Budget:
    """What one parse may still spend on Python-level steps; raises :class:`_Rejected` after."""

    __slots__ = ("left",)

    def __init__(self, steps: int = MAX_SCAN_STEPS) -> None:
        self.left = steps

    def spend(self, steps: int = 1) -> None:
        self.left -= steps
        if self.left < 0:
            raise _OverBudget(
                f"more than {MAX_SCAN_STEPS:,} brackets, quotes and values to read "
                "(the response is too long to judge)"
            )


_OPENERS = "[{"
_STRUCTURAL_CHARS = '[{]}"'  # the openers first: outside brackets only they matter
_MAX_BACKSLASHES = 64  # a longer run of backslashes before a quote is not a call


class _Scanner:
    """The next ``[ { ] } "`` of a text, found with ``str.find`` (C speed, not a pattern).

    Each character's next position is cached, so each is searched for once over the text in
    all; the Python work is one step per structural character, charged to a budget.
    """

    __slots__ = ("text", "next")

    def __init__(self, text: str) -> None:
        self.text = text
        self.next = [text.find(char) for char in _STRUCTURAL_CHARS]

    def find(self, pos: int, kinds: int = 5) -> int:
        """Position of the next of the first ``kinds`` structural characters from ``pos`` on."""
        near = _STRUCTURAL.search(self.text, pos, pos + _WINDOW)  # dense text: one C call
        if near is not None and (kinds == 5 or near.group() in _OPENERS):
            return near.start()
        best = -1
        nxt = self.next
        for i in range(kinds):
            found = nxt[i]
            if 0 <= found < pos:
                found = nxt[i] = self.text.find(_STRUCTURAL_CHARS[i], pos)
            if found >= 0 and (best < 0 or found < best):
                best = found
        return best

    def string_end(self, pos: int, budget: _Budget) -> int:
        """Position after the quote that closes the JSON string opened before ``pos``; -1: none."""
        text = self.text
        while True:
            quote = text.find('"', pos)
            if quote < 0:
                return -1
            before = text[max(pos, quote - _MAX_BACKSLASHES) : quote]
            escapes = len(before) - len(before.rstrip("\\"))
            if escapes == _MAX_BACKSLASHES:
                raise _Rejected(f"more than {_MAX_BACKSLASHES} backslashes in a row")
            if escapes % 2 == 0:
                return quote + 1
            budget.spend()  # an escaped quote: one more step for this string
            pos = quote + 1


def _too_deep(text: str, budget: _Budget) -> bool:
    """Whether brackets outside strings nest deeper than :data:`MAX_DEPTH` in ``text``."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    scanner = _Scanner(text)
    depth = 0
    pos = 0
    while (found := scanner.find(pos)) >= 0:
        budget.spend()
        char = text[found]
        if char == '"':
            pos = scanner.string_end(found + 1, budget)
            if pos < 0:
                return False  # an unterminated string: json.loads rejects it cheaply
            continue
        depth += 1 if char in _OPENERS else -1
        if depth > MAX_DEPTH:
            return True
        pos = found + 1
    return False


def load_json(text: str, budget: _Budget | None = None, *, depth: int | None = None) -> Any:
    """Decode one JSON value within the bounds of this module.

    Args:
        text: The JSON text.
        budget: What the caller's parse may still spend (a fresh one if ``None``).
        depth: The nesting depth of ``text`` when the caller has measured it already.

    Raises:
        ValueError: for invalid JSON, nesting deeper than :data:`MAX_DEPTH`, a number literal
            longer than :data:`MAX_NUMBER_CHARS` characters, ``NaN`` / ``Infinity``, or more
            than the budget's worth of brackets, quotes and values.

    >>> load_json('{"a": [1, 2.5, "x"]}')
    {'a': [1, 2.5, 'x']}
    >>> try:
    ...     load_json('{"x": NaN}')
    ... except ValueError as error:
    ...     print(error)
    NaN is not a JSON value
    """
    budget = _Budget() if budget is None else budget
    if _too_deep(text, budget) if depth is None else depth > MAX_DEPTH:
        raise _Rejected(f"JSON nested deeper than {MAX_DEPTH} levels")
    # Every value costs Python work after decoding (number hooks, canonical forms); values
    # are separated by "," (or stand alone), so this bounds them.
    budget.spend(text.count(","))
    try:
        return _DECODER.decode(text)
    except RecursionError:  # pragma: no cover - _too_deep rules this out
        raise _Rejected("JSON nested too deeply") from None


# -- finding JSON and calls in text ----------------------------------------------------------


def _json_spans(text: str, budget: _Budget) -> list[tuple[int, int, int]]:
    """``(start, end, depth)`` of every top-level balanced ``{...}`` / ``[...]`` in ``text``.

    Quotes count as JSON strings only inside brackets, so prose quotes do not derail the scan.
    One budget step per bracket or quote; the text between them is skipped by ``str.find``.
    """
    spans: list[tuple[int, int, int]] = []
    stack: list[str] = []
    scanner = _Scanner(text)
    near_search, short_string = _STRUCTURAL.search, _SHORT_STRING.match
    start = depth = pos = 0
    while True:
        budget.spend()
        # Dense text: the next structural character within a short window, one C call.
        near = near_search(text, pos, pos + _WINDOW)
        if near is not None and (stack or near.group() in _OPENERS):
            found, char = near.start(), near.group()
        else:
            found = scanner.find(pos + (_WINDOW if near is None else 0), 5 if stack else 2)
            if found < 0:
                break
            char = text[found]
        pos = found + 1
        if char == '"':
            string = short_string(text, pos)  # most strings: short, without escapes
            pos = string.end() if string is not None else scanner.string_end(pos, budget)
            if pos < 0:
                break  # an unterminated string: nothing after it can close a span
        elif char in _OPENERS:
            if not stack:
                start, depth = found, 0
            stack.append(char)
            depth = max(depth, len(stack))
        elif (stack[-1] == "{") != (char == "}"):
            stack.clear()  # mismatched brackets: not JSON, start afresh
        else:
            stack.pop()
            if not stack:
                spans.append((start, pos, depth))
    return spans


def _as_call(value: Any, keys: tuple[str, ...], lenient: bool, budget: _Budget) -> ToolCall:
    """One call from a decoded JSON object, or :class:`_Rejected`."""
    if lenient and isinstance(value, dict) and set(value) <= {"type", "id", "function"}:
        value = value.get("function")  # OpenAI style {"type": "function", "function": {...}}
    if not isinstance(value, dict):
        raise _Rejected("a call must be a JSON object")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise _Rejected('a call needs a "name" string')
    key = next((k for k in keys if k in value), None)
    if key is None:
        if not lenient:
            raise _Rejected(f'a call needs an "{keys[0]}" object')
        arguments: Any = {}
    else:
        arguments = value[key]
    if lenient and isinstance(arguments, str):
        arguments = load_json(arguments, budget)  # OpenAI style: the arguments as a JSON string
    if not isinstance(arguments, dict):
        raise _Rejected(f'"{key}" must be a JSON object')
    return ToolCall(name, arguments)


def _as_calls(
    value: Any, keys: tuple[str, ...], lenient: bool, allow_list: bool, budget: _Budget
) -> list[ToolCall]:
    if isinstance(value, list):
        if not allow_list or not value:
            raise _Rejected("expected one call object, got a list")
        return [_as_call(v, keys, lenient, budget) for v in value]
    return [_as_call(value, keys, lenient, budget)]


def _calls_in_spans(
    text: str, keys: tuple[str, ...], lenient: bool, budget: _Budget, *, skim: bool = True
) -> list[ToolCall]:
    """Calls of every top-level JSON value in ``text`` that is a call or a list of calls.

    With ``skim``, values without the text ``"name"`` are skipped undecoded (prose braces).
    """
    calls: list[ToolCall] = []
    if skim and '"name"' not in text:
        return calls  # no call anywhere: skip the scan (one C-level search)
    for start, end, depth in _json_spans(text, budget):
        chunk = text[start:end]
        if skim and '"name"' not in chunk:
            continue
        try:
            value = load_json(chunk, budget, depth=depth)
            calls.extend(_as_calls(value, keys, lenient, True, budget))
        except _OverBudget:
            raise
        except ValueError:
            continue
    return calls


def _only_json(
    text: str, keys: tuple[str, ...], lenient: bool, budget: _Budget
) -> list[ToolCall] | None:
    """Calls when ``text`` is nothing but JSON calls separated by whitespace, ``,`` or ``;``.

    Returns ``None`` when ``text`` does not have that shape; raises :class:`_Rejected` when it
    does but a value is not a call.
    """
    spans = _json_spans(text, budget)
    if not spans:
        return None
    gaps = [text[: spans[0][0]], text[spans[-1][1] :]]
    gaps += [text[a[1] : b[0]] for a, b in zip(spans, spans[1:], strict=False)]
    if any(gap.replace(";", " ").replace(",", " ").strip() for gap in gaps):
        return None
    calls: list[ToolCall] = []
    for start, end, depth in spans:
        value = load_json(text[start:end], budget, depth=depth)
        calls.extend(_as_calls(value, keys, lenient, True, budget))
    return calls


def _tool_call_blocks(text: str) -> tuple[list[str], bool]:
    """Contents of ``<tool_call>...</tool_call>`` blocks, and whether one is left unclosed."""
    blocks: list[str] = []
    pos = 0
    while (start := text.find(_TOOL_CALL_OPEN, pos)) != -1:
        if len(blocks) == MAX_CALLS:
            raise _Rejected(f"more than {MAX_CALLS} <tool_call> blocks")
        start += len(_TOOL_CALL_OPEN)
        end = text.find(_TOOL_CALL_CLOSE, start)
        if end == -1:
            blocks.append(text[start:])
            return blocks, True
        blocks.append(text[start:end])
        pos = end + len(_TOOL_CALL_CLOSE)
    return blocks, False


def _fenced_blocks(text: str) -> list[str]:
    """Contents of closed ```` ``` ```` fences, without the language tag line."""
    blocks: list[str] = []
    pos = 0
    while (fence := _FENCE_PATTERN.search(text, pos)) is not None:
        if len(blocks) == MAX_CALLS:
            raise _Rejected(f"more than {MAX_CALLS} fenced blocks")
        start = fence.end()
        fence = _FENCE_PATTERN.search(text, start)
        if fence is None:
            break
        end = fence.start()
        body = text[start:end]
        first_line, newline, rest = body.partition("\n")
        if newline and (not first_line.strip() or first_line.strip().isidentifier()):
            body = rest  # drop "json", "python", ... after the opening fence
        blocks.append(body)
        pos = end + len(_FENCE)
    return blocks


def _parse_tool_call_blocks(
    text: str, keys: tuple[str, ...], lenient: bool, budget: _Budget
) -> list[ToolCall]:
    blocks, unclosed = _tool_call_blocks(text)
    if unclosed and not lenient:
        raise _Rejected("a <tool_call> block is not closed")
    calls: list[ToolCall] = []
    for block in blocks:
        if lenient:
            found = _calls_in_spans(block, keys, lenient, budget, skim=False)
            if not found:
                raise _Rejected("a <tool_call> block holds no call")
            calls.extend(found)
        else:
            calls.extend(_as_calls(load_json(block.strip(), budget), keys, lenient, False, budget))
    return calls


def parse_calls(response: str, *, style: str = "qwen", format: str = "strict") -> ParsedResponse:
    """Find the tool calls in a model response.

    Text up to the last ``</think>`` (a reasoning trace) is ignored.

    - ``format="strict"`` accepts what the prompt style asks for. ``qwen``: one
      ``{"name", "arguments"}`` object per ``<tool_call>...</tool_call>`` block, text around
      the blocks allowed. ``llama``: a response that is nothing but ``{"name", "parameters"}``
      JSON (one object, a list, or objects separated by whitespace, ``,`` or ``;``).
      ``chat_template``: either of the two, with either key (the model's own template decides).
    - ``format="lenient"`` also accepts either key in any style, an unclosed last
      ``<tool_call>``, ```` ```json ```` fences, OpenAI-style ``{"function": {...}}`` wrappers and
      ``"arguments"`` given as a JSON string, and calls embedded anywhere in the text.

    Args:
        response: The model's text.
        style: ``"qwen"``, ``"llama"`` or ``"chat_template"``.
        format: ``"strict"`` or ``"lenient"``.

    Returns:
        The calls, or ``calls=None`` with the reason none were found. Never raises for a ``str``.

    >>> parse_calls('<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>').calls
    (ToolCall(name='f', arguments={'x': 1}),)
    >>> parse_calls('```json\\n{"name": "f", "parameters": {}}\\n```').error
    'no <tool_call> block'
    >>> parse_calls('```json\\n{"name": "f", "parameters": {}}\\n```', format="lenient").format
    'fence'
    """
    _check_arguments(response, style, format)
    if len(response) > MAX_RESPONSE_CHARS:
        return ParsedResponse(None, error=f"response longer than {MAX_RESPONSE_CHARS} characters")
    return _parse_answer_text(_AnswerText(response), style, format)


def _check_arguments(response: Any, style: str, format: str) -> None:
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")


class _AnswerText:
    """The text after the reasoning, with the full-text searches done at most once each.

    A search of a million characters for a multi-character string costs up to a few
    milliseconds on unlucky text, so a strict and a lenient parse of one response share them.
    """

    __slots__ = ("text", "_found", "over_budget")

    def __init__(self, response: str) -> None:
        think_end = response.rfind("</think>")
        self.text = response if think_end == -1 else response[think_end + len("</think>") :]
        self._found: dict[str, bool] = {}
        self.over_budget = False  # a parse ran out of budget: another would too

    def has(self, needle: str) -> bool:
        if needle not in self._found:
            self._found[needle] = needle in self.text
        return self._found[needle]


def _parse_answer_text(answer: _AnswerText, style: str, format: str) -> ParsedResponse:
    """:func:`parse_calls` of the text after the reasoning."""
    lenient = format == "lenient"
    # The key the style asks for comes first, so that a lenient reading of a strictly valid
    # response finds the same calls.
    if style == "llama":
        keys = ("parameters", "arguments") if lenient else ("parameters",)
    else:
        keys = (
            ("arguments", "parameters") if lenient or style == "chat_template" else ("arguments",)
        )
    try:
        found, where = _find_calls(answer, style, keys, lenient, _Budget())
    except _OverBudget as error:
        answer.over_budget = True
        return ParsedResponse(None, error=_short(error))
    except ValueError as error:  # includes _Rejected and json.JSONDecodeError
        return ParsedResponse(None, error=_short(error))
    if not found:
        return ParsedResponse(None, error=where)
    if len(found) > MAX_CALLS:
        return ParsedResponse(None, error=f"more than {MAX_CALLS} calls")
    return ParsedResponse(tuple(found), where)


def _find_calls(
    answer: _AnswerText, style: str, keys: tuple[str, ...], lenient: bool, budget: _Budget
) -> tuple[list[ToolCall], str]:
    """The calls and the format name, or ``([], why_not)``."""
    text = answer.text
    # Whether the text may be JSON alone, from its ends (str.strip(chars) would be slow).
    stripped = text.strip()
    head = stripped[:64].lstrip(_SEPARATOR_CHARS)[:1]
    tail = stripped[-64:].rstrip(_SEPARATOR_CHARS)[-1:]
    whole_json = head in ("{", "[") and tail in ("}", "]")
    if not lenient:
        if style != "llama" and answer.has(_TOOL_CALL_OPEN):
            return _parse_tool_call_blocks(text, keys, lenient, budget), "tool_call"
        if style == "qwen":
            return [], "no <tool_call> block"
        calls = _only_json(text, keys, lenient, budget) if whole_json else None
        return (calls, "json") if calls is not None else ([], "the response is not JSON")
    if whole_json and answer.has(_NAME_KEY):
        try:
            whole = _only_json(text, keys, True, budget)
        except _OverBudget:
            raise
        except ValueError:
            whole = None  # e.g. an example object before the real calls: search on
        if whole:
            return whole, "json"
    if answer.has(_TOOL_CALL_OPEN):
        return _parse_tool_call_blocks(text, keys, lenient, budget), "tool_call"
    fenced = [
        c for block in _fenced_blocks(text) for c in _calls_in_spans(block, keys, True, budget)
    ]
    if fenced:
        return fenced, "fence"
    embedded = _calls_in_spans(text, keys, True, budget) if answer.has(_NAME_KEY) else []
    if embedded:
        return embedded, "embedded"
    return [], "no tool call found"


def _short(error: Exception) -> str:
    message = str(error) or type(error).__name__
    return message if len(message) <= 200 else message[:197] + "..."


# -- canonical form (exact matching, majority voting) ---------------------------------------


def _canonical_value(value: Any) -> Any:
    """Numbers by value (``5.0`` -> ``5``), containers element-wise; bools stay bools."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {str(k): _canonical_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_value(v) for v in value]
    return value


_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


def _canonical_json(value: Any) -> str:
    return _CANONICAL_ENCODER.encode(_canonical_value(value))


def canonical_answer(calls: Iterable[ToolCall]) -> str:
    """A canonical JSON string of ``calls``: equal call multisets give equal strings.

    >>> canonical_answer([ToolCall("g", {"b": 2.0}), ToolCall("f", {})])
    '[{"arguments": {"b": 2}, "name": "g"}, {"arguments": {}, "name": "f"}]'
    """
    parts = sorted(_canonical_json({"name": c.name, "arguments": c.arguments}) for c in calls)
    return "[" + ", ".join(parts) + "]"


# -- judgements ------------------------------------------------------------------------------

Mismatch = tuple[str, str]  # (reason, message)


def _exact_mismatch(call: ToolCall, gold: Mapping[str, Any]) -> Mismatch | None:
    name, arguments = gold["name"], gold["arguments"]
    if call.name != name:
        return "wrong_tool", f"expected {name!r}, got {call.name!r}"
    if set(call.arguments) != set(arguments):
        missing = sorted(set(arguments) - set(call.arguments))
        extra = sorted(set(call.arguments) - set(arguments))
        return "wrong_arguments", f"{name}: missing {missing}, unexpected {extra}"
    for key, value in arguments.items():
        if _canonical_json(call.arguments[key]) != _canonical_json(value):
            return "wrong_values", f"{name}: wrong value for {key!r}"
    return None


def standardize(text: str) -> str:
    """A string as BFCL compares it: lower case, without `` ,./-_*^``, ``'`` read as ``"``.

    >>> standardize("April 1, 2024") == standardize("april 12024")
    True
    """
    return text.translate(_IGNORED_IN_STRINGS).lower().replace("'", '"')


def _first_answer_type(acceptable: Sequence[Any]) -> type | None:
    for answer in acceptable:
        if answer != "":
            return type(answer)
    return None


def _inner_types_ok(value: list[Any], inner: type, acceptable: Sequence[Any]) -> bool:
    """BFCL's one-level type check of list elements.

    The list passes when, for some acceptable answer, each element has the documented item
    type or the type of that answer's first element; a non-list answer (``""``) lets any
    list pass.
    """
    for answer in acceptable:
        if not isinstance(answer, list):
            return True
        answer_type = _first_answer_type(answer)
        if all(type(v) is inner or type(v) is answer_type for v in value):
            return True
    return False


def _standardized(values: Iterable[Any]) -> list[Any]:
    return [standardize(v) if type(v) is str else v for v in values]


def _dict_ok(value: Any, acceptable: Sequence[Any]) -> bool:
    """A dict value: some acceptable dict accepts each key's value and has no missing key."""
    if not isinstance(value, dict):
        return False
    for answer in acceptable:
        if not isinstance(answer, dict):
            continue
        ok = True
        for key, item in value.items():
            options = answer.get(key, _NO_ANSWER)
            if options is _NO_ANSWER:
                ok = False
                break
            options = options if isinstance(options, list) else [options]
            standard = standardize(item) if type(item) is str else item
            if standard not in _standardized(options):
                ok = False
                break
        if ok and all(
            key in value or (isinstance(options, list) and "" in options)
            for key, options in answer.items()
        ):
            return True
    return False


def _list_of_dicts_ok(value: list[Any], acceptable: Sequence[Any]) -> bool:
    for answer in acceptable:
        answer_list = [] if answer == "" else answer
        if not isinstance(answer_list, list) or len(answer_list) != len(value):
            continue
        if all(_dict_ok(v, [a]) for v, a in zip(value, answer_list, strict=True)):
            return True
    return False


def _value_ok(value: Any, doc: Mapping[str, Any], acceptable: Sequence[Any]) -> bool:
    """Whether ``value`` is acceptable for one parameter, by BFCL's rules."""
    declared = doc.get("type")
    expected = _BFCL_TYPES.get(declared, str) if isinstance(declared, str) else str
    inner = None
    if declared in ("array", "tuple"):
        items = doc.get("items")
        item_type = items.get("type") if isinstance(items, dict) else None
        inner = _BFCL_TYPES.get(item_type, str) if isinstance(item_type, str) else str
    if declared == "float" and type(value) is int:
        value = float(value)  # Python would convert an int where a float is expected
    answer_type = _first_answer_type(acceptable)
    # A gold value of another type than documented is a variable name: compared as is.
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if inner is not None and not _inner_types_ok(value, inner, acceptable):
            return False
    elif answer_type is not None and type(value) is answer_type:
        is_variable = True
    else:
        return False
    if not is_variable:
        if expected is dict:
            return _dict_ok(value, acceptable)
        if expected is list and inner is dict:
            return _list_of_dicts_ok(value, acceptable)
        if expected is str:
            return standardize(value) in {standardize(a) for a in acceptable if type(a) is str}
        if expected is list:
            standard = _standardized(value)
            return any(
                standard == ([] if a == "" else _standardized(a))
                for a in acceptable
                if a == "" or isinstance(a, list)
            )
    return value in acceptable


class _BFCLGold:
    """One gold call of BFCL with what its checks need, looked up once."""

    __slots__ = ("name", "params", "properties", "required", "mandatory")

    def __init__(self, name: str, params: Mapping[str, Any], doc: Mapping[str, Any]) -> None:
        schema = doc.get("parameters") or {}
        self.name = name
        self.params = params
        self.properties: Mapping[str, Any] = schema.get("properties") or {}
        self.required: Sequence[str] = schema.get("required") or ()
        # Gold parameters without "" among their acceptable values must be given.
        self.mandatory = [
            param
            for param, acceptable in params.items()
            if not isinstance(acceptable, list) or "" not in acceptable
        ]

    def mismatch(self, call: ToolCall) -> Mismatch | None:
        # BFCL's checks, with the argument names checked before any value so that the
        # reason does not depend on the order of the arguments (the verdict never does).
        name, arguments = self.name, call.arguments
        if call.name != name:
            return "wrong_tool", f"expected {name!r}, got {call.name!r}"
        for param in self.required:
            if param not in arguments:
                return "wrong_arguments", f"{name}: missing required parameter {param!r}"
        for param in arguments:
            if param not in self.properties or param not in self.params:
                return "wrong_arguments", f"{name}: unexpected parameter {param!r}"
        for param in self.mandatory:
            if param not in arguments:
                return "wrong_arguments", f"{name}: missing parameter {param!r}"
        for param, value in arguments.items():
            acceptable = self.params[param]
            if not isinstance(acceptable, list):
                acceptable = [acceptable]
            if not _value_ok(value, self.properties[param], acceptable):
                return "wrong_values", f"{name}: unacceptable value for {param!r}"
        return None


def _pairing(severity: list[list[int]], threshold: int) -> dict[int, int] | None:
    """A one-to-one pairing call -> gold using pairs of severity <= ``threshold``, or ``None``.

    Augmenting paths (Kuhn's algorithm); sizes are tiny (the gold count).
    """
    owner: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:
        for j, cost in enumerate(severity[i]):
            if cost <= threshold and j not in seen:
                seen.add(j)
                if j not in owner or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return owner if all(augment(i, set()) for i in range(len(severity))) else None


def _match(calls: Sequence[ToolCall], checks: Sequence[Any]) -> Mismatch | None:
    """``None`` if each gold call ``i`` matches a distinct call ``j`` (``checks[i](calls[j])``).

    Otherwise the mildest mismatch that every one-to-one pairing must contain: the smallest
    severity ``t`` such that gold and calls pair up with mismatches no worse than ``t``, so
    that e.g. one misspelt value among parallel calls reads ``wrong_values``.
    """
    results: dict[tuple[int, int], Mismatch | None] = {}
    used: set[int] = set()
    for i, check in enumerate(checks):  # greedy first: answers in the gold's order are common
        for j, call in enumerate(calls):
            if j not in used:
                results[i, j] = check(call)
                if results[i, j] is None:
                    used.add(j)
                    break
        else:
            break
    else:
        return None
    if len(checks) == 1:
        return results[0, 0]
    for i, check in enumerate(checks):
        for j, call in enumerate(calls):
            if (i, j) not in results:
                results[i, j] = check(call)
    severity = [
        [0 if results[i, j] is None else _SEVERITY[results[i, j][0]] for j in range(len(calls))]
        for i in range(len(checks))
    ]
    for threshold in sorted({0, *_SEVERITY.values()}):
        owner = _pairing(severity, threshold)
        if owner is not None:
            if threshold == 0:
                return None
            worst = (results[i, j] for j, i in owner.items() if severity[i][j] == threshold)
            return next(m for m in worst if m is not None)
    raise AssertionError("unreachable: calls and gold have the same count")


def _bfcl_checks(gold: Sequence[Any], tools: Sequence[Mapping[str, Any]] | None) -> list[Any]:
    if tools is None:
        raise ValueError("mode='bfcl' needs tools= (the item's function docs)")
    docs: dict[str, Mapping[str, Any]] = {}
    for doc in tools:
        docs.setdefault(doc["name"], doc)  # like BFCL, the first doc of a name counts
    checks = []
    for entry in gold:
        if not isinstance(entry, Mapping) or len(entry) != 1:
            raise ValueError(f"a BFCL gold call is {{name: {{param: [values]}}}}, got {entry!r}")
        ((name, params),) = entry.items()
        if name not in docs:
            raise ValueError(f"no function doc for the gold call {name!r}")
        checks.append(_BFCLGold(name, params, docs[name]).mismatch)
    return checks


def _exact_checks(gold: Sequence[Any]) -> list[Any]:
    checks = []
    for entry in gold:
        if not isinstance(entry, Mapping) or "name" not in entry or "arguments" not in entry:
            raise ValueError(f'an exact gold call is {{"name", "arguments"}}, got {entry!r}')
        checks.append(lambda c, g=entry: _exact_mismatch(c, g))
    return checks


def judge(
    calls: Sequence[ToolCall],
    gold: Sequence[Any],
    *,
    mode: str = "exact",
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> Mismatch | None:
    """Compare parsed calls with the gold calls; ``None`` when they match.

    Raises:
        ValueError: for a malformed ``gold`` / ``tools`` (the data, not the response).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    checks = _bfcl_checks(gold, tools) if mode == "bfcl" else _exact_checks(gold)
    if len(calls) != len(checks):
        return "wrong_count", f"expected {len(checks)} call(s), got {len(calls)}"
    return _match(calls, checks)


def verify(
    response: str,
    gold: Sequence[Any],
    *,
    mode: str = "exact",
    tools: Sequence[Mapping[str, Any]] | None = None,
    format: str = "strict",
    style: str = "qwen",
) -> Verdict:
    """Judge a function-calling response.

    Args:
        response: The model's text.
        gold: ``mode="exact"``: the xLAM answer list ``[{"name", "arguments"}, ...]``.
            ``mode="bfcl"``: BFCL's ``ground_truth`` list ``[{name: {param: [values]}}, ...]``.
        mode: ``"exact"`` (the RRR paper) or ``"bfcl"`` (the leaderboard's AST rules).
        tools: The item's function docs; required with ``mode="bfcl"`` for parameter types and
            required parameters.
        format: ``"strict"`` (only what the prompt style asks for) or ``"lenient"``; see
            :func:`parse_calls`.
        style: The prompt style the response answers: ``"qwen"``, ``"llama"`` or
            ``"chat_template"``.

    Returns:
        A :class:`Verdict` with a reason from :data:`REASONS`; ``answer`` is
        :func:`canonical_answer` of the parsed calls. ``details`` has ``format`` (where the
        calls were found), ``error`` (what was wrong), ``lenient_correct`` and
        ``lenient_reason`` (the verdict of the lenient reading, so that evaluation can report
        both). Never raises for a ``str`` response.

    >>> gold = [{"name": "add", "arguments": {"a": 1, "b": 2}}]
    >>> response = '<tool_call>{"name": "add", "arguments": {"b": 2, "a": 1.0}}</tool_call>'
    >>> verdict = verify(response, gold)
    >>> verdict.reason, verdict.answer
    ('ok', '[{"arguments": {"a": 1, "b": 2}, "name": "add"}]')
    >>> verify('{"name": "add", "arguments": {"a": 1, "b": 2}}', gold).details["lenient_correct"]
    True
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _check_arguments(response, style, format)
    if len(response) > MAX_RESPONSE_CHARS:
        answer = None
        parsed = parse_calls(response, style=style, format=format)
    else:
        answer = _AnswerText(response)
        parsed = _parse_answer_text(answer, style, format)
    verdict = _judged(parsed, gold, mode, tools)
    if format == "lenient" or parsed.calls is not None or answer is None or answer.over_budget:
        # A lenient parse finds what a strict one found (same blocks, same key first); after
        # a parse over budget, a lenient one would be too.
        verdict.details.update(lenient_correct=verdict.correct, lenient_reason=verdict.reason)
        return verdict
    lenient = _judged(_parse_answer_text(answer, style, "lenient"), gold, mode, tools)
    verdict.details.update(lenient_correct=lenient.correct, lenient_reason=lenient.reason)
    return verdict


def _judged(
    parsed: ParsedResponse,
    gold: Sequence[Any],
    mode: str,
    tools: Sequence[Mapping[str, Any]] | None,
) -> Verdict:
    if parsed.calls is None:
        return Verdict(False, "format_error", None, {"format": None, "error": parsed.error})
    answer = canonical_answer(parsed.calls)
    mismatch = judge(parsed.calls, gold, mode=mode, tools=tools)
    if mismatch is None:
        return Verdict(True, "ok", answer, {"format": parsed.format, "error": None})
    reason, message = mismatch
    return Verdict(False, reason, answer, {"format": parsed.format, "error": message})


def render_calls(calls: Iterable[ToolCall | Mapping[str, Any]], style: str = "qwen") -> str:
    """Write calls as a response in the format ``style`` asks for (the inverse of parsing).

    ``qwen`` and ``chat_template``: one ``<tool_call>`` block per call; ``llama``: one
    ``{"name", "parameters"}`` object, or a list of them for several calls.

    >>> render_calls([ToolCall("f", {"x": 1})], "llama")
    '{"name": "f", "parameters": {"x": 1}}'
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    pairs = [
        (c.name, c.arguments) if isinstance(c, ToolCall) else (c["name"], c["arguments"])
        for c in calls
    ]
    if style == "llama":
        objects = [{"name": name, "parameters": arguments} for name, arguments in pairs]
        return json.dumps(objects[0] if len(objects) == 1 else objects, ensure_ascii=False)
    return "\n".join(
        f"{_TOOL_CALL_OPEN}\n"
        + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
        + f"\n{_TOOL_CALL_CLOSE}"
        for name, arguments in pairs
    )
