"""The papers' metrics, computed from episodes.

RRR reports 1st-try and 2nd-try accuracy and an error taxonomy of first attempts. RISE
reports m1@t1 (one sample, turn 1), m5@t1 (majority of 5 samples at turn 1), m1@tk
(majority over k turns, no oracle) and p1@tk (with an oracle: solved at any of k turns).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from agents.rollout import Episode, Turn


def _mean(values: Sequence[bool | float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def majority_correct(turns: Sequence[Turn]) -> bool:
    """Whether the most common answer among ``turns`` is correct.

    Turns with no extractable answer do not vote; ties go to the answer seen first; no answer
    at all counts as wrong. Equal canonical answers have equal verdicts, so the verdict of any
    turn that gave the winning answer is the verdict of the vote.
    """
    votes = Counter(t.answer for t in turns if t.answer is not None)
    if not votes:
        return False
    winner = max(
        votes, key=lambda a: (votes[a], -next(i for i, t in enumerate(turns) if t.answer == a))
    )
    return bool(next(t.correct for t in turns if t.answer == winner))


def group_by_item(episodes: Sequence[Episode]) -> dict[int, list[Episode]]:
    """Episodes keyed by item index, in first-seen order."""
    groups: dict[int, list[Episode]] = {}
    for episode in episodes:
        groups.setdefault(episode.index, []).append(episode)
    return groups


def rrr_metrics(episodes: Sequence[Episode]) -> dict[str, Any]:
    """1st-try and 2nd-try accuracy, how many failures a reflection fixed, and the taxonomy.

    ``second_try`` is the share of episodes solved by the first or the second answer, as
    the RRR paper reports it.
    """
    graded = [e.graded for e in episodes if e.graded]
    failed_first = [g for g in graded if not g[0].correct]
    retried = [g for g in failed_first if len(g) > 1]
    return {
        "episodes": len(graded),
        "first_try": _mean([g[0].correct for g in graded]),
        "second_try": _mean([any(t.correct for t in g[:2]) for g in graded]),
        "retried": len(retried),
        "fixed_by_retry": sum(bool(g[1].correct) for g in retried),
        "first_try_errors": dict(Counter(g[0].reason for g in failed_first).most_common()),
    }


def rise_metrics(episodes: Sequence[Episode]) -> dict[str, Any]:
    """m1@t1, m{k}@t1, m1@t{T}, p1@t{T}, accuracy per turn and flips between turns.

    ``k`` is the number of samples per item (the group size) and ``T`` the largest number of
    graded turns. ``m1@t{T}`` (majority over turns) is meaningful for ``feedback="none"``
    episodes, which grade every turn; with binary feedback an episode stops when solved.
    """
    graded = [e.graded for e in episodes if e.graded]
    groups = group_by_item(episodes)
    samples = max((len(g) for g in groups.values()), default=0)
    turns = max((len(g) for g in graded), default=0)
    flips = Counter()
    for g in graded:
        for before, after in zip(g, g[1:], strict=False):
            if before.correct and not after.correct:
                flips["right_to_wrong"] += 1
            elif after.correct and not before.correct:
                flips["wrong_to_right"] += 1
    metrics: dict[str, Any] = {
        "episodes": len(graded),
        "items": len(groups),
        "m1@t1": _mean([g[0].correct for g in graded]),
        f"m{samples}@t1": _mean(
            [
                majority_correct([e.graded[0] for e in group if e.graded])
                for group in groups.values()
            ]
        ),
        f"m1@t{turns}": _mean([majority_correct(g) for g in graded]),
        f"p1@t{turns}": _mean([any(t.correct for t in g) for g in graded]),
        "accuracy_by_turn": [
            _mean([g[t].correct for g in graded if len(g) > t]) for t in range(turns)
        ],
        "right_to_wrong": flips["right_to_wrong"],
        "wrong_to_right": flips["wrong_to_right"],
    }
    return metrics
