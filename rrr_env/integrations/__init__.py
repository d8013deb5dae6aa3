"""Adapters that let other LLM-RL frameworks drive the ``rrr/*`` environments.

One module per framework; each imports its framework only when one of its framework-bound
names is used, so ``import rrr_env`` (and importing these modules) needs none of them:

- :mod:`rrr_env.integrations.trl`: a prompts dataset and a reward function for single-turn
  GRPO, an ``environment_factory`` for TRL's tool-calling loop, and the RRR ``rollout_func``
  (``pip install -e ".[train]"``).
- :mod:`rrr_env.integrations.verl`: a ``BaseInteraction`` (verl 0.5-0.7, the releases that
  have ``verl.interactions``), the parquet dataset its examples read and a ``compute_score``.
- :mod:`rrr_env.integrations.verifiers`: a ``MultiTurnEnv`` and ``load_environment`` for
  PrimeIntellect's verifiers (0.3, whose ``verifiers.*`` v0 API still has ``MultiTurnEnv``;
  0.4 dropped it).
- :mod:`rrr_env.integrations.skyrl`: a SkyRL-gym ``BaseTextEnv``.

The env stays the single source of prompts, phases and verdicts: every adapter steps a real
``gym.make(env_id, ...)`` env with the model's text and reports what the env returned.
"""
