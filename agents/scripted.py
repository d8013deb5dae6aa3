"""Scripted policies and rewards, for tests and benchmarks where the model is not the point.

- :class:`ScriptedBackend`: a policy behind the :class:`~agents.rollout.Backend` interface;
  the response is a pure function of the conversation, so runs are reproducible without
  weights.
- :class:`MarkerRetry`: a scripted retry for RRR-GRPO (a ``TokenGenerator``) that is right
  exactly when the reflection contains a marker word, so that the reflection decides the
  retry's success in a known, learnable way (``benchmarks/sanity_check.py``).
- :class:`MarkerTask`: a task whose verifier accepts exactly the responses that contain a
  marker word, the same sanity check for RISE-AWR.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from agents.rollout import Generation, SamplingParams, Tools
from rrr_env.tasks.base import Message, Task
from rrr_env.tasks.countdown_solver import solve
from rrr_env.verdict import Verdict


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


def has_marker(text: str, marker: str) -> bool:
    """Whether ``text`` contains the word ``marker`` (case-insensitive, whole word).

    >>> has_marker("My mistake was the sign.", "mistake"), has_marker("mistakes", "mistake")
    (True, False)
    """
    return re.search(rf"(?<![A-Za-z]){re.escape(marker)}(?![A-Za-z])", text, re.I) is not None


#: A Countdown task as the env poses it; the last match in a conversation is the retry's.
COUNTDOWN_TASK = re.compile(
    r"Using the numbers \[([\d, ]+)\], create an equation that equals (\d+)"
)


def countdown_answer(context: str) -> str | None:
    """A correct answer to the last Countdown task posed in ``context``, or None if none."""
    found = COUNTDOWN_TASK.findall(context)
    if not found:
        return None
    numbers, target = found[-1]
    solution = solve([int(n) for n in numbers.split(",")], int(target))
    return None if solution is None else f"\\boxed{{{solution}}}"


class MarkerRetry:
    """A scripted retry that succeeds exactly when the reflection before it has the marker.

    A ``TokenGenerator`` (``agents.reflection_rollout``) for the retry phase: pass it as
    ``retry_generator`` to ``agents.grpo_reflect.build_trainer``. It decodes each retry
    context, takes the reflection (the text after the last ``reflection_request``, which
    runs up to the retry request), and answers with ``answer(context)`` if
    :func:`has_marker`, else with ``wrong``. The env's verifier grades the answer as usual,
    so the reward reaches the trainer through the real path.

    Args:
        tokenizer: The policy's tokenizer (decodes contexts, encodes answers).
        marker: The word that makes the retry right.
        reflection_request: The env's reflection request; the marker is looked for after its
            last occurrence, so the retry request that follows the reflection must not
            contain it (``benchmarks.sanity_check.check_marker_free`` checks a dataset).
        eos_id: Appended to every answer, as a model's end of turn.
        answer: The right answer for a context (default: :func:`countdown_answer`).
        wrong: The answer when the reflection lacks the marker.

    Attributes:
        seen: Per call, whether each reflection had the marker.
    """

    def __init__(
        self,
        tokenizer: Any,
        marker: str,
        reflection_request: str,
        eos_id: int,
        *,
        answer: Callable[[str], str | None] = countdown_answer,
        wrong: str = "\\boxed{0}",
    ) -> None:
        self.tokenizer, self.marker, self.eos_id = tokenizer, marker, eos_id
        self.reflection_request = reflection_request
        self.answer, self.wrong = answer, wrong
        self.seen: list[list[bool]] = []

    def reflection(self, context: str) -> str:
        """The text of ``context`` after its last reflection request."""
        if self.reflection_request not in context:
            raise ValueError("a retry context without the reflection request reached MarkerRetry")
        return context.rsplit(self.reflection_request, 1)[1]

    def __call__(
        self, prompt_ids: Sequence[list[int]], max_new_tokens: int, group_size: int = 1
    ) -> tuple[list[list[int]], None]:
        out, seen = [], []
        for ids in prompt_ids:
            context = self.tokenizer.decode(ids, skip_special_tokens=True)
            marked = has_marker(self.reflection(context), self.marker)
            text = (self.answer(context) if marked else None) or self.wrong
            out.append(self.tokenizer.encode(text, add_special_tokens=False) + [self.eos_id])
            seen.append(marked)
        self.seen.append(seen)
        return out, None


class MarkerTask(Task):
    """``inner``'s items and prompts, with a verifier that wants the marker word, not the answer.

    ``ReflectRetryEnv(task=MarkerTask(...))`` rewards exactly the responses that contain
    ``marker`` (:func:`has_marker`): a known, learnable reward for checking that a trainer
    (RISE-AWR's weighted regression) raises the rate of what it is rewarded for.
    """

    reasons = ("ok", "no_marker")

    def __init__(self, inner: Task, marker: str) -> None:
        self.inner, self.marker = inner, marker
        self.name = f"marker:{inner.name}"

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> Any:
        return self.inner[index]

    def item_id(self, item: Any) -> str:
        return self.inner.item_id(item)

    def prompt(self, item: Any) -> list[Message]:
        return self.inner.prompt(item)

    def retry_prompt(self, item: Any) -> list[Message]:
        return self.inner.retry_prompt(item)

    def tools(self, item: Any) -> list[dict[str, Any]] | None:
        return self.inner.tools(item)

    def problem_key(self, item: Any) -> str:
        return self.inner.problem_key(item)

    def verify(self, item: Any, response: str) -> Verdict:
        """Correct iff ``response`` contains the marker word."""
        if has_marker(response, self.marker):
            return Verdict(True, "ok", answer=self.marker)
        return Verdict(False, "no_marker")
