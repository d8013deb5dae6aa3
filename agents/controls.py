"""Backends for the control arms of a head-to-head, and the token counter both trainers use.

The controls answer "is it the reflection that helps?":

- :class:`FixedReflectionBackend`: every reflection is the same generic text, so the retry sees
  a reflection request and a reflection that carries no information about the mistake.
- retry without reflection and best-of-k need no backend of their own: they are env options
  (``reflect=False``) and sampling options (``samples=k``, one attempt) of :func:`evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.backends import generate_by_phase
from agents.rollout import Backend, Generation, SamplingParams, Tools
from rrr_env.tasks.base import Message

#: The fixed reflection of the "generic reflection" control: true of every failure, specific
#: to none.
GENERIC_REFLECTION = (
    "My previous answer was wrong. I should read the task again carefully, check every step "
    "of my work, and make sure my final answer follows the required format exactly."
)


class FixedReflectionBackend:
    """Answers every reflection request with ``text``; passes other prompts to ``inner``.

    A conversation asks for a reflection when its last message is the user message
    ``reflection_request`` (the task's ``reflection_request``, which the env appends after a
    wrong answer). The fixed reflections cost no generation: their ``completion_ids`` are
    empty.

    Args:
        inner: The model's backend, for attempts and retries.
        reflection_request: The task's reflection request text.
        text: The reflection to give.
    """

    def __init__(
        self, inner: Backend, reflection_request: str, text: str = GENERIC_REFLECTION
    ) -> None:
        if not reflection_request:
            raise ValueError("reflection_request must be the task's non-empty request text")
        self.inner = inner
        self.reflection_request = reflection_request
        self.text = text

    def generate(
        self,
        conversations: Sequence[list[Message]],
        params: SamplingParams,
        tools: Sequence[Tools] | None = None,
    ) -> list[Generation]:
        """One response per conversation, in order: fixed for reflection requests."""

        def fixed(batch: list[list[Message]], *_: object) -> list[Generation]:
            return [
                Generation(self.text, prompt_ids=[], completion_ids=[], stopped=True) for _ in batch
            ]

        return generate_by_phase(
            conversations, params, tools, self.reflection_request, fixed, self.inner.generate
        )


class CountingBackend:
    """Passes calls to ``inner`` and counts the completion tokens it generated.

    Attributes:
        completion_tokens: Tokens generated so far.
        responses: Responses generated so far.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.completion_tokens = 0
        self.responses = 0

    def generate(
        self,
        conversations: Sequence[list[Message]],
        params: SamplingParams,
        tools: Sequence[Tools] | None = None,
    ) -> list[Generation]:
        """The inner backend's responses, counted."""
        generations = self.inner.generate(conversations, params, tools)
        self.completion_tokens += sum(len(g.completion_ids) for g in generations)
        self.responses += len(generations)
        return generations


__all__ = ["GENERIC_REFLECTION", "CountingBackend", "FixedReflectionBackend"]
