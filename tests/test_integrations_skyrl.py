"""The SkyRL adapter, made and stepped through skyrl_gym's own registry, against gym.make."""

import gymnasium as gym
import pytest

import rrr_env
from rrr_env.integrations import skyrl as rrr_skyrl
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)
skyrl_gym = pytest.importorskip("skyrl_gym")
pd = pytest.importorskip("pandas")

ENV_ID = "rrr/Countdown-v1"


def correct(index, **kwargs):
    env = gym.make(ENV_ID, split="test", **kwargs)
    env.reset(options={"index": index})
    item = env.unwrapped.item
    return f"so \\boxed{{{solve(item.numbers, item.target)}}}"


def gym_episode(index, texts, **kwargs):
    """Per-step rewards, the env's new turns and the terminations, as gym.make gives them."""
    env = gym.make(ENV_ID, split="test", **kwargs)
    obs, _ = env.reset(options={"index": index})
    steps = []
    for text in texts:
        before = len(obs)
        obs, reward, terminated, _, _ = env.step(text)
        steps.append((obs[before + 1 :], reward, terminated))
        if terminated:
            break
    return steps


@pytest.fixture
def rows(tmp_path):
    def export(**kwargs):
        path = rrr_skyrl.export_dataset(tmp_path / "test.parquet", ENV_ID, "test", 3, **kwargs)
        return pd.read_parquet(path)

    return export


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
def test_episode_matches_gym(rows, texts, kwargs):
    texts = [correct(1, **kwargs) if t == "FIRST" else t for t in texts]
    rrr_skyrl.register()
    row = rows(**kwargs).iloc[1].to_dict()
    env = skyrl_gym.make(row["env_class"], env_config={"env_id": ENV_ID}, extras=row)
    assert isinstance(env, skyrl_gym.envs.base_text_env.BaseTextEnv)
    prompt, _ = env.init(row["prompt"])
    assert prompt == [dict(m) for m in row["prompt"]]
    expected = gym_episode(1, texts, **kwargs)
    assert env.max_turns >= len(expected)
    for text, (added, reward, terminated) in zip(texts, expected, strict=False):
        out = env.step(text)
        assert (out["observations"], out["reward"], out["done"]) == (added, reward, terminated)
    assert out["done"]
    metrics = env.get_metrics()
    assert metrics["turns"] == len(expected)
    assert metrics["rrr_return"] == sum(step[1] for step in expected)
    env.close()


def test_env_config_gives_defaults_that_rows_override(rows):
    rrr_skyrl.register()
    row = rows().iloc[0].to_dict()
    # The row's env kwargs (split="test") win over the config's.
    env = skyrl_gym.make(
        "rrr", env_config={"env_id": ENV_ID, "env_kwargs": {"split": "train"}}, extras=row
    )
    prompt, info = env.init(row["prompt"])
    assert info["item_id"] == row["reward_spec"]["ground_truth"]
    # A row from another split is refused, not silently graded against another item.
    other = rrr_skyrl.__getattr__("RRRTextEnv")(
        env_config={"env_id": ENV_ID}, extras={"extra_info": {"index": 0, "env_kwargs": "{}"}}
    )
    with pytest.raises(ValueError, match="first observation"):
        other.init(row["prompt"])


def test_cannot_express_a_fresh_retry_conversation(rows):
    rrr_skyrl.register()
    row = rows().iloc[0].to_dict()
    config = {"env_id": ENV_ID, "env_kwargs": {"retry_context": "reflection"}}
    with pytest.raises(ValueError, match="fresh conversation"):
        skyrl_gym.make("rrr", env_config=config, extras=row)
