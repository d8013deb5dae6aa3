"""The result of verifying one model response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """What a verifier decided about one response.

    Attributes:
        correct: Whether the response solves the item.
        reason: Why, from the task's small fixed vocabulary (``"ok"`` when correct). The
            vocabularies follow the RRR paper's error taxonomy, e.g. Countdown's
            ``no_answer`` / ``invalid_expression`` / ``wrong_numbers`` / ``missed_target``.
        answer: The extracted answer in a canonical form (so that equal answers compare equal,
            as majority voting needs), or ``None`` when no answer could be extracted.
        details: Task-specific facts about the judgement (e.g. the value an expression took).
    """

    correct: bool
    reason: str
    answer: str | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def reward(self) -> float:
        """The binary reward of this verdict: 1.0 if correct, else 0.0."""
        return 1.0 if self.correct else 0.0
