"""The verl adapter against verl's own interaction loader and the tool agent loop's calls."""

import asyncio

import gymnasium as gym
import pytest

import rrr_env
from rrr_env.integrations import verl as rrr_verl
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)
registry = pytest.importorskip("verl.interactions.utils.interaction_registry")
pd = pytest.importorskip("pandas")

ENV_ID = "rrr/Countdown-v1"


def correct(index, **kwargs):
    env = gym.make(ENV_ID, split="test", **kwargs)
    env.reset(options={"index": index})
    item = env.unwrapped.item
    return f"so \\boxed{{{solve(item.numbers, item.target)}}}"


def gym_episode(index, texts, **kwargs):
    """Per-step rewards and the env's next user turns, as gym.make gives them."""
    env = gym.make(ENV_ID, split="test", **kwargs)
    obs, _ = env.reset(options={"index": index})
    rewards, turns = [], []
    for text in texts:
        before = len(obs)
        obs, reward, terminated, _, _ = env.step(text)
        rewards.append(reward)
        turns.append([m["content"] for m in obs[before + 1 :]])
        if terminated:
            break
    return rewards, turns


def run_tool_agent_loop(interaction, row, texts):
    """What verl's ToolAgentLoop does with an interaction (0.7.1, _handle_interacting_state):
    start_interaction(request_id, **interaction_kwargs); after each assistant turn,
    generate_response(request_id, messages, **interaction_kwargs), append its text as a user
    turn, collect the turn score, stop when it says so; then finalize."""
    kwargs = dict(row["extra_info"]["interaction_kwargs"])

    async def loop():
        request_id = await interaction.start_interaction("request-0", **kwargs)
        messages = [dict(m) for m in row["prompt"]]
        scores, replies = [], []
        for text in texts:
            messages.append({"role": "assistant", "content": text})
            done, reply, score, _ = await interaction.generate_response(
                request_id, messages, **kwargs
            )
            messages.append({"role": "user", "content": reply})
            scores.append(score)
            replies.append(reply)
            if done:
                break
        total = await interaction.calculate_score(request_id)
        await interaction.finalize_interaction(request_id)
        return scores, replies, total

    return asyncio.run(loop())


@pytest.fixture(scope="module")
def reward_fn():
    """compute_score as verl loads it (``custom_reward_function.path`` / ``.name``)."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    path = rrr_verl.__file__
    config = {"reward": {"custom_reward_function": {"path": path, "name": "compute_score"}}}
    return get_custom_reward_fn(OmegaConf.create(config))


@pytest.fixture
def exported(tmp_path):
    def export(**kwargs):
        path = rrr_verl.export_dataset(tmp_path / "test.parquet", ENV_ID, "test", 3, **kwargs)
        config = tmp_path / "interaction.yaml"
        config.write_text(rrr_verl.interaction_config(ENV_ID))
        interactions = registry.initialize_interactions_from_config(str(config))
        return pd.read_parquet(path), interactions

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
def test_interaction_episode_matches_gym(exported, reward_fn, texts, kwargs):
    texts = [correct(1, **kwargs) if t == "FIRST" else t for t in texts]
    df, interactions = exported(**kwargs)
    row = df.iloc[1]
    interaction = interactions[row["extra_info"]["interaction_kwargs"]["name"]]
    assert type(interaction).__name__ == "RRRInteraction"
    scores, replies, total = run_tool_agent_loop(interaction, row, texts)
    rewards, turns = gym_episode(1, texts, **kwargs)
    assert scores == rewards
    assert total == sum(rewards)
    for reply, turn in zip(replies[:-1], turns[:-1], strict=True):
        assert reply == "\n\n".join(turn)
    assert replies[-1] in ("Your answer is correct.", "Your answer is incorrect.")
    # verl's reward loop hands the turn scores to the custom reward function in extra_info.
    extra_info = {**row["extra_info"], "turn_scores": scores, "num_turns": 2 * len(scores) + 1}
    truth = row["reward_model"]["ground_truth"]
    score = reward_fn(
        data_source=ENV_ID, solution_str="", ground_truth=truth, extra_info=extra_info
    )
    assert score == sum(rewards)


def test_exported_rows_have_verls_layout(exported):
    df, _ = exported()
    assert list(df.columns) == [
        "data_source",
        "prompt",
        "ability",
        "reward_model",
        "extra_info",
        "agent_name",
    ]
    assert set(df["agent_name"]) == {"tool_agent"}
    row = df.iloc[2]
    env = gym.make(ENV_ID, split="test")
    obs, info = env.reset(options={"index": 2})
    assert [dict(m) for m in row["prompt"]] == obs
    assert row["reward_model"]["ground_truth"] == info["item_id"]
    assert row["extra_info"]["interaction_kwargs"]["name"] == "rrr"
    assert row["extra_info"]["interaction_kwargs"]["index"] == 2


def test_compute_score_grades_a_single_turn_response(exported, reward_fn):
    df, _ = exported()
    row = df.iloc[1]
    truth = row["reward_model"]["ground_truth"]
    info = dict(row["extra_info"])

    def score(text, truth=truth):
        return reward_fn(data_source=ENV_ID, solution_str=text, ground_truth=truth, extra_info=info)

    assert score(correct(1)) == 1.0
    assert score("\\boxed{1}") == 0.0
    with pytest.raises(ValueError, match="the row says"):
        score(correct(1), truth="another-item")


def test_interaction_cannot_express_a_fresh_retry_conversation(tmp_path):
    config = tmp_path / "interaction.yaml"
    config.write_text(rrr_verl.interaction_config(ENV_ID, retry_context="reflection"))
    with pytest.raises(ValueError, match="fresh conversation"):
        registry.initialize_interactions_from_config(str(config))
