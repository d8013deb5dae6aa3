"""The verifiers adapter: rollouts through verifiers' own loader, rollout loop and rubric."""

import asyncio

import gymnasium as gym
import pytest

import rrr_env
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)
vf = pytest.importorskip("verifiers")
if not hasattr(vf, "MultiTurnEnv"):
    pytest.skip("verifiers without the v0 MultiTurnEnv (0.4 dropped it)", allow_module_level=True)
from verifiers.clients import Client  # noqa: E402
from verifiers.types import Response, ResponseMessage  # noqa: E402

ENV_ID = "rrr/Countdown-v1"
MODULE = "rrr_env.integrations.verifiers"


class ScriptedClient(Client):
    """A verifiers model client that answers with the given texts, in order."""

    def __init__(self, texts):
        super().__init__(None)
        self.texts = list(texts)
        self.prompts = []

    def setup_client(self, config):
        return None

    async def to_native_tool(self, tool):
        return tool

    async def to_native_prompt(self, messages):
        return messages, {}

    async def get_native_response(self, prompt, model, sampling_args, tools=None, **kwargs):
        self.prompts.append([(m.role, m.content) for m in prompt])
        return self.texts.pop(0)

    async def raise_from_native_response(self, response):
        return None

    async def from_native_response(self, text):
        message = ResponseMessage(
            role="assistant", content=text, finish_reason="stop", is_truncated=False
        )
        return Response(id="scripted", created=0, model="scripted", message=message)

    async def close(self):
        return None


def correct(index, **kwargs):
    env = gym.make(ENV_ID, split="test", **kwargs)
    env.reset(options={"index": index})
    item = env.unwrapped.item
    return f"so \\boxed{{{solve(item.numbers, item.target)}}}"


def gym_episode(index, texts, **kwargs):
    """Per-step rewards and the observation before each step, as gym.make gives them."""
    env = gym.make(ENV_ID, split="test", **kwargs)
    obs, _ = env.reset(options={"index": index})
    rewards, observations = [], []
    for text in texts:
        observations.append([(m["role"], m["content"]) for m in obs])
        obs, reward, terminated, _, _ = env.step(text)
        rewards.append(reward)
        if terminated:
            break
    return rewards, observations


@pytest.mark.parametrize(
    ("texts", "kwargs"),
    [
        (["FIRST"], {}),
        (["no idea", "I misread the numbers", "FIRST"], {}),
        (["no idea", "I misread the numbers", "\\boxed{1}"], {}),
        (["no", "\\boxed{2}", "FIRST"], {"reflect": False, "max_attempts": 3}),
        (["no", "FIRST", "FIRST"], {"reflect": False, "max_attempts": 3, "feedback": "none"}),
    ],
)
def test_rollout_matches_gym(texts, kwargs):
    texts = [correct(1, **kwargs) if t == "FIRST" else t for t in texts]
    env = vf.load_environment(MODULE, rrr_env_id=ENV_ID, split="test", n=2, env_kwargs=kwargs)
    assert type(env).__name__ == "RRREnv" and isinstance(env, vf.MultiTurnEnv)
    row = env.get_dataset()[1]
    client = ScriptedClient(texts)
    out = asyncio.run(env.run_rollout(row, client, "scripted", {}))
    rewards, observations = gym_episode(1, texts, **kwargs)
    assert client.prompts == observations  # the model saw what gym.make's env showed
    assert out["metrics"]["num_turns"] == len(rewards)
    assert out["reward"] == out["metrics"]["rrr_return"] == sum(rewards)
    assert out["metrics"]["rrr_first_attempt"] == rewards[0]
    assert out["stop_condition"] == "rrr_episode_done"
    assert out["error"] is None


def test_dataset_rows_pose_the_envs_items():
    env = vf.load_environment(MODULE, rrr_env_id=ENV_ID, split="test", n=3, eval_split="test")
    gym_env = gym.make(ENV_ID, split="test")
    for row in env.get_dataset():
        obs, info = gym_env.reset(options={"index": row["info"]["index"]})
        assert [(m["role"], m["content"]) for m in row["prompt"]] == [
            (m["role"], m["content"]) for m in obs
        ]
        assert row["answer"] == info["item_id"]
    assert len(env.get_eval_dataset()) == len(gym_env.unwrapped.task)


@pytest.mark.parametrize("retry", ["FIRST", "\\boxed{1}"])
def test_retry_in_a_fresh_conversation_matches_gym(retry):
    kwargs = {"retry_context": "reflection"}
    texts = ["no idea", "I misread the numbers", correct(1) if retry == "FIRST" else retry]
    env = vf.load_environment(MODULE, rrr_env_id=ENV_ID, split="test", n=2, env_kwargs=kwargs)
    client = ScriptedClient(texts)
    out = asyncio.run(env.run_rollout(env.get_dataset()[1], client, "scripted", {}))
    rewards, observations = gym_episode(1, texts, **kwargs)
    # The retry's prompt is the env's fresh conversation, without the failed attempt.
    assert client.prompts == observations
    assert ("assistant", "no idea") not in client.prompts[2]
    assert out["reward"] == sum(rewards) and out["metrics"]["num_turns"] == 3
    transcript = [(m["role"], m["content"]) for m in out["completion"]]
    roles = [role for role, _ in transcript]
    assert roles == ["assistant", "user", "assistant", "user", "assistant"]
    assert transcript[0][1] == "no idea" and transcript[-1][1] == texts[-1]
