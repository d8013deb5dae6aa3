"""Answers a greedy backend already gave, replayed from an episode file instead of generated.

Greedy decoding is a function of the conversation, the token limit and the weights. Arms of a
head-to-head that share a model's first attempt (the vanilla, retry and fixed-reflection
controls, and an RRR policy whose adapter is off while it answers) would otherwise generate the
same 200 greedy first attempts again, about half an hour each on a 2-core CPU for a 1.5B model.
:class:`GreedyReplay` serves those from the episodes of the arm that generated them and passes
everything else (reflections, retries, sampled turns, other token limits) to the real backend.

A recorded answer is replayed only where the replay is exact: the call is greedy, the answer
would come out the same under the call's token limit (it stopped within it, or was cut at that
very limit), and the tokenizer encodes its text back to the recorded number of tokens. Anything
else is generated afresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from agents.backends import render_prompt
from agents.rollout import Backend, Episode, Generation, SamplingParams, Tools
from rrr_env.tasks.base import Message


@dataclass(frozen=True)
class RecordedAnswer:
    """A greedy answer as an episode file recorded it.

    Attributes:
        text: The decoded answer.
        completion_tokens: Tokens generated (with the end-of-sequence token if it stopped).
        stopped: Whether it ended at an end-of-sequence token rather than the token limit.
    """

    text: str
    completion_tokens: int
    stopped: bool

    def holds_under(self, max_new_tokens: int) -> bool:
        """Whether greedy decoding with ``max_new_tokens`` gives this same answer.

        An answer that stopped within the limit is the same under any limit it fits; one cut
        by its limit only under that very limit.
        """
        if self.stopped:
            return self.completion_tokens <= max_new_tokens
        return self.completion_tokens == max_new_tokens


def conversation_key(conversation: Sequence[Message], tools: Tools = None) -> str:
    """A canonical string of a conversation and its tools (the replay's lookup key)."""
    return json.dumps([list(conversation), tools], sort_keys=True, ensure_ascii=False)


def first_observation(make_env: Callable[[], gym.Env], index: int) -> list[Message]:
    """The conversation an env poses for item ``index`` before any answer.

    Raises:
        ValueError: The first observation depends on the reset seed, so an episode's first
            conversation cannot be rebuilt from its item alone.
    """
    env = make_env()
    try:
        observations = [env.reset(seed=s, options={"index": int(index)})[0] for s in (0, 1)]
    finally:
        env.close()
    if observations[0] != observations[1]:
        raise ValueError(
            f"item {index}'s first observation depends on the reset seed; its first attempt "
            "cannot be replayed"
        )
    return observations[0]


def recorded_first_attempts(
    episodes: Sequence[Episode], make_env: Callable[[], gym.Env]
) -> dict[str, RecordedAnswer]:
    """Each episode's first attempt, keyed by the conversation it answered.

    The conversation is the env's first observation of the episode's item (an episode's final
    messages need not hold it: a retry from the reflection alone drops the attempt). An
    episode whose first turn is not an attempt records nothing.

    Args:
        episodes: Episodes of the model whose answers are to be replayed.
        make_env: Builds the env (and options) the episodes ran in.

    Raises:
        ValueError: The env's first observation depends on the reset seed.
    """
    recorded: dict[str, RecordedAnswer] = {}
    for episode in episodes:
        if not episode.turns or episode.turns[0].phase != "attempt":
            continue
        first = episode.turns[0]
        key = conversation_key(first_observation(make_env, episode.index))
        recorded[key] = RecordedAnswer(first.text, first.completion_tokens, first.stopped)
    return recorded


class GreedyReplay:
    """A backend that replays recorded greedy answers and generates everything else.

    Args:
        inner: The backend of the model that generated the recording (same weights, dtype and
            engine), for every conversation not replayed.
        tokenizer: The model's tokenizer (prompt ids, and the check that a replayed text
            encodes to the recorded number of tokens).
        recorded: Answers by :func:`conversation_key` (see :func:`recorded_first_attempts`).
        eos_token_id: Appended to the ids of an answer that stopped (default: the
            tokenizer's).

    Attributes:
        replayed: Answers served from the recording so far.
        generated: Answers passed to ``inner`` so far.
    """

    def __init__(
        self,
        inner: Backend,
        tokenizer: Any,
        recorded: Mapping[str, RecordedAnswer],
        *,
        eos_token_id: int | None = None,
    ) -> None:
        eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token_id; pass eos_token_id")
        self.inner = inner
        self.tokenizer = tokenizer
        self.recorded = dict(recorded)
        self.eos_token_id = int(eos)
        self.replayed = 0
        self.generated = 0

    @classmethod
    def from_episodes(
        cls,
        path: Path,
        make_env: Callable[[], gym.Env],
        inner: Backend,
        tokenizer: Any,
    ) -> GreedyReplay:
        """A replay of the first attempts in the episode file at ``path``, run in ``make_env``."""
        from agents.evaluate import read_episodes

        return cls(
            inner,
            tokenizer,
            recorded_first_attempts(read_episodes(path), make_env),
        )

    def _replay(
        self, conversation: list[Message], tools: Tools, max_new_tokens: int
    ) -> Generation | None:
        answer = self.recorded.get(conversation_key(conversation, tools))
        if answer is None or not answer.holds_under(max_new_tokens):
            return None
        completion = self.tokenizer.encode(answer.text, add_special_tokens=False)
        if answer.stopped:
            completion.append(self.eos_token_id)
        if len(completion) != answer.completion_tokens:
            return None  # the text does not round-trip to the recorded tokens: generate it
        prompt = render_prompt(self.tokenizer, conversation, tools)
        return Generation(answer.text, prompt, completion, answer.stopped)

    def generate(
        self,
        conversations: Sequence[list[Message]],
        params: SamplingParams,
        tools: Sequence[Tools] | None = None,
    ) -> list[Generation]:
        """One response per conversation, in order; recorded greedy answers are replayed."""
        tools = list(tools) if tools is not None else [None] * len(conversations)
        out: list[Generation | None] = [None] * len(conversations)
        if params.greedy:
            for k, (conversation, tool) in enumerate(zip(conversations, tools, strict=True)):
                out[k] = self._replay(conversation, tool, params.max_new_tokens)
        rest = [k for k, generation in enumerate(out) if generation is None]
        self.replayed += len(out) - len(rest)
        self.generated += len(rest)
        if rest:
            generated = self.inner.generate(
                [conversations[k] for k in rest], params, [tools[k] for k in rest]
            )
            for k, generation in zip(rest, generated, strict=True):
                out[k] = generation
        return out  # type: ignore[return-value]
