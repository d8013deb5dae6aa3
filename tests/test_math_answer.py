"""GSM8K answer verifier: words that change the value, labels before "=", whole responses.

Regression tests for issue 11, section 2: each case below was judged correct before.
"""

from __future__ import annotations

import pytest

from rrr_env.verifiers import math_answer
from rrr_env.verifiers.math_answer import REASONS, UNIT_WORDS, verify

# Words that change the value (or say the number is not the answer): never dropped as units.
VALUE_CHANGING = [
    (r"\boxed{not 5}", "5"),
    (r"\boxed{5 squared}", "5"),
    (r"\boxed{twice 5}", "5"),
    (r"\boxed{5 cubed}", "5"),
    (r"\boxed{half of 10}", "10"),
    (r"\boxed{5 dozen}", "5"),
    (r"\boxed{5 million}", "5"),
    (r"\boxed{5 thousand}", "5"),
    (r"\boxed{negative 5}", "5"),
    (r"\boxed{minus 5}", "5"),
    (r"\boxed{approximately 5}", "5"),
    (r"\boxed{at least 5}", "5"),
    (r"\boxed{5 or more}", "5"),
    (r"\boxed{5 less}", "5"),
    (r"\boxed{5 percent of 40}", "5"),
    (r"\boxed{5 \text{ squared}}", "5"),
    (r"\boxed{\text{not } 5}", "5"),
    (r"\boxed{5x}", "5"),
    (r"\boxed{5 apples}", "5"),  # not a unit: a count noun is not on the closed list either
    (r"\boxed{5^2}", "5"),
    (r"\boxed{5!}", "5"),
]


@pytest.mark.parametrize(("response", "gold"), VALUE_CHANGING)
def test_words_that_change_the_value_are_unparsable(response: str, gold: str) -> None:
    verdict = verify(response, gold)
    assert not verdict.correct
    assert verdict.reason == "unparsable", verdict


# What stands before "=" must be a name for the answer, not another number.
FALSE_EQUATIONS = [
    (r"\boxed{5 = 6}", "6"),
    (r"\boxed{3 + 4 = 6}", "6"),
    (r"\boxed{x = 5 = 6}", "6"),
    (r"\boxed{not x = 6}", "6"),
    (r"\boxed{5 \approx 6}", "6"),
    (r"\boxed{x_1 = 6}", "6"),
]


@pytest.mark.parametrize(("response", "gold"), FALSE_EQUATIONS)
def test_numbers_before_equals_are_unparsable(response: str, gold: str) -> None:
    verdict = verify(response, gold)
    assert verdict.reason == "unparsable", verdict


@pytest.mark.parametrize(
    "response",
    [
        r"\boxed{x = 6}",
        r"\boxed{\text{Total} = 6}",
        r"\boxed{total cost = \$6}",
        r"\boxed{6 \text{ dollars per hour}}",
        r"\boxed{6 km/h}",
        r"\boxed{6\,\text{cm}^2}",
        r"\boxed{6 Dollars}",
        r"\boxed{€6}",
        r"\boxed{6 percent}",
    ],
)
def test_units_currency_and_labels_still_pass(response: str) -> None:
    assert verify(response, "6").correct


def test_unit_list_is_closed_and_lower_case() -> None:
    assert all(word == word.lower() for word in UNIT_WORDS)
    assert not {"not", "squared", "twice", "half", "dozen", "million", "minus"} & UNIT_WORDS


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        ("\\boxed{٦}", "6"),  # Arabic-Indic six: only ASCII digits are read
        ("\\boxed{６}", "6"),  # fullwidth six
        ("the answer is ٦", "6"),
    ],
)
def test_non_ascii_digits_are_not_numbers(response: str, gold: str) -> None:
    assert not verify(response, gold).correct


# -- the whole response is judged ------------------------------------------------------------

PAD = "x" * 100_000


@pytest.mark.parametrize(
    ("response", "gold", "reason"),
    [
        # The box is the answer, however far back: before, only the last 100k characters were
        # searched for a box, so the trailing number was taken instead.
        (r"\boxed{5}" + PAD + " 6", "6", "wrong_answer"),
        (r"\boxed{5}" + PAD + " 6", "5", "ok"),
        (r"\boxed{5}" + "x" * 999_000 + " 6", "6", "wrong_answer"),
        # No box: the last number, however long the text after it.
        ("answer 5 " + "y" * 200_000, "5", "ok"),
        ("6 " + "}" * 999_000, "6", "ok"),
        # A box left open at the end does not hide the box before it.
        (r"\boxed{5} then \boxed{" + "x" * 10, "5", "ok"),
        (r"\boxed{5} then \boxed{" + "x" * 999_000, "5", "ok"),
        # A box that is not closed within the answer bound is not an earlier box's stand-in.
        (r"\boxed{5} \boxed{" + "x" * 5_000 + "}", "5", "unparsable"),
        (r"\boxed{5} \boxed{" + "{" * 5_000 + "}", "5", "unparsable"),
    ],
)
def test_long_responses_are_judged_whole(response: str, gold: str, reason: str) -> None:
    verdict = verify(response, gold)
    assert verdict.reason == reason, verdict
    assert verdict.correct == (reason == "ok")


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (r"$x^{2}$", "unparsable"),  # the 2 of a power is not the answer 2
        (r"$\sqrt{2}$", "unparsable"),
        (r"\frac{1}{" + " " * 30 + "2}", "unparsable"),  # a fraction with odd spacing
        (r"\frac{1" + " " * 30 + "}{2}", "unparsable"),
        ("so\n" + " " * 2_000 + "2", "unparsable"),  # more than is read before the number
        (r"$\text{2}$", "ok"),
        ("9" * 2_000 + " and 2", "ok"),
        ("2" * 2_000, "unparsable"),
    ],
)
def test_last_number_is_read_only_where_it_is_unambiguous(response: str, reason: str) -> None:
    assert verify(response, "2").reason == reason


def test_reasons_are_unchanged() -> None:
    assert REASONS == ("ok", "no_answer", "unparsable", "wrong_answer")
    assert math_answer.MAX_ANSWER_CHARS == 1_000


# -- against an independent grader (math-verify) ---------------------------------------------

CORPUS_SIZE = 2_000  # the benchmark grades 5,000; this many keep every kind well covered


@pytest.fixture(scope="module")
def graded() -> list[dict]:
    pytest.importorskip("math_verify", reason="math-verify is in the dev extra")
    from benchmarks.bench_math_agreement import build_corpus, grade_corpus

    return grade_corpus(build_corpus(CORPUS_SIZE, seed=1))


def test_every_disagreement_with_math_verify_is_an_expected_class(graded: list[dict]) -> None:
    from benchmarks.bench_math_agreement import unexpected_disagreements

    bad = unexpected_disagreements(graded)
    assert not bad, [(r["kind"], r["gold"], r["response"][-80:]) for r in bad[:10]]
    agree = sum(r["rrr_correct"] == r["math_verify_correct"] for r in graded)
    assert agree >= 0.8 * len(graded)


def test_corpus_verdicts_match_what_the_generator_meant(graded: list[dict]) -> None:
    from benchmarks.bench_math_agreement import HONEST_KINDS, KINDS

    assert {r["kind"] for r in graded} == set(KINDS)
    for row in graded:
        if row["kind"] in HONEST_KINDS:
            assert row["rrr_correct"] == row["right"], row
        elif row["kind"] != "rounded_decimal":
            assert not row["rrr_correct"], row


def test_expected_disagreement_classes_are_few_and_explained() -> None:
    from benchmarks.bench_math_agreement import EXPECTED_DISAGREEMENTS, KINDS

    assert len(EXPECTED_DISAGREEMENTS) <= 15
    for kind, (direction, why) in EXPECTED_DISAGREEMENTS.items():
        assert kind in KINDS and direction in ("rrr rejects", "rrr accepts", "both") and why
