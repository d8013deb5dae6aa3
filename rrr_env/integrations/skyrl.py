"""SkyRL gym: an ``rrr/*`` env as a ``skyrl_gym`` ``BaseTextEnv``.

:class:`RRRTextEnv` (built when first used) steps a real ``gym.make(env_id, ...)`` env with
each model turn and returns SkyRL's ``BaseTextEnvStepOutput``: the env's next user turns as
``observations``, the step's reward, ``done`` when the episode ends, and the phase, attempt
and verdict reason as ``metadata``. :func:`register` registers it with ``skyrl_gym`` as
``"rrr"``; :func:`export_dataset` writes the parquet rows SkyRL's trainer reads
(``env_class: rrr``). Tested with skyrl-gym 0.4.0.

Example (with ``pip install -e ".[skyrl]"``)::

    import skyrl_gym
    from rrr_env.integrations import skyrl

    skyrl.register()
    env = skyrl_gym.make("rrr", env_config={"env_id": "rrr/Countdown-v1"},
                         extras={"extra_info": {"index": 0, "env_kwargs": '{"split": "test"}'}})
    prompt, _ = env.init(row_prompt)  # the env's first observation; a row's prompt must equal it
    out = env.step("... \\\\boxed{...}")  # out["observations"], out["reward"], out["done"]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rrr_env.integrations._common import (
    Episode,
    dumps_kwargs,
    env_kwargs_with_split,
    item_rows,
    loads_kwargs,
    max_model_turns,
)

# The framework-bound classes are built on first access (module __getattr__).
__all__ = ["ENV_CLASS", "RRRTextEnv", "export_dataset", "register"]  # noqa: F822

#: The id :func:`register` gives the env in ``skyrl_gym`` (the rows' ``env_class``).
ENV_CLASS = "rrr"


class _TextEnvLogic:
    """An ``rrr/*`` env as a SkyRL ``BaseTextEnv``: one episode per instance.

    Args:
        env_config: The trainer's ``environment.skyrl_gym.rrr`` config: ``env_id`` (default
            ``rrr/Countdown-v1``) and ``env_kwargs`` (a mapping or JSON).
        extras: The dataset row (SkyRL passes it): ``extra_info`` with ``index`` (the item)
            and optionally ``env_id`` / ``env_kwargs``, which override ``env_config``.

    ``init`` resets the env on the row's item and returns its first observation (which equals
    the row's prompt); ``step`` returns the env's next user turns, the step's reward, and
    ``done``. ``max_turns`` is the most model turns of an episode. ``retry_context=
    "reflection"`` raises: SkyRL appends observations to one conversation.
    """

    def __init__(self, env_config: Mapping[str, Any] | None = None, extras: Any = None) -> None:
        super().__init__()
        config = dict(env_config or {})
        extra_info = dict((extras or {}).get("extra_info") or {})
        if "index" not in extra_info:
            raise ValueError(
                "the row's extra_info needs the item 'index' (export_dataset writes it)"
            )
        env_id = extra_info.get("env_id") or config.get("env_id", "rrr/Countdown-v1")
        env_kwargs = {
            **loads_kwargs(config.get("env_kwargs")),
            **loads_kwargs(extra_info.get("env_kwargs")),
        }
        self._episode = Episode(env_id, env_kwargs, framework="SkyRL")
        self._index = int(extra_info["index"])
        self.max_turns = max_model_turns(self._episode.env)

    def init(self, prompt: Any) -> tuple[list[dict[str, str]], dict[str, Any]]:
        observation = self._episode.reset(self._index)
        if prompt is not None and len(prompt) and [dict(m) for m in prompt] != observation:
            raise ValueError(
                f"the row's prompt is not the first observation of item {self._index}: the "
                "dataset was built with another env, split or options"
            )
        return observation, {"item_id": self._episode.info["item_id"]}

    def step(self, action: str) -> Any:
        from skyrl_gym.envs.base_text_env import BaseTextEnvStepOutput

        self.turns += 1
        added, reward, done, info = self._episode.step(action)
        verdict = info.get("verdict")
        return BaseTextEnvStepOutput(
            observations=added,
            reward=reward,
            done=done,
            postprocessed_action=None,
            metadata={
                "phase": info["phase"],
                "attempt": info["attempt"],
                "reason": None if verdict is None else verdict.reason,
            },
        )

    def get_metrics(self) -> dict[str, Any]:
        rewards = self._episode.rewards
        return {
            "rrr_return": self._episode.episode_return,
            "rrr_first_attempt": rewards[0] if rewards else 0.0,
            "turns": self.turns,
        }

    def close(self) -> None:
        self._episode.close()


def _build_env_class() -> type:
    try:
        from skyrl_gym.envs.base_text_env import BaseTextEnv
    except ModuleNotFoundError as error:
        raise ImportError(
            f'RRRTextEnv needs skyrl-gym: pip install -e ".[skyrl]" ({error})'
        ) from error
    return type(
        "RRRTextEnv",
        (_TextEnvLogic, BaseTextEnv),
        {"__module__": __name__, "__doc__": _TextEnvLogic.__doc__},
    )


def __getattr__(name: str) -> Any:
    # RRRTextEnv subclasses skyrl_gym's BaseTextEnv: built when first used, so that importing
    # this module needs no skyrl_gym.
    if name == "RRRTextEnv":
        cls = _build_env_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register() -> None:
    """Register :class:`RRRTextEnv` with ``skyrl_gym`` as ``"rrr"`` (idempotent)."""
    from skyrl_gym.envs.registration import register as skyrl_register
    from skyrl_gym.envs.registration import registry

    if ENV_CLASS not in registry:
        skyrl_register(id=ENV_CLASS, entry_point=f"{__name__}:RRRTextEnv")


def export_dataset(
    path: str | Path,
    env_id: str,
    split: str | None = "train",
    n: int | None = None,
    *,
    start: int = 0,
    **env_kwargs: Any,
) -> Path:
    """Write the first attempts of ``n`` items as SkyRL's parquet dataset; return the path.

    Columns, as SkyRL's examples write them: ``data_source`` (``env_id``), ``prompt`` (the
    env's first observation), ``env_class`` (``"rrr"``), ``reward_spec`` (``{"method":
    "rule", "ground_truth": item_id}``) and ``extra_info`` (``split``, ``index``, ``env_id``,
    ``env_kwargs`` as JSON).
    """
    import datasets

    kwargs_json = dumps_kwargs(env_kwargs_with_split(split, env_kwargs))
    rows = [
        {
            "data_source": env_id,
            "prompt": row["prompt"],
            "env_class": ENV_CLASS,
            "reward_spec": {"method": "rule", "ground_truth": row["item_id"]},
            "extra_info": {
                "split": "" if split is None else split,
                "index": row["index"],
                "env_id": env_id,
                "env_kwargs": kwargs_json,
            },
        }
        for row in item_rows(env_id, split, n, env_kwargs, start=start)
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path
