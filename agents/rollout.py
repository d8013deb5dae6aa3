"""Batched multi-turn rollouts: many episodes of an ``rrr/*`` env in lockstep.

Every phase (attempt, reflection, retry) of all running episodes is one batched generation
call, because on a CPU a batch of 16 has about ten times the throughput of batch 1, and on a
GPU far more. Generation goes through a :class:`Backend`; training code never talks to a
specific one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import gymnasium as gym

from rrr_env.tasks.base import Message

logger = logging.getLogger(__name__)

Tools = list[dict[str, Any]] | None


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one response.

    Attributes:
        max_new_tokens: Most tokens generated for one response.
        temperature: Sampling temperature; ``0`` means greedy decoding.
        top_p: Nucleus sampling mass.
        top_k: Keep only the ``top_k`` most likely tokens; ``0`` disables.
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        """Whether this is greedy decoding."""
        return self.temperature == 0


@dataclass(frozen=True)
class PhaseSampling:
    """Sampling parameters per phase (e.g. short reflections, long attempts).

    Attributes:
        attempt: For first attempts.
        reflection: For reflections.
        retry: For retries (attempts after the first).
    """

    attempt: SamplingParams = field(default_factory=SamplingParams)
    reflection: SamplingParams = field(default_factory=SamplingParams)
    retry: SamplingParams = field(default_factory=SamplingParams)

    @classmethod
    def same(cls, params: SamplingParams) -> PhaseSampling:
        """The same parameters for every phase."""
        return cls(params, params, params)

    def for_phase(self, phase: str) -> SamplingParams:
        """The parameters of ``phase``."""
        if phase not in ("attempt", "reflection", "retry"):
            raise ValueError(f"no sampling parameters for phase {phase!r}")
        return getattr(self, phase)


@dataclass
class Generation:
    """One generated response.

    Attributes:
        text: The decoded response, special tokens removed.
        prompt_ids: Token ids of the rendered prompt.
        completion_ids: Token ids of the response (without padding; ends with EOS if it stopped).
        stopped: Whether generation ended at an end-of-sequence token (not the length limit).
    """

    text: str
    prompt_ids: list[int]
    completion_ids: list[int]
    stopped: bool


class Backend(Protocol):
    """Anything that turns a batch of conversations into responses."""

    def generate(
        self,
        conversations: Sequence[list[Message]],
        params: SamplingParams,
        tools: Sequence[Tools] | None = None,
    ) -> list[Generation]:
        """One response per conversation, in order."""
        ...


@dataclass
class Turn:
    """One step of an episode.

    Attributes:
        phase: ``attempt``, ``reflection`` or ``retry``.
        attempt: 1-based answer number the step belongs to.
        text: The model's response.
        prompt_tokens: Tokens in the rendered prompt.
        completion_tokens: Tokens generated.
        stopped: Whether the response ended with EOS rather than the length limit.
        reward: The env's reward for this step.
        correct: The verdict for graded steps, else ``None``.
        reason: The verdict's reason for graded steps, else ``None``.
        answer: The verdict's canonical answer for graded steps, else ``None``.
        seconds: This turn's share of its batched generation call's wall time.
    """

    phase: str
    attempt: int
    text: str
    prompt_tokens: int
    completion_tokens: int
    stopped: bool
    reward: float
    correct: bool | None = None
    reason: str | None = None
    answer: str | None = None
    seconds: float = 0.0


@dataclass
class Episode:
    """One episode: the item, the sample number in its group, the turns and the conversation.

    Attributes:
        index: The item's index in the env's task.
        item_id: The item's id.
        sample: The episode's number within its group of episodes on the same item.
        turns: The steps taken.
        messages: The final conversation (the last observation).
        done: Whether the episode ended (``False`` when stopped by ``max_steps``).
    """

    index: int
    item_id: str
    sample: int
    turns: list[Turn] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    done: bool = False

    @property
    def graded(self) -> list[Turn]:
        """The steps that were graded (attempts and retries), in order."""
        return [t for t in self.turns if t.correct is not None]

    @property
    def solved_at(self) -> int | None:
        """The 1-based number of the first correct answer, or ``None``."""
        for number, turn in enumerate(self.graded, start=1):
            if turn.correct:
                return number
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Episode:
        """Inverse of :meth:`to_dict`."""
        turns = [Turn(**t) for t in data["turns"]]
        return cls(**{**data, "turns": turns})


def rollout(
    make_env: Callable[[], gym.Env],
    backend: Backend,
    indices: Sequence[int],
    *,
    group_size: int = 1,
    sampling: PhaseSampling | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    progress: bool = False,
    on_episode_end: Callable[[Episode], None] | None = None,
) -> list[Episode]:
    """Run ``group_size`` episodes on each item of ``indices``, all in lockstep.

    Args:
        make_env: Builds one env, e.g. ``lambda: gym.make("rrr/Countdown-v0", split="test")``.
        backend: Generates the responses.
        indices: Items to pose (``reset(options={"index": i})``).
        group_size: Episodes per item (a GRPO group, or samples for majority voting).
        sampling: Sampling parameters per phase (default: temperature 1, 256 tokens).
        seed: Episode ``k`` is reset with ``seed + k``.
        max_steps: Stop every episode after this many steps (e.g. 1: first attempts only).
        progress: Show a progress bar of finished episodes.
        on_episode_end: Called with each episode as soon as it ends (for a caller's own
            progress), before the slower episodes of the batch go on.

    Returns:
        The episodes, grouped by item in the order of ``indices``, ``group_size`` each.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 or None, got {max_steps}")
    sampling = sampling or PhaseSampling()
    envs, episodes, observations, infos = [], [], [], []
    for k, (index, sample) in enumerate((i, s) for i in indices for s in range(group_size)):
        env = make_env()
        obs, info = env.reset(seed=seed + k, options={"index": int(index)})
        envs.append(env)
        observations.append(obs)
        infos.append(info)
        episodes.append(Episode(int(index), info["item_id"], sample, messages=obs))
    active = list(range(len(envs)))
    step = 0
    bar = progress_bar(len(envs), desc="episodes", unit="ep", enabled=progress)
    while active and (max_steps is None or step < max_steps):
        by_phase: dict[str, list[int]] = {}
        for k in active:
            by_phase.setdefault(infos[k]["phase"], []).append(k)
        for phase, members in by_phase.items():
            started = time.perf_counter()
            generations = backend.generate(
                [observations[k] for k in members],
                sampling.for_phase(phase),
                [infos[k].get("tools") for k in members],
            )
            share = (time.perf_counter() - started) / len(members)
            for k, generation in zip(members, generations, strict=True):
                attempt = infos[k]["attempt"]
                obs, reward, terminated, truncated, info = envs[k].step(generation.text)
                verdict = info.get("verdict")
                episodes[k].turns.append(
                    Turn(
                        phase=phase,
                        attempt=attempt,
                        text=generation.text,
                        prompt_tokens=len(generation.prompt_ids),
                        completion_tokens=len(generation.completion_ids),
                        stopped=generation.stopped,
                        reward=float(reward),
                        correct=None if verdict is None else verdict.correct,
                        reason=None if verdict is None else verdict.reason,
                        answer=None if verdict is None else verdict.answer,
                        seconds=share,
                    )
                )
                episodes[k].messages = obs
                observations[k], infos[k] = obs, info
                if terminated or truncated:
                    episodes[k].done = True
                    bar.update(1)
                    if on_episode_end is not None:
                        on_episode_end(episodes[k])
        active = [k for k in active if not episodes[k].done]
        step += 1
    for k in active:  # stopped by max_steps
        bar.update(1)
        if on_episode_end is not None:
            on_episode_end(episodes[k])
    bar.close()
    for env in envs:
        env.close()
    return episodes


class _Silent:
    """What :func:`progress_bar` returns when disabled: every call does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(
    total: int | None, *, desc: str, unit: str, initial: int = 0, enabled: bool = True
) -> Any:
    """A ``tqdm`` bar, or a silent stand-in with the same methods when not ``enabled``.

    The jobs' one way to make a bar (``agents.evaluate``, ``agents.collect_failures``), so that
    tests can record progress by replacing it.
    """
    if not enabled:
        return _Silent()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit)
