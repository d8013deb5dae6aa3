"""verl: an ``rrr/*`` env as a multi-turn interaction, its dataset, and a reward function.

- :class:`RRRInteraction` (a ``verl.interactions.base.BaseInteraction``, built when first
  used): verl's tool agent loop sends it each model turn; it steps the env with the text and
  answers with the env's next user turn (the reflection request, the task posed again, or
  RISE's feedback), the step's reward as the turn score, and whether the episode ended.
  verl removed ``verl.interactions`` in 0.8; use verl 0.5-0.7 (tested with 0.7.1).
- :func:`export_dataset`: the parquet layout verl's examples read (``data_source``,
  ``prompt``, ``ability``, ``reward_model``, ``extra_info`` with ``interaction_kwargs``).
- :func:`compute_score`: verl's ``custom_reward_function``: the episode's return from the
  interaction's turn scores in a multi-turn run, the verifier's grade of the response in a
  single-turn one.
- :func:`interaction_config`: the YAML that registers the interaction
  (``actor_rollout_ref.rollout.multi_turn.interaction_config_path``).

With verl 0.7, run ``verl.trainer.main_ppo`` with ``multi_turn.enable=True``, the YAML, the
exported parquet files (their ``agent_name`` column picks the ``tool_agent`` loop, the one
that calls interactions) and ``custom_reward_function.path=<this file>``,
``custom_reward_function.name=compute_score``. Leave ``multi_turn.max_assistant_turns`` and
``max_user_turns`` unset (or above the episode's model turns: 3 for RRR, ``max_attempts``
for RISE): the tool agent loop stops at that limit before it lets the interaction grade the
last answer, while the interaction itself ends the episode when the env does.

Example:
    >>> print(interaction_config("rrr/Countdown-v1"), end="")
    interaction:
      - name: rrr
        class_name: rrr_env.integrations.verl.RRRInteraction
        config:
          env_id: rrr/Countdown-v1
          env_kwargs: {}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import uuid4

from rrr_env.integrations._common import (
    Episode,
    dumps_kwargs,
    env_kwargs_with_split,
    item_rows,
    loads_kwargs,
    turn_text,
    verdict_message,
)

# The framework-bound classes are built on first access (module __getattr__).
__all__ = ["RRRInteraction", "compute_score", "export_dataset", "interaction_config"]  # noqa: F822

#: The ``ability`` column of exported rows.
ABILITY = "rrr"


class _InteractionLogic:
    """An ``rrr/*`` env as a verl interaction: verdicts become feedback turns and turn scores.

    One env per rollout (``instance_id``). Each ``generate_response`` steps the env with the
    last assistant message and returns ``(done, next user turn, step reward, info)``: after a
    wrong attempt the reflection request (RRR) or the feedback message (RISE), after a
    reflection the task posed again, and when the episode ends a short verdict. The turn
    scores of an episode are the env's step rewards, so their sum is ``gym.make``'s return.

    Config (the ``config:`` block of the interaction YAML): ``env_id`` (default
    ``rrr/Countdown-v1``) and ``env_kwargs`` (a mapping, e.g. ``{reflect: false,
    max_attempts: 5}`` for RISE). ``interaction_kwargs`` of a dataset row carry ``index``
    (the item) and may carry ``env_id`` / ``env_kwargs`` (JSON), which override the config.
    ``retry_context="reflection"`` cannot be expressed (verl appends turns to one
    conversation) and raises.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.env_id = str(config.get("env_id", "rrr/Countdown-v1"))
        self.env_kwargs = loads_kwargs(config.get("env_kwargs"))
        Episode(self.env_id, self.env_kwargs, framework="verl").close()  # fail at start-up
        self._episodes: dict[str, Episode] = {}

    async def start_interaction(
        self, instance_id: str | None = None, index: int | None = None, **kwargs: Any
    ) -> str:
        if instance_id is None:
            instance_id = str(uuid4())
        if index is None:
            raise ValueError("interaction_kwargs need the item 'index' (export_dataset writes it)")
        env_id = kwargs.get("env_id") or self.env_id
        env_kwargs = {**self.env_kwargs, **loads_kwargs(kwargs.get("env_kwargs"))}
        episode = Episode(env_id, env_kwargs, framework="verl")
        episode.reset(int(index))
        self._episodes[instance_id] = episode
        return instance_id

    async def generate_response(
        self, instance_id: str, messages: list[dict[str, Any]], **kwargs: Any
    ) -> tuple[bool, str, float, dict[str, Any]]:
        from rrr_env.integrations._common import last_assistant_text

        episode = self._episodes[instance_id]
        added, reward, done, info = episode.step(last_assistant_text(messages))
        verdict = info.get("verdict")
        extra = {
            "phase": info["phase"],
            "attempt": info["attempt"],
            "reason": None if verdict is None else verdict.reason,
        }
        text = verdict_message(info) if done else turn_text(added)
        return done, text, reward, extra

    async def calculate_score(self, instance_id: str, **kwargs: Any) -> float:
        return self._episodes[instance_id].episode_return

    async def finalize_interaction(self, instance_id: str, **kwargs: Any) -> None:
        episode = self._episodes.pop(instance_id, None)
        if episode is not None:
            episode.close()


def _build_interaction() -> type:
    try:
        from verl.interactions.base import BaseInteraction
    except ModuleNotFoundError as error:
        raise ImportError(
            "RRRInteraction needs verl's verl.interactions (verl 0.5-0.7; 0.8 removed it): "
            'pip install -e ".[verl]" and pip install --no-deps "verl==0.7.1" '
            f"({error})"
        ) from error
    return type(
        "RRRInteraction",
        (_InteractionLogic, BaseInteraction),
        {"__module__": __name__, "__doc__": _InteractionLogic.__doc__},
    )


def __getattr__(name: str) -> Any:
    # The class subclasses verl's, so it is built when first used: importing this module
    # needs no verl. verl's own loader (``class_name: ...verl.RRRInteraction``) lands here.
    if name == "RRRInteraction":
        cls = _build_interaction()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def export_dataset(
    path: str | Path,
    env_id: str,
    split: str | None = "train",
    n: int | None = None,
    *,
    start: int = 0,
    interaction_name: str = "rrr",
    agent_name: str = "tool_agent",
    **env_kwargs: Any,
) -> Path:
    """Write the first attempts of ``n`` items as verl's parquet dataset; return the path.

    Columns, as verl's examples (``examples/data_preprocess/gsm8k_multiturn_w_interaction.py``)
    write them: ``data_source`` (``env_id``), ``prompt`` (the env's first observation),
    ``ability`` (``"rrr"``), ``reward_model`` (``{"style": "rule", "ground_truth": item_id}``)
    and ``extra_info`` (``split``, ``index``, ``env_id``, ``env_kwargs`` as JSON, and
    ``interaction_kwargs``: ``name``, ``index``, ``env_id``, ``env_kwargs``), plus
    ``agent_name`` (``"tool_agent"``: verl's agent loop that runs interactions).

    Args:
        path: The parquet file to write (its folder is created).
        env_id: An ``rrr/*`` id.
        split: The env's ``split`` option (None: every item).
        n: Number of items from ``start`` on (None: all).
        start: First item index.
        interaction_name: The interaction's ``name`` in the interaction YAML.
        agent_name: The agent loop of each row (verl's default is the single-turn loop,
            which never calls the interaction).
        **env_kwargs: More env keyword arguments (JSON values).
    """
    import datasets

    kwargs = env_kwargs_with_split(split, env_kwargs)
    kwargs_json = dumps_kwargs(kwargs)
    rows = []
    for row in item_rows(env_id, split, n, env_kwargs, start=start):
        rows.append(
            {
                "data_source": env_id,
                "prompt": row["prompt"],
                "ability": ABILITY,
                "reward_model": {"style": "rule", "ground_truth": row["item_id"]},
                "extra_info": {
                    "split": "" if split is None else split,
                    "index": row["index"],
                    "env_id": env_id,
                    "env_kwargs": kwargs_json,
                    "interaction_kwargs": {
                        "name": interaction_name,
                        "index": row["index"],
                        "env_id": env_id,
                        "env_kwargs": kwargs_json,
                    },
                },
                "agent_name": agent_name,
            }
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> float:
    """The ``custom_reward_function`` of verl: the episode's return for an exported row.

    In a multi-turn run with :class:`RRRInteraction`, verl's reward loop passes the
    interaction's turn scores in ``extra_info["turn_scores"]``; their sum is the env's
    episode return. Without them (single-turn training) the response is graded as the first
    attempt at the row's item, with the env and kwargs of ``extra_info``.

    Raises:
        ValueError: ``ground_truth`` is not the item id of the row's item (the dataset and the
            env differ).
    """
    extra_info = extra_info or {}
    turn_scores = extra_info.get("turn_scores")
    if turn_scores is not None and len(turn_scores) > 0:
        return float(sum(float(s) for s in turn_scores))
    env_id = extra_info.get("env_id") or data_source
    episode = Episode(env_id, loads_kwargs(extra_info.get("env_kwargs")))
    try:
        episode.reset(int(extra_info["index"]))
        if episode.info["item_id"] != ground_truth:
            raise ValueError(
                f"item {extra_info['index']} of {env_id} is {episode.info['item_id']!r}, the row "
                f"says {ground_truth!r}"
            )
        _, reward, _, _ = episode.step(solution_str)
        return reward
    finally:
        episode.close()


def interaction_config(
    env_id: str = "rrr/Countdown-v1", name: str = "rrr", **env_kwargs: Any
) -> str:
    """The interaction YAML (``multi_turn.interaction_config_path``) that registers the env."""
    kwargs = json.dumps(dict(env_kwargs), sort_keys=True) if env_kwargs else "{}"
    return (
        "interaction:\n"
        f"  - name: {name}\n"
        f"    class_name: {__name__}.RRRInteraction\n"
        "    config:\n"
        f"      env_id: {env_id}\n"
        f"      env_kwargs: {kwargs}\n"
    )
