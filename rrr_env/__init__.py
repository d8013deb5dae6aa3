"""rrr_env: multi-turn Reflect, Retry, Reward environments for Gymnasium.

Importing the package registers its environment ids (``rrr/Countdown-v1``, ...;
``rrr_env.describe(env_id)`` lists each id's keyword arguments)::

    import gymnasium as gym
    import rrr_env

    gym.register_envs(rrr_env)
    env = gym.make("rrr/Countdown-v1")
    obs, info = env.reset(seed=0)  # Using the numbers [24, 32, 2], create ... equals 10.
    obs, reward, terminated, truncated, info = env.step("... \\\\boxed{32 - 24 + 2}")
"""

from rrr_env import data
from rrr_env.describe import describe, render_markdown
from rrr_env.env import ReflectRetryEnv
from rrr_env.registration import ENV_IDS, register_all
from rrr_env.spaces import Conversation, UnicodeText
from rrr_env.tasks import Task, make_task
from rrr_env.verdict import Verdict

register_all()

__version__ = "0.1.0"
__all__ = [
    "ENV_IDS",
    "Conversation",
    "ReflectRetryEnv",
    "Task",
    "UnicodeText",
    "Verdict",
    "data",
    "describe",
    "make_task",
    "render_markdown",
]
