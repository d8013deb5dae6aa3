"""TRL: datasets, rewards, an ``environment_factory`` and the RRR ``rollout_func``.

Four ways to train an ``rrr/*`` env with TRL's ``GRPOTrainer``:

- **Single-turn GRPO** (first attempts only): :func:`prompts_dataset` gives the ``prompt``
  and ``index`` columns ``GRPOTrainer`` takes, :func:`reward_function` grades each completion
  with the env's verifier for its row's item.
- **Tool-calling multi-turn** (TRL's ``environment_factory``): :class:`RRRToolEnv` turns the
  attempt -> reflection -> retry episode into tool calls (see its docstring for what TRL's
  loop can and cannot express).
- **RRR-GRPO with your own trainer** (reflection tokens rewarded by the retry's success):
  :func:`failures_dataset` builds a dataset of failures from your model's first attempts,
  :func:`rrr_rollout_func` gives the ``rollout_func`` and :data:`retry_success` the reward.
  These need ``agents`` (torch); they are imported when first used.
- The full pipeline with a command line: ``python -m agents.grpo_reflect``.

Example:
    >>> ds = prompts_dataset("rrr/Countdown-v1", split="test", n=2)
    >>> ds.column_names, ds[0]["index"], ds[0]["prompt"][-1]["role"]
    (['prompt', 'index', 'item_id'], 0, 'user')
    >>> reward = reward_function("rrr/Countdown-v1", split="test")
    >>> reward(prompts=ds["prompt"], completions=["no idea", "\\\\boxed{1}"], index=ds["index"])
    [0.0, 0.0]
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from rrr_env.integrations._common import (
    Episode,
    completion_text,
    item_rows,
    make_env,
    turn_text,
    verdict_message,
)

__all__ = [
    "RRRToolEnv",
    "environment_factory",
    "failures_dataset",
    "prompts_dataset",
    "reward_function",
    "rrr_rollout_func",
]


def prompts_dataset(
    env_id: str,
    split: str | None = "train",
    n: int | None = None,
    *,
    start: int = 0,
    **env_kwargs: Any,
) -> Any:
    """The first attempts of ``n`` items as a ``datasets.Dataset`` for ``GRPOTrainer``.

    Columns: ``prompt`` (the env's first observation, a list of messages), ``index`` (the item
    index, which :func:`reward_function` and :class:`RRRToolEnv` pose again) and ``item_id``.
    ``GRPOTrainer`` renders one tool list for every row, so function-calling tasks must put
    each item's tools in the prompt text (their default ``prompt_style``), not in the chat
    template's ``tools`` (``prompt_style="chat_template"`` raises).

    Args:
        env_id: An ``rrr/*`` id.
        split: The env's ``split`` option (None: the env's default, every item).
        n: Number of items, from index ``start`` on (None: all).
        start: First item index.
        **env_kwargs: More env keyword arguments (e.g. ``num_count=3``).
    """
    import datasets

    return datasets.Dataset.from_list(item_rows(env_id, split, n, env_kwargs, start=start))


def reward_function(env_id: str, **env_kwargs: Any) -> Callable[..., list[float]]:
    """A TRL reward function that grades each completion with the env's verifier.

    The returned function takes TRL's ``(prompts, completions, index, **kwargs)`` (``index``
    is the dataset column of :func:`prompts_dataset`) and returns, per completion, the
    reward ``gym.make(env_id, **env_kwargs)`` gives that text as the first attempt at the
    row's item. It adds the verdict's reason to TRL's completions table (``log_extra``).
    Pass the same ``env_kwargs`` (``split`` included) as to :func:`prompts_dataset`.
    """
    episode = Episode(env_id, env_kwargs)

    def rrr_verifier(
        prompts: list[Any],
        completions: list[Any],
        index: list[int],
        item_id: list[str] | None = None,
        log_extra: Callable[[str, list[Any]], None] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        rewards, reasons = [], []
        for k, (completion, item) in enumerate(zip(completions, index, strict=True)):
            episode.reset(int(item))
            if item_id is not None and episode.info["item_id"] != item_id[k]:
                raise ValueError(
                    f"row {k}: item {item} of {env_id} is {episode.info['item_id']!r}, the "
                    f"dataset says {item_id[k]!r}; build the reward with the dataset's env "
                    "kwargs (split included)"
                )
            _, reward, _, info = episode.step(completion_text(completion))
            rewards.append(reward)
            reasons.append(info["verdict"].reason)
        if log_extra is not None:
            log_extra("verdict_reason", reasons)
        return rewards

    rrr_verifier.__name__ = rrr_verifier.__qualname__ = "rrr_verifier"
    return rrr_verifier


class RRRToolEnv:
    """An ``rrr/*`` episode for TRL's ``environment_factory`` (``GRPOTrainer``, tool calling).

    TRL's loop generates, runs the tool calls of the completion, appends their results and
    generates again, until a completion calls no tool. This class exposes the episode as two
    tools: ``submit_answer(answer)`` grades an answer with the env's verifier;
    ``reflect(reflection)`` records the reflection the env asked for and returns the task
    posed again. ``reset`` poses the dataset row's item (``index`` column, from
    :func:`prompts_dataset`) and ``get_reward`` returns the episode's return (the sum of the
    env's rewards, as ``gym.make`` gives it), which TRL adds as a reward.

    What TRL's loop can express of attempt -> reflection -> retry:

    - the phases and the verdicts: the same env, item, reflection request, retry prompt and
      rewards as ``gym.make``; RISE's loop too (``reflect=False, max_attempts=T``).
    - The model must answer and reflect through tool calls (its chat template must support
      tools), and the env's turns arrive as tool results, not user turns: the conversation
      the model sees differs in form from the env's observations.

    What it cannot express:

    - RRR's credit assignment: TRL gives one advantage to every generated token of the
      rollout (attempt, reflection and retry alike; only tool results are masked), where RRR
      rewards only the reflection tokens. Use :func:`rrr_rollout_func` for that.
    - ``retry_context="reflection"`` (a fresh conversation for the retry): TRL appends tool
      results to one conversation; construction raises.
    - Per-turn rewards: one scalar per rollout (``get_reward``); and the whole episode shares
      ``max_completion_length`` and ``max_tool_calling_iterations``.

    Args:
        env_id: An ``rrr/*`` id.
        **env_kwargs: Its keyword arguments (those of the dataset).
    """

    def __init__(self, env_id: str = "rrr/Countdown-v1", **env_kwargs: Any) -> None:
        self._episode = Episode(env_id, env_kwargs, framework="TRL's environment_factory")

    def reset(self, index: int, **row: Any) -> str:
        """Pose item ``index`` (the dataset's prompt shows it); return the tool instructions."""
        self._episode.reset(int(index))
        if self._episode.env.unwrapped.reflect:
            how = (
                " If it is wrong, you will be asked to reflect: call reflect with your "
                "reflection, then submit_answer again."
            )
        else:
            how = " If it is wrong, you may submit again."
        return (
            "\n\nSubmit your answer by calling the submit_answer tool, with your whole answer "
            f"in the format asked for above.{how}"
        )

    def submit_answer(self, answer: str) -> str:
        """Submit an answer to the problem, to be checked.

        Args:
            answer: The whole answer, in the format the problem asks for.

        Returns:
            Whether the answer was correct, and what to do next.
        """
        phase = self._episode.phase
        if phase == "reflection":
            raise ValueError("reflect on the wrong answer first: call reflect")
        if phase == "done":
            raise ValueError("the episode is over; no more answers are graded")
        added, _, done, info = self._episode.step(str(answer))
        if done:
            return verdict_message(info)
        follow = (
            "call reflect with your reflection"
            if info["phase"] == "reflection"
            else ("call submit_answer with your new answer")
        )
        return f"{turn_text(added)}\n\n(Next: {follow}.)"

    def reflect(self, reflection: str) -> str:
        """Record a reflection on what went wrong, after a wrong answer.

        Args:
            reflection: A short explanation of what went wrong and how to do better.

        Returns:
            The problem, posed again.
        """
        if self._episode.phase != "reflection":
            raise ValueError(f"no reflection is asked for now (phase {self._episode.phase!r})")
        added, _, _, _ = self._episode.step(str(reflection))
        return f"{turn_text(added)}\n\n(Next: call submit_answer with your new answer.)"

    def get_reward(self) -> float:
        """The episode's return: the sum of the env's rewards (1.0 once an answer is right)."""
        return self._episode.episode_return


def environment_factory(env_id: str, **env_kwargs: Any) -> Callable[[], RRRToolEnv]:
    """A zero-argument factory of :class:`RRRToolEnv` for ``GRPOTrainer(environment_factory=)``.

    Built once here, so that a bad ``env_id`` or option raises now, not inside the trainer.
    """
    RRRToolEnv(env_id, **env_kwargs)._episode.close()
    return functools.partial(RRRToolEnv, env_id, **env_kwargs)


def failures_dataset(env_id: str, attempts: Iterable[tuple[int, str]], **env_kwargs: Any) -> Any:
    """A dataset of failures for :func:`rrr_rollout_func` from your model's first attempts.

    Each ``(index, text)`` is graded as the first attempt at item ``index``; the wrong ones
    become rows whose ``prompt`` is the conversation up to the reflection request (as
    ``agents.collect_failures`` writes them). The env must reflect (its default). Rows with
    the same prompt are kept once.

    Args:
        env_id: An ``rrr/*`` id.
        attempts: ``(item index, first-attempt text)`` pairs, e.g. sampled from your model.
        **env_kwargs: The env's keyword arguments (``split`` included), the same as for
            :func:`rrr_rollout_func`.
    """
    import datasets

    episode = Episode(env_id, env_kwargs)
    if not episode.env.unwrapped.reflect:
        raise ValueError("a dataset of failures needs an env that reflects (reflect=True)")
    rows, seen = [], set()
    try:
        for index, text in attempts:
            episode.reset(int(index))
            _, _, _, info = episode.step(text)
            if info["phase"] != "reflection":
                continue
            key = repr(episode.observation)
            if key in seen:
                continue
            seen.add(key)
            rows.append(
                {
                    "prompt": episode.observation,
                    "index": int(index),
                    "item_id": info["item_id"],
                    "reason": info["verdict"].reason,
                }
            )
    finally:
        episode.close()
    return datasets.Dataset.from_list(rows)


def rrr_rollout_func(
    env_id: str,
    failures: Any,
    *,
    retry_max_tokens: int,
    credit: str = "reflection",
    retry_temperature: float | None = None,
    retry_top_p: float | None = None,
    rollout_batch_size: int | None = None,
    resample_groups: int = 0,
    resample_batch: int = 1,
    seed: int = 0,
    **env_kwargs: Any,
) -> Any:
    """The RRR ``rollout_func`` for your own ``GRPOTrainer`` (``agents.grpo_reflect``'s).

    For each failure prompt of the trainer's batch it samples a reflection, lets the env pose
    the task again, samples a retry and has the env grade it; the reflection tokens are the
    completion (``credit="reflection"``), so :data:`retry_success` rewards only them.
    Use with ``GRPOTrainer(..., train_dataset=failures, reward_funcs=[retry_success],
    rollout_func=...)``; TRL's ``max_completion_length`` is the reflection's token limit.

    Args:
        env_id: The ``rrr/*`` id the failures were collected with.
        failures: The dataset of failures (``prompt`` and ``index`` columns), e.g. from
            :func:`failures_dataset` or ``agents.collect_failures``.
        retry_max_tokens: Token limit of a retry.
        credit: ``"reflection"`` or ``"reflection+retry"`` (the retry trained too).
        retry_temperature: Temperature of the retry (None: the trainer's; 0: greedy).
        retry_top_p: Nucleus mass of the retry (None: the trainer's).
        rollout_batch_size: Most sequences per ``generate`` call (transformers backend).
        resample_groups: Dynamic sampling: redraw a group whose retries all got one reward,
            up to this many times.
        resample_batch: Redraws generated together per round (the first with signal is
            trained on); fewer generation rounds, some groups wasted.
        seed: Seed of those redraws.
        **env_kwargs: The env's keyword arguments the failures were collected with; an
            attempt, a reflection and one retry unless they say otherwise.
    """
    from agents.grpo_reflect import ReflectRetryRollout
    from agents.reflection_rollout import EPISODE_OPTIONS

    options = {**EPISODE_OPTIONS, **env_kwargs}
    make_env(env_id, options).close()  # a bad id or option raises here, not in the trainer
    if hasattr(failures, "select_columns"):
        rows = failures.select_columns(["prompt", "index"]).to_list()
    else:
        rows = [{"prompt": row["prompt"], "index": row["index"]} for row in failures]
    return ReflectRetryRollout(
        functools.partial(make_env, env_id, options),
        rows,
        retry_max_tokens=retry_max_tokens,
        credit=credit,
        rollout_batch_size=rollout_batch_size,
        retry_temperature=retry_temperature,
        retry_top_p=retry_top_p,
        resample_groups=resample_groups,
        resample_batch=resample_batch,
        seed=seed,
    )


def __getattr__(name: str) -> Any:
    # retry_success lives in agents (torch): imported on first use, not with rrr_env.
    if name == "retry_success":
        from agents.grpo_reflect import retry_success

        return retry_success
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
