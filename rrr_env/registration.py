"""Every environment id of the package. Bump ``-vN`` when prompts, verifier or rewards change."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

ENTRY_POINT = "rrr_env.env:ReflectRetryEnv"

#: Environment id -> default keyword arguments of ``ReflectRetryEnv``.
ENV_IDS: dict[str, dict[str, object]] = {
    "rrr/Countdown-v0": {"task": "countdown"},
    # v1: a validation split (10% of the problems, taken from v0's train split).
    "rrr/Countdown-v1": {"task": "countdown", "validation_percent": 10},
    # Without a shortcut (benchmarks/results/preset_search.md): 3 numbers in 1..20, target
    # 1..50, the items that one of the 16 fixed forms of rrr_env.shortcuts solves left out;
    # the validation split of v1. Qwen2.5-Coder-1.5B: 18% greedy 1st try at 512 tokens.
    "rrr/Countdown3-NoFixedForms-v1": {
        "task": "countdown",
        "validation_percent": 10,
        "num_count": 3,
        "number_range": (1, 20),
        "target_range": (1, 50),
        "exclude_fixed_forms": True,
    },
    "rrr/GSM8K-v0": {"task": "gsm8k"},
    "rrr/FunctionCalling-v0": {"task": "function_calling"},
    "rrr/BFCL-v0": {"task": "bfcl"},
}


def register_all() -> None:
    """Register every id in :data:`ENV_IDS` (idempotent)."""
    for env_id, kwargs in ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=ENTRY_POINT, kwargs=dict(kwargs))
