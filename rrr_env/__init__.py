"""rrr_env: multi-turn Reflect, Retry, Reward environments for Gymnasium.

Importing the package registers its environment ids (``rrr/Countdown-v0``, ...)::

    import gymnasium as gym
    import rrr_env

    gym.register_envs(rrr_env)
    env = gym.make("rrr/Countdown-v0")
"""

from rrr_env import data
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
    "make_task",
]
