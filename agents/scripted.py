"""A scripted policy behind the :class:`~agents.rollout.Backend` interface.

For tests and benchmarks where the model is not the point: the response is a pure function
of the conversation, so runs are reproducible without weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agents.rollout import Generation, SamplingParams, Tools
from rrr_env.tasks.base import Message


class ScriptedBackend:
    """Responds with ``policy(conversation)``; counts calls and conversations.

    Args:
        policy: Maps a conversation to the response text.
    """

    def __init__(self, policy: Callable[[list[Message]], str]) -> None:
        self.policy = policy
        self.calls = 0
        self.conversations = 0

    def generate(
        self,
        conversations: Sequence[list[Message]],
        params: SamplingParams,
        tools: Sequence[Tools] | None = None,
    ) -> list[Generation]:
        """One scripted response per conversation; token counts are character counts."""
        self.calls += 1
        self.conversations += len(conversations)
        out = []
        for conversation in conversations:
            text = self.policy(conversation)
            prompt_chars = sum(len(m["content"]) for m in conversation)
            out.append(Generation(text, [0] * prompt_chars, [0] * len(text), True))
        return out
