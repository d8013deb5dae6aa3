"""ReflectRetryEnv: attempt -> reflection -> retry, over any verifiable task."""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from rrr_env.describe import check_options
from rrr_env.spaces import Conversation, UnicodeText
from rrr_env.tasks import check_task_name, make_task
from rrr_env.tasks.base import (
    Message,
    Task,
    check_bool,
    check_choice,
    check_index,
    check_int,
)
from rrr_env.verdict import Verdict

Phase = Literal["attempt", "reflection", "retry", "done"]
FEEDBACK_MODES = ("binary", "none")
#: What the retry sees after a reflection (``retry_context``).
RETRY_CONTEXTS = ("conversation", "reflection")

#: With ``retry_context="reflection"``, the first user turn of the retry: this, then the task.
REFLECTION_NOTE = (
    "Your earlier answer to the problem below was incorrect. Your reflection on what went "
    "wrong:\n\n{reflection}\n\nThe problem:\n\n"
)

#: The user turn between attempts when the env must not reveal correctness
#: (``reflect=False, feedback="none"``: RISE's evaluation without an oracle).
NEUTRAL_RETRY_REQUEST = "Please review your previous answer and then answer the question again."

#: Longest action accepted, in characters. Model responses are far shorter; a longer one is a bug.
MAX_ACTION_CHARS = 1_000_000


class ReflectRetryEnv(gym.Env[list[Message], str]):
    """A multi-turn text environment: attempt, reflect on a wrong answer, retry.

    ## Description

    The agent answers a verifiable task (Countdown, function calling, GSM8K, ...). With
    ``reflect=True`` (Reflect, Retry, Reward) a wrong answer is followed by a request to
    reflect on the mistake, then by the task posed again, with the reflection in context.
    With ``reflect=False`` it is the multi-turn MDP of RISE: a wrong answer is followed by a
    feedback message and the next attempt.

    ## Action Space

    ``UnicodeText(1_000_000)``: the model's response to the last message, any ``str``.

    ## Observation Space

    ``Conversation``: the conversation so far, a list of ``{"role", "content"}`` messages,
    ready for ``tokenizer.apply_chat_template``. A fresh list every step.

    ## Rewards

    1.0 for a graded answer that the task's verifier accepts, 0.0 for one it rejects. A
    reflection step earns 0.0: credit assignment to the reflection is the trainer's job.

    ## Starting State

    ``reset(seed=s)`` draws an item with the env's own RNG; ``reset(options={"index": i})``
    poses item ``i`` (so that a GRPO group can share one item). ``info["index"]`` says which
    item was posed, either way.

    ## Episode End

    ``terminated`` when an answer is correct (with ``feedback="binary"``) or the last of
    ``max_attempts`` answers has been graded. ``truncated`` only through a ``TimeLimit``
    wrapper. Stepping a finished episode raises ``RuntimeError``.

    ## Info

    ``phase``: what the next action is (``"attempt"``, ``"reflection"``, ``"retry"``, or
    ``"done"``); ``attempt``: the 1-based number of the current answer; ``index``: the index
    of the episode's item in the task (``env.unwrapped.task[info["index"]]`` is the item;
    pass it as ``reset(options={"index": ...})`` to pose the item again); ``item_id``: the
    item's stable identifier; ``verdicts``: a tuple of the verdicts of all graded answers so
    far; ``verdict``: the verdict of the answer graded by this step (only on steps that
    grade); ``tools``: the item's tool schemas, for tasks that have them.

    ## Arguments

    - ``task``: a task name (``"countdown"``, ...) or a :class:`~rrr_env.tasks.base.Task`.
    - ``max_attempts``: answers per episode (default 2: an attempt and one retry).
    - ``reflect``: ask for a reflection between answers (default True).
    - ``feedback``: ``"binary"`` tells the model it was wrong and ends on success;
      ``"none"`` says nothing about correctness, never ends early and grades every answer
      (RISE without an oracle; requires ``reflect=False``).
    - ``retry_context``: what the retry sees after a reflection. ``"conversation"``
      (default, the RRR paper): the whole conversation, the task posed again at its end.
      ``"reflection"``: a fresh conversation, the task with the reflection in front of it and
      without the failed attempt, which a small model otherwise tends to copy verbatim; the
      observation is then not an extension of the previous one. Needs ``reflect=True``.
    - ``render_mode``: ``None`` or ``"ansi"``.
    - Any further keyword is an option of the task (e.g. ``split``). An unknown keyword
      raises ``TypeError``, listing the accepted ones; ``rrr_env.describe(env_id)`` lists
      each id's keywords with their types, defaults and meanings.

    A value of the wrong type (``reflect="False"``, ``max_attempts="2"``, ``seed="a"``)
    raises ``TypeError`` (:class:`~rrr_env.tasks.base.ArgumentTypeError`, also a
    ``ValueError`` as in 0.1); a value of the right type that is not accepted
    (``max_attempts=0``, ``feedback="oracle"``) raises ``ValueError``.

    ## Version History

    - Unreleased (every version): the ``retry_context`` option; its default keeps the
      observations of earlier releases. Argument mistakes of the wrong type raise
      ``TypeError`` (still a ``ValueError``); ``env.spec.to_json()`` works with path
      arguments (the spec stores them as ``str``); a vector env refuses a ``str`` or a
      wrong count as its batch of actions.
    - v1 (``rrr/Countdown-v1`` only): a ``validation`` split, 10% of the problems, taken from
      v0's train split (``validation_percent=10``); the test split is v0's. The Countdown id
      to use; ``rrr/Countdown-v0`` still works (Gymnasium warns that v1 exists).
    - v0: initial release. Since 0.1 (same prompts, verdicts and rewards): every task takes
      ``data=`` (GSM8K defaults to its bundled copy, so it runs offline); ``reflect`` must be a
      bool, numpy integers pass as ints; ``AsyncVectorEnv`` works with ``shared_memory=True``.

    Example:
        >>> from rrr_env.env import ReflectRetryEnv
        >>> env = ReflectRetryEnv("countdown", split="test")
        >>> obs, info = env.reset(seed=0)
        >>> info["phase"], info["attempt"], obs[-1]["role"]
        ('attempt', 1, 'user')
        >>> obs, reward, terminated, truncated, info = env.step("no idea")
        >>> reward, terminated, info["phase"], info["verdict"].reason
        (0.0, False, 'reflection', 'no_answer')
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    _spec: EnvSpec | None = None

    def __init__(
        self,
        task: str | Task = "countdown",
        *,
        max_attempts: int = 2,
        reflect: bool = True,
        feedback: str = "binary",
        retry_context: str = "conversation",
        render_mode: str | None = None,
        **task_options: Any,
    ) -> None:
        max_attempts = check_int("max_attempts", max_attempts, minimum=1)
        reflect = check_bool("reflect", reflect)
        check_choice("feedback", feedback, FEEDBACK_MODES)
        check_choice("retry_context", retry_context, RETRY_CONTEXTS)
        check_choice("render_mode", render_mode, self.metadata["render_modes"], optional=True)
        if isinstance(task, Task):
            if task_options:
                raise TypeError(
                    f"task options {sorted(task_options)} were given with a Task instance; "
                    "configure the task object itself instead"
                )
            self.task = task
        else:
            check_task_name(task)
            check_options(task, task_options)
            self.task = make_task(task, **task_options)
        if reflect and feedback == "none":
            raise ValueError(
                "reflect=True needs feedback='binary': the reflection request tells the model "
                "its answer was wrong. Use reflect=False for RISE's no-oracle evaluation."
            )
        if retry_context == "reflection" and not reflect:
            raise ValueError(
                "retry_context='reflection' puts the reflection in place of the failed "
                "attempt, so it needs reflect=True"
            )
        self.max_attempts = max_attempts
        self.reflect = reflect
        self.feedback = feedback
        self.retry_context = retry_context
        self.render_mode = render_mode

        self.action_space = UnicodeText(MAX_ACTION_CHARS)
        # Per answer at most: the answer, a request, a reflection and a re-posed task.
        self.observation_space = Conversation(
            max_messages=8 * max_attempts + 4, max_content_length=4 * MAX_ACTION_CHARS
        )

        self._item: Any = None
        self._messages: list[Message] = []
        self._phase: Phase = "done"
        self._attempt = 0
        self._verdicts: list[Verdict] = []
        self._started = False

    # -- gymnasium API -------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[Message], dict[str, Any]]:
        """Start an episode on a random item, or on ``options["index"]``."""
        # Gymnasium's seeding takes only a Python int; numpy integers are ints too.
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        super().reset(seed=seed)
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise TypeError(f"options must be a dict, got {type(options).__name__}")
        unknown = set(options) - {"index"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; the only one is 'index'")
        if "index" in options:
            index = check_index(options["index"], len(self.task))
        else:
            index = int(self.np_random.integers(len(self.task)))
        self._index = index
        self._item = self.task[index]
        self._messages = [dict(m) for m in self.task.prompt(self._item)]
        self._phase = "attempt"
        self._attempt = 1
        self._verdicts = []
        self._started = True
        return self._observation(), self._info(None)

    def step(self, action: str) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        """Record ``action`` as the answer or reflection the observation asked for."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._phase == "done":
            raise RuntimeError("the episode is over (terminated); call reset() to start another")
        if not isinstance(action, str):
            raise TypeError(f"the action must be a str (the model's text), got {type(action)}")
        if len(action) > MAX_ACTION_CHARS:
            raise ValueError(f"the action has {len(action)} characters; at most {MAX_ACTION_CHARS}")

        self._messages.append({"role": "assistant", "content": action})
        if self._phase == "reflection":
            retry = [dict(m) for m in self.task.retry_prompt(self._item)]
            if self.retry_context == "reflection":
                # The retry sees the task and the reflection, not the failed attempt, so it
                # cannot copy the attempt: whatever it learned from the failure, it learned
                # through the reflection.
                first = next(i for i, m in enumerate(retry) if m["role"] == "user")
                note = REFLECTION_NOTE.format(reflection=action)
                retry[first]["content"] = note + retry[first]["content"]
                system = [m for m in self._messages if m["role"] == "system"][:1]
                self._messages = [*system, *retry]
            else:
                self._messages.extend(retry)
            self._attempt += 1
            self._phase = "retry"
            return self._observation(), 0.0, False, False, self._info(None)

        verdict = self.task.verify(self._item, action)
        self._verdicts.append(verdict)
        solved = verdict.correct and self.feedback == "binary"
        if solved or self._attempt >= self.max_attempts:
            self._phase = "done"
        elif self.reflect:
            self._messages.append({"role": "user", "content": self.task.reflection_request})
            self._phase = "reflection"
        else:
            request = (
                self.task.feedback_message if self.feedback == "binary" else NEUTRAL_RETRY_REQUEST
            )
            self._messages.append({"role": "user", "content": request})
            self._attempt += 1
            self._phase = "retry"
        terminated = self._phase == "done"
        return self._observation(), verdict.reward, terminated, False, self._info(verdict)

    def render(self) -> str | None:
        """With ``render_mode="ansi"``, the conversation as plain text."""
        if self.render_mode != "ansi":
            return None
        return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in self._messages)

    # -- helpers -------------------------------------------------------------------------

    @property
    def spec(self) -> EnvSpec | None:
        """The spec ``gym.make`` made this env from, with JSON-ready keyword arguments.

        ``gym.make`` stores the keyword arguments as given; path objects and numpy scalars
        among them are stored as ``str`` and Python numbers, so that ``spec.to_json()`` works
        and ``gym.make(EnvSpec.from_json(...))`` makes the same env.
        """
        return self._spec

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        if value is not None:
            value = dataclasses.replace(value, kwargs=_json_ready(value.kwargs))
        self._spec = value

    @property
    def item(self) -> Any:
        """The item of the current episode."""
        return self._item

    @property
    def phase(self) -> Phase:
        """What the next action is: ``attempt``, ``reflection``, ``retry`` or ``done``."""
        return self._phase

    def _observation(self) -> list[Message]:
        # A fresh list of fresh dicts: the caller may mutate it without touching the env.
        # Message values are immutable str (the observation space admits nothing else), so
        # this equals a deepcopy at a fraction of its cost (deepcopy was ~40% of an episode).
        return [dict(m) for m in self._messages]

    def _info(self, verdict: Verdict | None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "phase": self._phase,
            "attempt": self._attempt,
            "item_id": self.task.item_id(self._item),
            "index": self._index,
            "verdicts": tuple(self._verdicts),
        }
        if verdict is not None:
            info["verdict"] = verdict
        tools = self.task.tools(self._item)
        if tools is not None:
            info["tools"] = copy.deepcopy(tools)
        return info


def _json_ready(value: Any) -> Any:
    """``value`` with paths as ``str`` and numpy scalars as Python scalars, recursively."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        return type(value)(_json_ready(item) for item in value)
    return value
