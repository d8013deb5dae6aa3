"""Verdicts on hostile and edge-case input, for every verifier (issue 11, sections 2 and 4).

Correctness only: each worst case of ``benchmarks/bench_verify_worst_case.py`` gets the
verdict and reason it should get. How long the verifiers take on them is measured by that
benchmark, never asserted here.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_verify_worst_case import CASES, VERIFIERS
from rrr_env.env import MAX_ACTION_CHARS
from rrr_env.verifiers import countdown, math_answer
from rrr_env.verifiers import function_call as fc
from rrr_env.verifiers.function_call import ToolCall, render_calls

# -- Countdown: negative targets -------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        r"\boxed{3-8=-5}",
        r"\boxed{3 - 8 = -5}",
        r"\boxed{3-8 = - 5}",
        r"\boxed{-5 = 3 - 8}",
        "\\boxed{3 − 8 = −5}",  # U+2212 minus signs
        r"\boxed{3-8}",
    ],
)
def test_countdown_equation_with_a_negative_target(response: str) -> None:
    verdict = countdown.verify(response, [3, 8], -5)
    assert verdict.correct, verdict


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (r"\boxed{3-8=-6}", "missed_target"),  # the claimed result must be the target
        (r"\boxed{8-3=5}", "missed_target"),
        (r"\boxed{-5=-5}", "wrong_numbers"),
        (r"\boxed{3-8=-5=-5}", "invalid_expression"),
        (r"\boxed{3-8=--5}", "invalid_expression"),
    ],
)
def test_countdown_negative_target_still_rejects(response: str, reason: str) -> None:
    assert countdown.verify(response, [3, 8], -5).reason == reason


# -- function calling: the whole response is judged ------------------------------------------

WRONG, RIGHT = ToolCall("f", {"x": 2}), ToolCall("f", {"x": 1})
GOLD = [{"name": "f", "arguments": {"x": 1}}]
PAD = "x" * 100_000


@pytest.mark.parametrize(
    ("response", "style", "fmt"),
    [
        # Before, only the last 100,000 characters were read: the wrong call was never seen.
        (render_calls([WRONG]) + PAD + render_calls([RIGHT]), "qwen", "strict"),
        (render_calls([WRONG]) + PAD + render_calls([RIGHT]), "qwen", "lenient"),
        (
            render_calls([WRONG], "llama") + " " * 100_000 + render_calls([RIGHT], "llama"),
            "llama",
            "strict",
        ),
        (
            "First " + render_calls([WRONG], "llama") + PAD + render_calls([RIGHT], "llama"),
            "llama",
            "lenient",
        ),
    ],
)
def test_a_call_far_back_still_counts(response: str, style: str, fmt: str) -> None:
    verdict = fc.verify(response, GOLD, style=style, format=fmt)
    assert verdict.reason == "wrong_count", verdict


def test_a_long_reasoning_trace_is_skipped_whole() -> None:
    response = "<think>" + "x" * 200_000 + "</think>" + render_calls([RIGHT])
    assert fc.verify(response, GOLD).correct
    # ... but a call inside the trace is not an answer, however long the text after it.
    response = "<think>" + render_calls([RIGHT]) + PAD + "</think>no call"
    assert fc.verify(response, GOLD, format="lenient").reason == "format_error"


def test_many_parallel_calls_fit_the_budget() -> None:
    calls = [ToolCall("get_weather", {"city": f"City {i}", "days": i}) for i in range(fc.MAX_CALLS)]
    gold = [{"name": c.name, "arguments": c.arguments} for c in calls]
    for style in fc.STYLES:
        for fmt in fc.FORMATS:
            verdict = fc.verify(render_calls(calls, style), gold, style=style, format=fmt)
            assert verdict.correct, (style, fmt, verdict)


def test_over_budget_is_a_named_format_error() -> None:
    response = '{"name": "f", "parameters": {"x": [' + "[]," * 2_000 + "1]}}"
    for fmt in fc.FORMATS:
        verdict = fc.verify(response, GOLD, style="llama", format=fmt)
        assert verdict.reason == "format_error"
        assert (
            "too long to judge" in verdict.details["error"] or "deeper" in verdict.details["error"]
        )


# -- every worst case of the benchmark: its verdict, per verifier ----------------------------

NA, WA, UN, OK = "no_answer", "wrong_answer", "unparsable", "ok"
IE, WN, FE = "invalid_expression", "wrong_numbers", "format_error"
#: case -> reason of each verifier in VERIFIERS' order: countdown, gsm8k, fc qwen strict,
#: fc llama strict, fc chat_template strict, fc qwen lenient, fc bfcl lenient.
EXPECTED = {
    "box then open braces": (NA, NA, FE, FE, FE, FE, FE),
    "many unclosed boxes": (NA, NA, FE, FE, FE, FE, FE),
    "many \\boxed without a brace": (NA, NA, FE, FE, FE, FE, FE),
    "many closed boxes, then one open": (WN, WA, FE, FE, FE, FE, FE),
    "nested boxes": (WN, OK, FE, FE, FE, FE, FE),
    "box closed by the last of a million braces": (IE, UN, FE, FE, FE, FE, FE),
    "box, a million close braces": (WN, OK, FE, FE, FE, FE, FE),
    "open braces": (NA, NA, FE, FE, FE, FE, FE),
    "close braces": (NA, NA, FE, FE, FE, FE, FE),
    "close then open braces": (NA, NA, FE, FE, FE, FE, FE),
    "box far from the end, open": (WN, WA, FE, FE, FE, FE, FE),
    "box then spaces then brace": (NA, UN, FE, FE, FE, FE, FE),
    "short box, then a million characters and a }": (WN, UN, FE, FE, FE, FE, FE),
    "box with a brace, then a million characters and a }": (IE, UN, FE, FE, FE, FE, FE),
    "digits": (NA, UN, FE, FE, FE, FE, FE),
    "digits in a box": (IE, UN, FE, FE, FE, FE, FE),
    "numbers with commas": (NA, WA, FE, FE, FE, FE, FE),
    "fractions a/b": (NA, WA, FE, FE, FE, FE, FE),
    "minus signs and digits": (NA, WA, FE, FE, FE, FE, FE),
    "many numbers": (NA, WA, FE, FE, FE, FE, FE),
    "many \\frac": (NA, WA, FE, FE, FE, FE, FE),
    "nested \\frac in a box": (IE, UN, FE, FE, FE, FE, FE),
    "1,000 digits times 1,000 digits in a box": (IE, UN, FE, FE, FE, FE, FE),
    "huge power in a box": (IE, UN, FE, FE, FE, FE, FE),
    "huge exponent in JSON": (NA, WA, FE, FE, FE, FE, FE),
    "long number in JSON": (NA, UN, FE, FE, FE, FE, FE),
    "many \\text in a box": (IE, UN, FE, FE, FE, FE, FE),
    "many = in a box": (IE, UN, FE, FE, FE, FE, FE),
    "many words in a box": (IE, UN, FE, FE, FE, FE, FE),
    "Arabic-Indic digits": (NA, NA, FE, FE, FE, FE, FE),
    "Arabic-Indic digits in a box": (IE, UN, FE, FE, FE, FE, FE),
    "emoji": (NA, NA, FE, FE, FE, FE, FE),
    "NUL, lone surrogate, emoji": (NA, NA, FE, FE, FE, FE, FE),
    "deep parentheses in a box": (IE, UN, FE, FE, FE, FE, FE),
    "deep parentheses, 2,000 characters": (IE, UN, FE, FE, FE, FE, FE),
    "long sum, 2,000 characters": (IE, UN, FE, FE, FE, FE, FE),
    "many boxes of long sums": (WN, UN, FE, FE, FE, FE, FE),
    "spaces": (NA, NA, FE, FE, FE, FE, FE),
    "newlines then a number": (NA, UN, FE, FE, FE, FE, FE),
    "digit, spaces, digit": (NA, UN, FE, FE, FE, FE, FE),
    "many <tool_call> tags": (NA, NA, FE, FE, FE, FE, FE),
    "many closed <tool_call> blocks": (NA, NA, FE, FE, FE, FE, FE),
    "many call blocks": (NA, NA, FE, FE, FE, FE, FE),
    "open block, deep list": (NA, NA, FE, FE, FE, FE, FE),
    "deep lists": (NA, NA, FE, FE, FE, FE, FE),
    "deep objects": (NA, WA, FE, FE, FE, FE, FE),
    "deep JSON in a block": (NA, WA, FE, FE, FE, FE, FE),
    "many nameless objects": (NA, WA, FE, FE, FE, FE, FE),
    "many calls, no block": (NA, NA, FE, FE, FE, FE, FE),
    "many list items": (NA, WA, FE, FE, FE, FE, FE),
    "quotes": (NA, NA, FE, FE, FE, FE, FE),
    "open brace and quote pairs": (NA, NA, FE, FE, FE, FE, FE),
    "escaped quotes": (NA, NA, FE, FE, FE, FE, FE),
    "fences": (NA, NA, FE, FE, FE, FE, FE),
    "fenced calls": (NA, NA, FE, FE, FE, FE, FE),
    "long reasoning, then a call": (NA, WA, FE, FE, FE, FE, FE),
    "long prose, then a call": (NA, WA, FE, FE, FE, FE, FE),
    "box then open braces [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "many unclosed boxes [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "many \\boxed without a brace [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "many closed boxes, then one open [FC limit]": (WN, WA, FE, FE, FE, FE, FE),
    "nested boxes [FC limit]": (WN, OK, FE, FE, FE, FE, FE),
    "box closed by the last of a million braces [FC limit]": (IE, UN, FE, FE, FE, FE, FE),
    "box, a million close braces [FC limit]": (WN, OK, FE, FE, FE, FE, FE),
    "open braces [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "close braces [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "close then open braces [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "box far from the end, open [FC limit]": (WN, WA, FE, FE, FE, FE, FE),
    "box then spaces then brace [FC limit]": (NA, UN, FE, FE, FE, FE, FE),
    "short box, then a million characters and a } [FC limit]": (WN, UN, FE, FE, FE, FE, FE),
    "box with a brace, then a million characters and a } [FC limit]": (
        IE,
        UN,
        FE,
        FE,
        FE,
        FE,
        FE,
    ),
    "digits [FC limit]": (NA, UN, FE, FE, FE, FE, FE),
    "digits in a box [FC limit]": (IE, UN, FE, FE, FE, FE, FE),
    "numbers with commas [FC limit]": (NA, WA, FE, FE, FE, FE, FE),
    "fractions a/b [FC limit]": (NA, WA, FE, FE, FE, FE, FE),
    "minus signs and digits [FC limit]": (NA, WA, FE, FE, FE, FE, FE),
    "many numbers [FC limit]": (NA, WA, FE, FE, FE, FE, FE),
    "many \\frac [FC limit]": (NA, WA, FE, FE, FE, FE, FE),
    "nested \\frac in a box [FC limit]": (IE, UN, FE, FE, FE, FE, FE),
    "long number in JSON [FC limit]": (NA, UN, FE, FE, FE, FE, FE),
    "many \\text in a box [FC limit]": (IE, UN, FE, FE, FE, FE, FE),
    "Arabic-Indic digits [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "Arabic-Indic digits in a box [FC limit]": (IE, UN, FE, FE, FE, FE, FE),
    "emoji [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "NUL, lone surrogate, emoji [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "deep parentheses in a box [FC limit]": (IE, UN, FE, FE, FE, FE, FE),
    "many boxes of long sums [FC limit]": (WN, UN, FE, FE, FE, FE, FE),
    "spaces [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "newlines then a number [FC limit]": (NA, UN, FE, FE, FE, FE, FE),
    "digit, spaces, digit [FC limit]": (NA, UN, FE, FE, FE, FE, FE),
    "many <tool_call> tags [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "many closed <tool_call> blocks [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "many call blocks [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "open block, deep list [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "deep lists [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "deep objects [FC limit]": (NA, WA, FE, FE, FE, FE, FE),
    "deep JSON in a block [FC limit]": (NA, WA, FE, FE, FE, FE, FE),
    "many nameless objects [FC limit]": (NA, WA, FE, FE, FE, FE, FE),
    "many calls, no block [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "many list items [FC limit]": (NA, WA, FE, FE, FE, FE, FE),
    "quotes [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "open brace and quote pairs [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "escaped quotes [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "fences [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "fenced calls [FC limit]": (NA, NA, FE, FE, FE, FE, FE),
    "long reasoning, then a call [FC limit]": (NA, WA, OK, FE, OK, OK, OK),
    "long prose, then a call [FC limit]": (NA, WA, OK, FE, OK, OK, OK),
}


def test_every_case_has_an_expectation() -> None:
    assert set(EXPECTED) == set(CASES)
    assert list(VERIFIERS)[:2] == ["countdown", "gsm8k"] and len(VERIFIERS) == 7
    assert max(len(text) for text in CASES.values()) <= MAX_ACTION_CHARS


@pytest.mark.parametrize("case", list(CASES))
def test_worst_case_verdicts(case: str) -> None:
    text = CASES[case]
    for (name, check), reason in zip(VERIFIERS.items(), EXPECTED[case], strict=True):
        verdict = check(text)
        assert verdict.reason == reason, (case, name, verdict)
        assert verdict.correct == (reason == "ok")


def test_reason_vocabularies_are_unchanged() -> None:
    assert math_answer.REASONS == ("ok", "no_answer", "unparsable", "wrong_answer")
    assert countdown.REASONS[0] == "ok" and fc.REASONS[1] == "format_error"


def test_over_long_function_call_responses_are_rejected_by_name() -> None:
    response = "x" * fc.MAX_RESPONSE_CHARS + render_calls([RIGHT])
    for fmt in fc.FORMATS:
        verdict = fc.verify(response, GOLD, format=fmt)
        assert verdict.reason == "format_error"
        assert verdict.details["error"].startswith("response longer than"), verdict
    assert fc.verify(response[-fc.MAX_RESPONSE_CHARS :], GOLD).correct
