"""PrimeIntellect verifiers: an ``rrr/*`` env as a ``MultiTurnEnv``, and ``load_environment``.

``load_environment(env_id, ...)`` returns an :class:`RRREnv` (a ``verifiers.MultiTurnEnv``,
built when first used) whose dataset holds the env's first observations, whose turns step a
real ``gym.make(env_id, ...)`` env with the model's text, and whose rubric is the env's
verifier. Uses verifiers' v0 API (``verifiers.MultiTurnEnv``), which verifiers 0.3 keeps
under ``verifiers.legacy`` and 0.4 dropped: tested with verifiers 0.3.1.

Load it by module name with verifiers' own loader::

    import verifiers as vf
    env = vf.load_environment("rrr_env.integrations.verifiers", rrr_env_id="rrr/Countdown-v1")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rrr_env.integrations._common import (
    Episode,
    item_rows,
    last_assistant_text,
    max_model_turns,
)

# The framework-bound classes are built on first access (module __getattr__).
__all__ = ["RRREnv", "load_environment"]  # noqa: F822


async def rrr_return(state: Mapping[str, Any]) -> float:
    """The episode's return: the sum of the env's rewards (1.0 once an answer is right)."""
    return float(sum(state.get("rrr_rewards", [])))


async def rrr_first_attempt(state: Mapping[str, Any]) -> float:
    """Whether the first answer was right (a metric; weight 0)."""
    rewards = state.get("rrr_rewards", [])
    return float(rewards[0]) if rewards else 0.0


class _MultiTurnLogic:
    """An ``rrr/*`` env as a verifiers ``MultiTurnEnv``.

    Each rollout gets its own env, reset on the row's item (``info["index"]``). Every model
    turn steps the env with the turn's text; the step's reward becomes the trajectory step's
    ``reward``, the env's next turns (reflection request, task posed again, or RISE's
    feedback) are the env response, and the rollout stops when the env's episode ends. The
    rubric scores ``rrr_return`` (the episode's return, weight 1) and reports
    ``rrr_first_attempt`` (weight 0).

    ``retry_context="reflection"`` works too: the retry's prompt is then the env's fresh
    conversation (task and reflection, without the failed attempt), as verifiers allows
    non-linear prompts per trajectory step; the rollout's ``completion`` is then the
    transcript (every model turn and every user turn the env added).

    Args:
        env_id: An ``rrr/*`` id.
        split: The env's ``split`` for the training dataset (None: every item).
        n: Items in the training dataset (None: all).
        eval_split: The split of the evaluation dataset (None: none).
        eval_n: Items in the evaluation dataset (None: all of ``eval_split``).
        env_kwargs: More env keyword arguments (e.g. ``{"reflect": False, "max_attempts": 5}``).
        **kwargs: ``MultiTurnEnv`` / ``Environment`` options (not ``dataset`` or ``rubric``).
    """

    def __init__(
        self,
        env_id: str = "rrr/Countdown-v1",
        split: str | None = "train",
        n: int | None = None,
        eval_split: str | None = None,
        eval_n: int | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        import datasets
        import verifiers as vf

        self.rrr_env_id = env_id
        self.rrr_env_kwargs = dict(env_kwargs or {})
        probe = Episode(env_id, self.rrr_env_kwargs)
        turns = max_model_turns(probe.env)
        probe.close()

        def rows(which: str | None, count: int | None) -> datasets.Dataset:
            return datasets.Dataset.from_list(
                [
                    {
                        "prompt": row["prompt"],
                        "answer": row["item_id"],
                        "info": {
                            "index": row["index"],
                            "item_id": row["item_id"],
                            "split": which,
                        },
                    }
                    for row in item_rows(env_id, which, count, self.rrr_env_kwargs)
                ]
            )

        rubric = vf.Rubric(funcs=[rrr_return], weights=[1.0])
        rubric.add_metric(rrr_first_attempt)
        self._episodes: dict[str, Episode] = {}
        super().__init__(
            dataset=rows(split, n),
            eval_dataset=None if eval_split is None else rows(eval_split, eval_n),
            rubric=rubric,
            max_turns=turns,
            env_id=env_id,
            **kwargs,
        )

    def _episode_kwargs(self, split: str | None) -> dict[str, Any]:
        kwargs = dict(self.rrr_env_kwargs)
        if split is not None:
            kwargs["split"] = split
        return kwargs

    async def setup_state(self, state: Any) -> Any:
        info = state["info"]
        episode = Episode(self.rrr_env_id, self._episode_kwargs(info.get("split")))
        episode.reset(int(info["index"]))
        if episode.info["item_id"] != info["item_id"]:
            episode.close()
            raise ValueError(
                f"item {info['index']} is {episode.info['item_id']!r}, the row says "
                f"{info['item_id']!r}: the dataset was built with other env kwargs"
            )
        self._episodes[state["trajectory_id"]] = episode
        state["rrr_rewards"] = []
        state["rrr_reasons"] = []
        state["rrr_done"] = False
        state["rrr_added"] = []
        state["rrr_restarted"] = False
        state["rrr_transcript"] = []
        return state

    async def add_trajectory_step(self, state: Any, trajectory_step: Any) -> None:
        episode = self._episodes[state["trajectory_id"]]
        text = last_assistant_text(trajectory_step["completion"])
        added, reward, done, info = episode.step(text)
        trajectory_step["reward"] = reward
        state["rrr_restarted"] = episode.restarted
        state["rrr_observation"] = [dict(m) for m in episode.observation]
        state["rrr_transcript"] += [{"role": "assistant", "content": text}, *added]
        verdict = info.get("verdict")
        trajectory_step["extras"]["rrr_phase"] = info["phase"]
        trajectory_step["extras"]["rrr_restarted"] = episode.restarted
        state["rrr_rewards"].append(reward)
        state["rrr_reasons"].append(None if verdict is None else verdict.reason)
        state["rrr_done"] = done
        state["rrr_added"] = added
        await super().add_trajectory_step(state, trajectory_step)

    async def env_response(self, messages: Any, state: Any, **kwargs: Any) -> list[Any]:
        import verifiers as vf

        # Where the conversation goes on, the env adds user turns only.
        return [vf.UserMessage(content=m["content"]) for m in state["rrr_added"]]

    async def get_prompt_messages(self, state: Any) -> Any:
        if state["trajectory"] and state["rrr_restarted"]:
            # The env posed the retry in a fresh conversation: that is the prompt.
            from verifiers.utils.message_utils import maybe_normalize_messages

            return maybe_normalize_messages(state["rrr_observation"], field_name="rrr_retry")
        return await super().get_prompt_messages(state)

    async def render_completion(self, state: Any) -> None:
        await super().render_completion(state)
        if any(step["extras"].get("rrr_restarted") for step in state["trajectory"]):
            from verifiers.utils.message_utils import maybe_normalize_messages

            state["completion"] = maybe_normalize_messages(
                state["rrr_transcript"], field_name="completion"
            )

    async def rrr_episode_done(self, state: Any) -> bool:
        return bool(state.get("rrr_done", False))

    async def rrr_close_env(self, state: Any) -> None:
        episode = self._episodes.pop(state.get("trajectory_id"), None)
        if episode is not None:
            episode.close()


def _build_env_class() -> type:
    try:
        import verifiers as vf

        base = vf.MultiTurnEnv
    except (ModuleNotFoundError, AttributeError) as error:
        raise ImportError(
            "RRREnv needs verifiers' MultiTurnEnv (verifiers 0.3; 0.4 dropped it): "
            f'pip install -e ".[verifiers]" ({error})'
        ) from error
    namespace = {
        "__module__": __name__,
        "__doc__": _MultiTurnLogic.__doc__,
        # verifiers finds stop conditions and cleanups by these decorators.
        "rrr_episode_done": vf.stop(_MultiTurnLogic.rrr_episode_done, priority=50),
        "rrr_close_env": vf.cleanup(_MultiTurnLogic.rrr_close_env),
    }
    return type("RRREnv", (_MultiTurnLogic, base), namespace)


def __getattr__(name: str) -> Any:
    # RRREnv subclasses verifiers' MultiTurnEnv: built when first used, so that importing
    # this module needs no verifiers.
    if name == "RRREnv":
        cls = _build_env_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_environment(
    env_id: str = "rrr/Countdown-v1", *, rrr_env_id: str | None = None, **kwargs: Any
) -> Any:
    """Entry point of verifiers' loader: an :class:`RRREnv` for ``env_id`` (see its arguments).

    verifiers' loader takes the module name as its own ``env_id``, so through it pass the
    rrr id as ``rrr_env_id``: ``vf.load_environment("rrr_env.integrations.verifiers",
    rrr_env_id="rrr/Countdown-v1", split="train")``.
    """
    return __getattr__("RRREnv")(env_id=rrr_env_id or env_id, **kwargs)
