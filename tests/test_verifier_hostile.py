"""Verdicts on hostile and edge-case input, for every verifier (issue 11, sections 2 and 4).

Correctness only: each worst case of ``benchmarks/bench_verify_worst_case.py`` gets the
verdict and reason it should get. How long the verifiers take on them is measured by that
benchmark, never asserted here.
"""

from __future__ import annotations

import pytest

from rrr_env.verifiers import countdown

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
