"""What every adapter shares: building the env, listing its items, reading model text."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym

from rrr_env.env import ReflectRetryEnv
from rrr_env.registration import register_all
from rrr_env.tasks.base import Message, check_int


def make_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> gym.Env:
    """``gym.make(env_id, **env_kwargs)``, checked to be a :class:`ReflectRetryEnv`.

    Raises:
        TypeError: ``env_id`` names an env that is not a ``ReflectRetryEnv``.
    """
    register_all()
    env = gym.make(env_id, **dict(env_kwargs or {}))
    if not isinstance(env.unwrapped, ReflectRetryEnv):
        env.close()
        raise TypeError(f"{env_id!r} is not an rrr env (a ReflectRetryEnv); use an rrr/* id")
    return env


def check_linear(env: gym.Env, framework: str) -> None:
    """Raise when the env restarts the conversation for the retry, which ``framework`` cannot.

    The framework's loop appends the env's messages to one growing conversation;
    ``retry_context="reflection"`` replaces the conversation instead.
    """
    if env.unwrapped.retry_context != "conversation":
        raise ValueError(
            f"{framework} appends every turn to one conversation, so it cannot pose the retry "
            "in a fresh conversation: use retry_context='conversation' (the default), or an "
            "adapter that can (rrr_env.integrations.trl.rrr_rollout_func, "
            "rrr_env.integrations.verifiers)"
        )


def item_indices(env: gym.Env, n: int | None, start: int = 0) -> range:
    """Item indices ``start .. start + n - 1`` of the env's task (all from ``start`` if None)."""
    size = len(env.unwrapped.task)
    start = check_int("start", start, minimum=0)
    if n is None:
        return range(start, size)
    n = check_int("n", n, minimum=1)
    if start + n > size:
        raise ValueError(f"asked for {n} items from index {start}, the task has {size}")
    return range(start, start + n)


def item_rows(
    env_id: str,
    split: str | None,
    n: int | None,
    env_kwargs: Mapping[str, Any],
    *,
    start: int = 0,
) -> list[dict[str, Any]]:
    """One row per item: ``prompt`` (the first observation), ``index`` and ``item_id``.

    ``split`` is passed to the env as its ``split`` option unless it is None.

    Raises:
        ValueError: the env passes its items' tools to the chat template
            (``prompt_style="chat_template"``), which no adapter's dataset can carry per row.
    """
    kwargs = dict(env_kwargs)
    if split is not None:
        kwargs["split"] = split
    env = make_env(env_id, kwargs)
    try:
        rows = []
        for index in item_indices(env, n, start):
            obs, info = env.reset(options={"index": index})
            if info.get("tools") is not None:
                raise ValueError(
                    f"{env_id} passes each item's tools to the chat template, which the "
                    "frameworks' datasets cannot carry per row; use a prompt_style that "
                    "writes them into the prompt (the default)"
                )
            rows.append({"prompt": obs, "index": index, "item_id": info["item_id"]})
        return rows
    finally:
        env.close()


def env_kwargs_with_split(split: str | None, env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` with ``split`` added (unless None): what the exported rows were made with."""
    kwargs = dict(env_kwargs)
    if split is not None:
        kwargs["split"] = split
    return kwargs


def dumps_kwargs(env_kwargs: Mapping[str, Any]) -> str:
    """Env keyword arguments as JSON, so that a parquet column keeps one schema for any env.

    Raises:
        TypeError: a value has no JSON form (e.g. a ``datasets.Dataset`` passed as ``data=``;
            pass a path or a hub id instead).
    """
    try:
        return json.dumps(dict(env_kwargs), sort_keys=True)
    except TypeError as error:
        raise TypeError(
            f"env kwargs must be JSON values to be written into a dataset ({error}); pass data= "
            "as a path or hub id, not an object"
        ) from None


def loads_kwargs(value: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The inverse of :func:`dumps_kwargs` (a mapping or None passes through as a dict)."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = json.loads(value) if value else {}
    # JSON has no tuples: ranges such as number_range come back as lists, which tasks accept.
    return dict(value)


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            (part.get("text") if isinstance(part, Mapping) else getattr(part, "text", None)) or ""
            for part in content
        )
    return "" if content is None else str(content)


def completion_text(completion: Any) -> str:
    """The model's text in a TRL-style completion: a string, or the last assistant message."""
    if isinstance(completion, str):
        return completion
    return last_assistant_text(completion)


def last_assistant_text(messages: Sequence[Any]) -> str:
    """The content of the last assistant message of ``messages`` ("" when there is none)."""
    for message in reversed(list(messages)):
        role = message.get("role") if isinstance(message, Mapping) else message.role
        if role == "assistant":
            content = (
                message.get("content")
                if isinstance(message, Mapping)
                else getattr(message, "content", None)
            )
            return message_text(content)
    return ""


def turn_text(messages: Sequence[Message]) -> str:
    """The env's new user turns as one text (frameworks that take one user message per turn)."""
    return "\n\n".join(m["content"] for m in messages if m["role"] == "user")


def max_model_turns(env: gym.Env) -> int:
    """The most assistant turns an episode of ``env`` can take."""
    inner = env.unwrapped
    return 2 * inner.max_attempts - 1 if inner.reflect else inner.max_attempts


class Episode:
    """One env episode driven by text, reporting what each step added to the conversation.

    Args:
        env_id: An ``rrr/*`` id.
        env_kwargs: Its keyword arguments.
        framework: Name of a framework whose loop keeps one growing conversation; the env
            must then pose the retry in the same conversation (see :func:`check_linear`).
    """

    def __init__(
        self, env_id: str, env_kwargs: Mapping[str, Any] | None = None, framework: str | None = None
    ) -> None:
        self.env = make_env(env_id, env_kwargs)
        if framework is not None:
            check_linear(self.env, framework)
        self.observation: list[Message] = []
        self.rewards: list[float] = []
        self.info: dict[str, Any] = {}
        #: Whether the last step started a fresh conversation (see :meth:`step`).
        self.restarted = False

    def reset(self, index: int) -> list[Message]:
        """Start the episode on item ``index``; return the first observation."""
        self.observation, self.info = self.env.reset(options={"index": index})
        self.rewards = []
        self.restarted = False
        return [dict(m) for m in self.observation]

    def step(self, text: str) -> tuple[list[Message], float, bool, dict[str, Any]]:
        """Step with the model's ``text``: the messages the env added, reward, done, info.

        When the env starts a fresh conversation instead (``retry_context="reflection"``),
        :attr:`restarted` is True and the added messages are its user turns.
        """
        previous = self.observation
        obs, reward, terminated, truncated, info = self.env.step(text)
        self.observation, self.info = obs, info
        self.rewards.append(float(reward))
        closed = [*previous, {"role": "assistant", "content": text}]
        self.restarted = obs[: len(closed)] != closed
        if self.restarted:
            added = [dict(m) for m in obs if m["role"] == "user"]
        else:
            added = [dict(m) for m in obs[len(closed) :]]
        return added, float(reward), bool(terminated or truncated), info

    @property
    def phase(self) -> str:
        """What the next action is: ``attempt``, ``reflection``, ``retry`` or ``done``."""
        return self.info.get("phase", "done")

    @property
    def episode_return(self) -> float:
        """The sum of the rewards so far (what ``gym.make`` episodes return)."""
        return float(sum(self.rewards))

    def close(self) -> None:
        """Close the env."""
        self.env.close()


def verdict_message(info: Mapping[str, Any]) -> str:
    """A closing message for a finished episode: whether its last graded answer was right."""
    verdict = info.get("verdict")
    if verdict is None:
        return "The episode is over."
    return "Your answer is correct." if verdict.correct else "Your answer is incorrect."
