"""The function-call verifier: parsing of each format, exact and BFCL judgement, hostile input."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrr_env.verifiers import function_call as fc
from rrr_env.verifiers.function_call import ToolCall, parse_calls, render_calls, verify

# -- parsing ------------------------------------------------------------------------------

QWEN_TWO = (
    "I will look both up.\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
)
TWO_CALLS = (ToolCall("get_weather", {"city": "Oslo"}), ToolCall("get_weather", {"city": "Rome"}))


def test_strict_qwen_reads_tool_call_blocks_with_text_around():
    parsed = parse_calls(QWEN_TWO, style="qwen")
    assert parsed.calls == TWO_CALLS
    assert parsed.format == "tool_call"


def test_strict_qwen_rejects_what_the_prompt_did_not_ask_for():
    fenced = '```json\n{"name": "f", "arguments": {"x": 1}}\n```'
    bare = '{"name": "f", "arguments": {"x": 1}}'
    parameters_key = '<tool_call>{"name": "f", "parameters": {"x": 1}}</tool_call>'
    unclosed = '<tool_call>{"name": "f", "arguments": {"x": 1}}'
    list_in_block = '<tool_call>[{"name": "f", "arguments": {"x": 1}}]</tool_call>'
    for response in (fenced, bare, parameters_key, unclosed, list_in_block):
        strict = parse_calls(response, style="qwen")
        assert strict.calls is None, response
        assert strict.error
        lenient = parse_calls(response, style="qwen", format="lenient")
        assert lenient.calls == (ToolCall("f", {"x": 1}),), response


def test_strict_llama_reads_bare_json_objects_and_lists():
    one = '{"name": "f", "parameters": {"x": 1}}'
    assert parse_calls(one, style="llama").calls == (ToolCall("f", {"x": 1}),)
    listed = '[{"name": "f", "parameters": {"x": 1}}, {"name": "g", "parameters": {}}]'
    lines = '{"name": "f", "parameters": {"x": 1}};\n{"name": "g", "parameters": {}}'
    for response in (listed, lines):
        parsed = parse_calls(response, style="llama")
        assert parsed.calls == (ToolCall("f", {"x": 1}), ToolCall("g", {}))
        assert parsed.format == "json"


def test_strict_llama_rejects_prose_tags_and_the_other_key():
    for response in (
        'Sure: {"name": "f", "parameters": {"x": 1}}',
        '<tool_call>{"name": "f", "parameters": {"x": 1}}</tool_call>',
        '{"name": "f", "arguments": {"x": 1}}',
        '```json\n{"name": "f", "parameters": {"x": 1}}\n```',
    ):
        assert parse_calls(response, style="llama").calls is None, response
        lenient = parse_calls(response, style="llama", format="lenient")
        assert lenient.calls == (ToolCall("f", {"x": 1}),), response


def test_strict_chat_template_accepts_either_template_format_and_key():
    for response in (
        '<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>',
        '{"name": "f", "parameters": {"x": 1}}',
        '{"name": "f", "arguments": {"x": 1}}',
    ):
        assert parse_calls(response, style="chat_template").calls == (ToolCall("f", {"x": 1}),)


def test_lenient_formats():
    cases = {
        "fence": 'Here you go:\n```json\n[{"name": "f", "arguments": {"x": 1}}]\n```\nDone.',
        "fence without a language": '```\n{"name": "f", "parameters": {"x": 1}}\n```',
        "bare object in prose": 'I would call {"name": "f", "arguments": {"x": 1}} now.',
        "openai wrapper": '{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}',
        "arguments as a JSON string": '{"name": "f", "arguments": "{\\"x\\": 1}"}',
    }
    for label, response in cases.items():
        parsed = parse_calls(response, format="lenient")
        assert parsed.calls == (ToolCall("f", {"x": 1}),), label
    assert parse_calls(cases["fence"], format="lenient").format == "fence"
    assert parse_calls(cases["bare object in prose"], format="lenient").format == "embedded"


def test_a_reasoning_trace_is_ignored():
    response = (
        '<think>maybe <tool_call>{"name": "g", "arguments": {}}</tool_call>?</think>\n'
        '<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'
    )
    assert parse_calls(response).calls == (ToolCall("f", {"x": 1}),)


def test_no_call_is_a_format_error_with_a_message():
    for response in ("", "I cannot help with that.", "{}", '{"name": 3, "arguments": {}}', "[]"):
        for style in fc.STYLES:
            for fmt in fc.FORMATS:
                verdict = verify(
                    response, [{"name": "f", "arguments": {}}], style=style, format=fmt
                )
                assert verdict.reason == "format_error", (response, style, fmt)
                assert verdict.answer is None
                assert verdict.details["error"]


def test_render_calls_round_trips_in_every_style():
    calls = [ToolCall("math.hypot", {"x": 3, "y": [1.5, "a"]}), ToolCall("f", {})]
    for style in fc.STYLES:
        assert parse_calls(render_calls(calls, style), style=style).calls == tuple(calls)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="style"):
        parse_calls("x", style="mistral")
    with pytest.raises(ValueError, match="format"):
        parse_calls("x", format="loose")
    with pytest.raises(ValueError, match="mode"):
        verify("x", [], mode="ast")
    with pytest.raises(ValueError, match="tools"):
        verify(render_calls([ToolCall("f", {})]), [{"f": {}}], mode="bfcl")
    with pytest.raises(TypeError):
        verify(b"bytes", [])  # type: ignore[arg-type]


# -- strict verdicts record the lenient reading --------------------------------------------

GOLD_ADD = [{"name": "add", "arguments": {"a": 1, "b": 2}}]


def test_strict_verdict_records_whether_lenient_would_have_been_correct():
    fenced = '```json\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n```'
    verdict = verify(fenced, GOLD_ADD)
    assert (verdict.correct, verdict.reason) == (False, "format_error")
    assert verdict.details["lenient_correct"] is True
    assert verdict.details["lenient_reason"] == "ok"

    wrong_fenced = '```json\n{"name": "add", "arguments": {"a": 1, "b": 3}}\n```'
    verdict = verify(wrong_fenced, GOLD_ADD)
    assert verdict.reason == "format_error"
    assert verdict.details["lenient_correct"] is False
    assert verdict.details["lenient_reason"] == "wrong_values"

    right = render_calls(GOLD_ADD)
    verdict = verify(right, GOLD_ADD)
    assert verdict.correct and verdict.details["lenient_correct"] is True
    assert verify(fenced, GOLD_ADD, format="lenient").correct


# -- exact mode (the paper) ----------------------------------------------------------------


def exact(response_calls, gold):
    return verify(render_calls(response_calls), gold, mode="exact")


def test_exact_match_ignores_key_order_and_compares_numbers_by_value():
    gold = [{"name": "add", "arguments": {"a": 5, "b": 2.5}}]
    assert exact([ToolCall("add", {"b": 2.5, "a": 5.0})], gold).correct
    assert exact([ToolCall("add", {"a": 5, "b": 2.5})], gold).correct


def test_exact_match_errors():
    gold = [{"name": "search", "arguments": {"query": "Moby Dick", "limit": 5, "exact": True}}]
    args = {"query": "Moby Dick", "limit": 5, "exact": True}
    cases = {
        "wrong_tool": [ToolCall("find", args)],
        "wrong_arguments": [ToolCall("search", {"query": "Moby Dick", "limit": 5})],
        "extra argument": [ToolCall("search", {**args, "page": 1})],
        "misnamed argument": [ToolCall("search", {"q": "Moby Dick", "limit": 5, "exact": True})],
        "wrong_values": [ToolCall("search", {**args, "query": "moby dick"})],
        "bool is not 1": [ToolCall("search", {**args, "exact": 1})],
        "number is not a string": [ToolCall("search", {**args, "limit": "5"})],
        "wrong_count": [ToolCall("search", args), ToolCall("search", args)],
    }
    expected = {
        "extra argument": "wrong_arguments",
        "misnamed argument": "wrong_arguments",
        "bool is not 1": "wrong_values",
        "number is not a string": "wrong_values",
    }
    for label, calls in cases.items():
        verdict = exact(calls, gold)
        assert not verdict.correct
        assert verdict.reason == expected.get(label, label), label


def test_exact_parallel_calls_match_in_any_order_as_a_multiset():
    gold = [
        {"name": "w", "arguments": {"city": "Paris"}},
        {"name": "w", "arguments": {"city": "Rome"}},
        {"name": "fib", "arguments": {"n": 7}},
    ]
    calls = [ToolCall(g["name"], g["arguments"]) for g in gold]
    answers = set()
    for order in itertools.permutations(calls):
        verdict = exact(list(order), gold)
        assert verdict.correct
        answers.add(verdict.answer)
    assert len(answers) == 1, "the canonical answer must not depend on the order"
    duplicated = [calls[0], calls[0], calls[2]]
    assert exact(duplicated, gold).reason == "wrong_values"


def test_canonical_answer_is_equal_for_equal_calls_only():
    a = fc.canonical_answer([ToolCall("f", {"x": 1, "y": [2.0]}), ToolCall("g", {})])
    b = fc.canonical_answer([ToolCall("g", {}), ToolCall("f", {"y": [2], "x": 1.0})])
    c = fc.canonical_answer([ToolCall("g", {}), ToolCall("f", {"y": [2], "x": True})])
    assert a == b != c
    assert json.loads(a) == [
        {"arguments": {"x": 1, "y": [2]}, "name": "f"},
        {"arguments": {}, "name": "g"},
    ]


# -- BFCL mode, on hand-written docs --------------------------------------------------------

DOC = {
    "name": "book.hotel",
    "description": "Book a hotel room.",
    "parameters": {
        "type": "dict",
        "properties": {
            "city": {"type": "string", "description": "City."},
            "nights": {"type": "integer", "description": "Nights."},
            "budget": {"type": "float", "description": "Budget per night."},
            "breakfast": {"type": "boolean", "description": "With breakfast."},
            "dates": {"type": "array", "items": {"type": "string"}, "description": "Dates."},
            "rooms": {"type": "array", "items": {"type": "integer"}, "description": "Rooms."},
            "location": {"type": "tuple", "items": {"type": "float"}, "description": "Lat, lon."},
            "guest": {"type": "dict", "description": "Guest.", "properties": {}},
            "extras": {"type": "array", "items": {"type": "dict"}, "description": "Extras."},
            "note": {"type": "any", "description": "Anything."},
            "loyalty_id": {"type": "string", "description": "Loyalty card."},
        },
        "required": ["city", "nights"],
    },
}
GOLD = [
    {
        "book.hotel": {
            "city": ["New York, NY", "NYC"],
            "nights": [3],
            "budget": [150.0, ""],
            "breakfast": [True, ""],
            "dates": [["2024-04-01", "2024-04-02"]],
            "rooms": [[101]],
            "location": [[40.7, -74.0], ""],
            "guest": [{"name": ["Ana Lima"], "age": [30, ""]}],
            "extras": [[{"kind": ["parking"], "days": [3]}], ""],
            "note": ["late arrival", ""],
        }
    }
]
GOOD = {
    "city": "New York, NY",
    "nights": 3,
    "budget": 150.0,
    "breakfast": True,
    "dates": ["2024-04-01", "2024-04-02"],
    "rooms": [101],
    "location": [40.7, -74.0],
    "guest": {"name": "Ana Lima", "age": 30},
    "extras": [{"kind": "parking", "days": 3}],
    "note": "late arrival",
}


def bfcl(arguments, name="book.hotel", gold=GOLD, tools=(DOC,)):
    response = render_calls([ToolCall(name, arguments)])
    return verify(response, gold, mode="bfcl", tools=list(tools))


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"city": "nyc"},  # any acceptable value, case ignored
        {"city": "new-york ny"},  # BFCL ignores " ,./-_*^"
        {"budget": 150},  # an int where a float is documented
        {"dates": ["2024/04/01", "2024 04 02"]},  # list elements compared like strings
        {"guest": {"name": "ana lima"}},  # dict values too; "" marks an optional key
        {"location": [40.7, -74.0]},
    ],
)
def test_bfcl_accepts(change):
    assert bfcl({**GOOD, **change}).reason == "ok"


@pytest.mark.parametrize("omitted", ["budget", "breakfast", "location", "extras", "note"])
def test_bfcl_optional_parameters_may_be_omitted(omitted):
    arguments = {k: v for k, v in GOOD.items() if k != omitted}
    assert bfcl(arguments).reason == "ok"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"nights": 3.0}, "wrong_values"),  # a float where an integer is documented
        ({"nights": "3"}, "wrong_values"),
        ({"nights": 4}, "wrong_values"),
        ({"breakfast": 1}, "wrong_values"),  # not a bool
        ({"city": "Boston"}, "wrong_values"),
        ({"dates": ["2024-04-02", "2024-04-01"]}, "wrong_values"),  # order matters in lists
        ({"rooms": [101.0]}, "wrong_values"),  # element type
        ({"guest": {"name": "Ana Lima", "vip": True}}, "wrong_values"),  # unknown dict key
        ({"guest": {"age": 30}}, "wrong_values"),  # missing mandatory dict key
        ({"extras": [{"kind": "parking"}]}, "wrong_values"),
        ({"extras": [{"kind": "parking", "days": 3}, {"kind": "spa", "days": 1}]}, "wrong_values"),
        ({"note": 5}, "wrong_values"),  # "any" is judged as a string, like BFCL
        ({"pets": True}, "wrong_arguments"),  # undocumented parameter
        ({"loyalty_id": "X1"}, "wrong_arguments"),  # documented, but not in the gold answer
    ],
)
def test_bfcl_rejects(change, reason):
    verdict = bfcl({**GOOD, **change})
    assert (verdict.correct, verdict.reason) == (False, reason)
    assert verdict.details["error"]


def test_bfcl_quirk_optional_lists_skip_the_element_type_check():
    # BFCL checks list element types against each acceptable answer, and "" (optional)
    # passes that check; values are then compared with ==, so 101.0 equals 101.
    optional_rooms = [{"book.hotel": {**GOLD[0]["book.hotel"], "rooms": ["", [101]]}}]
    assert bfcl({**GOOD, "rooms": [101.0]}, gold=optional_rooms).correct
    assert not bfcl({**GOOD, "rooms": [101.0]}).correct


def test_bfcl_missing_parameters_and_wrong_tool():
    no_nights = {k: v for k, v in GOOD.items() if k != "nights"}
    assert bfcl(no_nights).reason == "wrong_arguments"  # required
    no_dates = {k: v for k, v in GOOD.items() if k != "dates"}
    assert bfcl(no_dates).reason == "wrong_arguments"  # optional, but the gold has no ""
    assert bfcl(GOOD, name="book_hotel").reason == "wrong_tool"  # names are kept as documented
    response = render_calls([ToolCall("book.hotel", GOOD)] * 2)
    assert verify(response, GOLD, mode="bfcl", tools=[DOC]).reason == "wrong_count"


def test_bfcl_variable_gold_values_are_compared_exactly():
    # BFCL's ground truth sometimes names a variable where the doc wants a number.
    gold = [{"book.hotel": {"city": ["NYC"], "nights": ["num_nights"]}}]
    assert bfcl({"city": "NYC", "nights": "num_nights"}, gold=gold).correct
    assert not bfcl({"city": "NYC", "nights": "Num_Nights"}, gold=gold).correct
    assert not bfcl({"city": "NYC", "nights": 3}, gold=gold).correct


def test_bfcl_parallel_matching_is_order_free_even_where_greedy_matching_fails():
    doc = {
        "name": "price",
        "description": "A stock price.",
        "parameters": {
            "type": "dict",
            "properties": {"company": {"type": "string", "description": "Company."}},
            "required": ["company"],
        },
    }
    gold = [{"price": {"company": ["Apple", "Microsoft"]}}, {"price": {"company": ["Apple"]}}]
    for order in (["Apple", "Microsoft"], ["Microsoft", "Apple"]):
        response = render_calls([ToolCall("price", {"company": c}) for c in order])
        assert verify(response, gold, mode="bfcl", tools=[doc]).correct, order
    response = render_calls([ToolCall("price", {"company": "Microsoft"})] * 2)
    assert verify(response, gold, mode="bfcl", tools=[doc]).reason == "wrong_values"


# -- hostile input ---------------------------------------------------------------------------

HOSTILE = {
    "100k nested lists": "[" * 100_000,
    "100k nested objects in a block": "<tool_call>"
    + '{"a": ' * 100_000
    + "1"
    + "}" * 100_000
    + "</tool_call>",
    "deeply nested argument": '{"name": "f", "arguments": {"x": '
    + "[" * 1_000
    + "]" * 1_000
    + "}}",
    "10**100000 in a block": '<tool_call>{"name": "f", "arguments": {"x": 1'
    + "0" * 100_000
    + "}}</tool_call>",
    "a 100-digit-plus number": '{"name": "f", "arguments": {"x": ' + "9" * 101 + "}}",
    "huge exponent": '<tool_call>{"name": "f", "arguments": {"x": 1e999999}}</tool_call>',
    "1 MB string argument": '<tool_call>{"name": "f", "arguments": {"x": "'
    + "a" * 1_000_000
    + '"}}</tool_call>',
    "1 MB of text": "a" * 1_000_001,
    "NaN": '<tool_call>{"name": "f", "arguments": {"x": NaN}}</tool_call>',
    "Infinity": '{"name": "f", "arguments": {"x": -Infinity}}',
    "unterminated strings": '{"' + '"\\' * 40_000,
    "many opening tags": "<tool_call>" * 9_000,
    "many fences": "```" * 30_000,
    "many empty objects": "{}" * 50_000,
    "many nameless objects": '{"name": 1}' * 10_000,
    "too many calls": '<tool_call>{"name": "f", "arguments": {}}</tool_call>' * 65,
    "lone surrogate": '<tool_call>{"name": "\\ud800", "arguments": {}}</tool_call>\ud800',
}


@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_hostile_input_is_a_format_error_and_never_raises(label):
    response = HOSTILE[label]
    gold = [{"name": "f", "arguments": {"x": 1}}]
    for style in fc.STYLES:
        for fmt in fc.FORMATS:
            verdict = verify(response, gold, style=style, format=fmt)
            if label == "lone surrogate":  # odd, but valid JSON: judged, not rejected
                assert verdict.reason in ("format_error", "wrong_tool"), (style, fmt)
                continue
            assert verdict.reason == "format_error", (label, style, fmt, verdict)
            assert verdict.details["lenient_correct"] is False


def test_long_string_arguments_are_judged_whole():
    # Before, only the last 100,000 characters were read, so this was a format_error.
    response = '{"name": "f", "parameters": {"x": "' + "a" * 200_000 + '"}}'
    for fmt in fc.FORMATS:
        verdict = verify(
            response, [{"name": "f", "arguments": {"x": 1}}], style="llama", format=fmt
        )
        assert verdict.reason == "wrong_values", fmt
        gold = [{"name": "f", "arguments": {"x": "a" * 200_000}}]
        assert verify(response, gold, style="llama", format=fmt).correct, fmt


def test_bounds_are_not_too_tight():
    nested = {"a": [[[[{"b": [1, 2]}]]]]}
    response = render_calls([ToolCall("f", {"x": nested, "n": int("9" * 100)})])
    assert verify(
        response, [{"name": "f", "arguments": {"x": nested, "n": int("9" * 100)}}]
    ).correct


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list('{}[]",:\\ ntrue0123456789.eE-<>/_`json')), max_size=200)
)
def test_any_text_is_judged_without_raising(text):
    for style in fc.STYLES:
        verdict = verify(text, [{"name": "f", "arguments": {}}], style=style)
        assert verdict.reason in fc.REASONS


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(QWEN_TWO)), st.text(max_size=5))
def test_corrupted_responses_never_raise(position, insert):
    response = QWEN_TWO[:position] + insert + QWEN_TWO[position:]
    gold = [{"name": "get_weather", "arguments": {"city": c}} for c in ("Oslo", "Rome")]
    verdict = verify(response, gold, format="lenient")
    assert verdict.reason in fc.REASONS
