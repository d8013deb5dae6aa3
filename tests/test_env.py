"""ReflectRetryEnv over every registered id: Gymnasium conformance and the phase machine."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rrr_env
from rrr_env import ENV_IDS, ReflectRetryEnv
from rrr_env.env import NEUTRAL_RETRY_REQUEST, REFLECTION_NOTE
from rrr_env.tasks.countdown import CountdownTask

gym.register_envs(rrr_env)

# Ids whose data needs files or packages that a test machine may lack get their options here.
FIXTURES = Path(__file__).parent / "fixtures"
ENV_OPTIONS: dict[str, dict] = {
    "rrr/FunctionCalling-v0": {"data": str(FIXTURES / "xlam_sample.jsonl")},
}


def make(env_id: str, **kwargs):
    return gym.make(env_id, **{**ENV_OPTIONS.get(env_id, {}), **kwargs})


@pytest.fixture(scope="module")
def countdown_task() -> CountdownTask:
    return CountdownTask(split="test", size=50)


def correct_answer(item) -> str:
    return f"Let me think. \\boxed{{{item.solution}}}"


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_check_env_passes_without_warnings(env_id):
    env = make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_reset_with_seed_is_deterministic(env_id):
    first = make(env_id)
    second = make(env_id)
    obs_a, info_a = first.reset(seed=123)
    obs_b, info_b = second.reset(seed=123)
    assert obs_a == obs_b
    assert info_a["item_id"] == info_b["item_id"]
    seen = {make(env_id).reset(seed=s)[1]["item_id"] for s in range(8)}
    assert len(seen) > 1, "different seeds should pose different items"


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_env_pickles_mid_episode(env_id):
    env = make(env_id).unwrapped
    obs, _ = env.reset(seed=3)
    env.step("no answer here")
    clone = pickle.loads(pickle.dumps(env))
    assert clone.phase == env.phase
    assert clone.step("a reflection")[0] == env.step("a reflection")[0]


def test_gym_make_with_module_prefix_needs_no_import():
    env = gym.make("rrr_env:rrr/Countdown-v0")
    assert isinstance(env.unwrapped, ReflectRetryEnv)


def test_correct_first_attempt_ends_with_reward_one(countdown_task):
    env = ReflectRetryEnv(countdown_task)
    obs, info = env.reset(options={"index": 0})
    assert (info["phase"], info["attempt"]) == ("attempt", 1)
    assert [m["role"] for m in obs] == ["system", "user"]
    obs, reward, terminated, truncated, info = env.step(correct_answer(env.item))
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["phase"] == "done" and info["verdict"].correct
    assert info["verdicts"] == (info["verdict"],)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("again")


def test_wrong_then_right_goes_through_reflection(countdown_task):
    env = ReflectRetryEnv(countdown_task)
    obs, _ = env.reset(options={"index": 1})
    user_prompt = obs[1]["content"]

    obs, reward, terminated, _, info = env.step("\\boxed{1 + 2}")
    assert (reward, terminated) == (0.0, False)
    assert (info["phase"], info["attempt"]) == ("reflection", 1)
    assert info["verdict"].reason == "wrong_numbers"
    assert obs[-2] == {"role": "assistant", "content": "\\boxed{1 + 2}"}
    assert obs[-1] == {"role": "user", "content": countdown_task.reflection_request}

    obs, reward, terminated, _, info = env.step("I used numbers I was not given.")
    assert (reward, terminated) == (0.0, False)
    assert (info["phase"], info["attempt"]) == ("retry", 2)
    assert "verdict" not in info
    assert obs[-2]["content"] == "I used numbers I was not given."
    assert obs[-1] == {"role": "user", "content": user_prompt}, "the retry repeats the prompt"

    obs, reward, terminated, _, info = env.step(correct_answer(env.item))
    assert (reward, terminated) == (1.0, True)
    assert info["phase"] == "done"
    assert [v.correct for v in info["verdicts"]] == [False, True]
    roles = ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert [m["role"] for m in obs] == roles


def test_a_retry_from_the_reflection_sees_the_task_and_reflection_not_the_attempt(
    countdown_task,
):
    env = ReflectRetryEnv(countdown_task, retry_context="reflection", max_attempts=3)
    obs, _ = env.reset(options={"index": 1})
    system, user_prompt = obs[0], obs[1]["content"]
    obs, *_ = env.step("\\boxed{1 + 2}")
    assert obs[-1] == {"role": "user", "content": countdown_task.reflection_request}

    obs, reward, terminated, _, info = env.step("I used numbers I was not given.")
    assert (reward, terminated, info["phase"], info["attempt"]) == (0.0, False, "retry", 2)
    note = REFLECTION_NOTE.format(reflection="I used numbers I was not given.")
    assert obs == [system, {"role": "user", "content": note + user_prompt}]
    assert all("boxed{1 + 2}" not in m["content"] for m in obs), "the attempt is gone"

    # A wrong retry asks for a reflection on it; the next retry sees only the newest one.
    obs, _, _, _, info = env.step("\\boxed{3 + 4}")
    assert info["phase"] == "reflection" and obs[-2]["content"] == "\\boxed{3 + 4}"
    obs, *_ = env.step("Second thoughts.")
    assert obs == [system, {"role": "user", "content": REFLECTION_NOTE.format(
        reflection="Second thoughts.") + user_prompt}]  # fmt: skip
    obs, reward, terminated, _, info = env.step(correct_answer(env.item))
    assert (reward, terminated) == (1.0, True)
    assert [v.correct for v in info["verdicts"]] == [False, False, True]
    assert gym.make("rrr/Countdown-v1", retry_context="reflection").unwrapped.retry_context == (
        "reflection"
    )


def test_wrong_wrong_ends_after_last_attempt(countdown_task):
    env = ReflectRetryEnv(countdown_task, max_attempts=2)
    env.reset(options={"index": 2})
    rewards = [env.step(text)[1] for text in ("\\boxed{2 +}", "reflection")]
    _, reward, terminated, _, info = env.step("still no box")
    assert rewards + [reward] == [0.0, 0.0, 0.0]
    assert terminated and info["phase"] == "done"
    assert [v.reason for v in info["verdicts"]] == ["invalid_expression", "no_answer"]


def test_three_attempts_repeat_reflection_and_retry(countdown_task):
    env = ReflectRetryEnv(countdown_task, max_attempts=3)
    env.reset(options={"index": 3})
    phases = []
    for text in ("x", "r1", "y", "r2"):
        phases.append(env.step(text)[4]["phase"])
    assert phases == ["reflection", "retry", "reflection", "retry"]
    _, _, terminated, _, info = env.step("z")
    assert terminated and info["attempt"] == 3


def test_rise_mode_binary_feedback(countdown_task):
    env = ReflectRetryEnv(countdown_task, reflect=False, max_attempts=3)
    env.reset(options={"index": 4})
    obs, reward, terminated, _, info = env.step("\\boxed{1}")
    assert (reward, terminated, info["phase"], info["attempt"]) == (0.0, False, "retry", 2)
    assert obs[-1] == {"role": "user", "content": countdown_task.feedback_message}
    obs, reward, terminated, _, info = env.step(correct_answer(env.item))
    assert (reward, terminated) == (1.0, True)


def test_rise_mode_without_feedback_grades_every_turn_and_never_ends_early(countdown_task):
    env = ReflectRetryEnv(countdown_task, reflect=False, feedback="none", max_attempts=3)
    env.reset(options={"index": 5})
    good = correct_answer(env.item)
    results = [env.step(text) for text in (good, "\\boxed{1}", good)]
    assert [r[1] for r in results] == [1.0, 0.0, 1.0]
    assert [r[2] for r in results] == [False, False, True]
    last_obs, info = results[-1][0], results[-1][4]
    assert [v.correct for v in info["verdicts"]] == [True, False, True]
    requests = [m["content"] for m in last_obs if m["role"] == "user"][1:]
    assert requests == [NEUTRAL_RETRY_REQUEST] * 2, "no correctness leaks into the conversation"


def test_same_index_gives_same_item_for_a_grpo_group(countdown_task):
    ids = {
        ReflectRetryEnv(countdown_task).reset(seed=s, options={"index": 7})[1]["item_id"]
        for s in range(4)
    }
    assert ids == {countdown_task[7].id}


def test_observations_are_fresh_objects(countdown_task):
    env = ReflectRetryEnv(countdown_task)
    obs, _ = env.reset(options={"index": 0})
    obs[0]["content"] = "tampered"
    obs.append({"role": "user", "content": "injected"})
    obs2, *_ = env.step("x")
    assert obs2[0]["content"] != "tampered"
    assert all(m["content"] != "injected" for m in obs2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts"),
        ({"feedback": "oracle"}, ValueError, "feedback"),
        ({"feedback": "none"}, ValueError, "reflect=False"),
        ({"render_mode": "human"}, ValueError, "render_mode"),
        ({"splt": "test"}, TypeError, "splt"),
        ({"task": "chess"}, ValueError, "unknown task"),
        ({"retry_context": "attempt"}, ValueError, "retry_context must be one of"),
        ({"retry_context": "reflection", "reflect": False}, ValueError, "needs reflect=True"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        gym.make("rrr/Countdown-v0", **kwargs)


def test_bad_actions_and_options_raise(countdown_task):
    env = ReflectRetryEnv(countdown_task)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("too early")
    with pytest.raises(ValueError, match="index"):
        env.reset(options={"item": 3})
    with pytest.raises(IndexError, match="out of range"):
        env.reset(options={"index": 10_000})
    with pytest.raises(TypeError, match="int"):
        env.reset(options={"index": "3"})
    env.reset(seed=0)
    with pytest.raises(TypeError, match="str"):
        env.step(42)


def test_render_ansi_shows_the_conversation(countdown_task):
    env = ReflectRetryEnv(countdown_task, render_mode="ansi")
    env.reset(options={"index": 0})
    env.step("my attempt")
    text = env.render()
    assert "[assistant]\nmy attempt" in text and countdown_task.reflection_request in text


def test_sync_vector_env_returns_text():
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("rrr/Countdown-v0") for _ in range(2)])
    obs, info = envs.reset(seed=[0, 1])
    assert isinstance(obs, tuple) and len(obs) == 2
    assert obs[0][1]["content"].startswith("Using the numbers")
    obs, rewards, terminated, truncated, info = envs.step(("\\boxed{1}", "\\boxed{2}"))
    assert list(rewards) == [0.0, 0.0]
    assert obs[1][-1]["content"] == CountdownTask.reflection_request


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_async_vector_env_works_with_gymnasium_defaults_and_matches_sync(env_id):
    # Regression: the default shared_memory=True raised CustomSpaceError (as a ValueError).
    options = ENV_OPTIONS.get(env_id, {})
    async_envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="async", **options)
    sync_envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync", **options)
    try:
        assert async_envs.shared_memory
        obs_async, info_async = async_envs.reset(seed=[0, 1])
        obs_sync, info_sync = sync_envs.reset(seed=[0, 1])
        assert isinstance(obs_async, tuple) and obs_async == obs_sync
        assert list(info_async["item_id"]) == list(info_sync["item_id"])
        long_answer = "no answer " * 50_000  # far beyond any fixed-size text buffer
        for actions in [("\\boxed{1}", long_answer), ("a reflection", "another"), ("x", "y")]:
            result_async = async_envs.step(actions)
            result_sync = sync_envs.step(actions)
            assert result_async[0] == result_sync[0]
            assert list(result_async[1]) == list(result_sync[1])
            assert list(result_async[2]) == list(result_sync[2])
    finally:
        async_envs.close()
        sync_envs.close()


def test_async_vector_env_without_copy_returns_a_live_view_of_the_newest_observations():
    fns = [lambda: gym.make("rrr/Countdown-v0") for _ in range(2)]
    envs = gym.vector.AsyncVectorEnv(fns, copy=False)
    try:
        first, _ = envs.reset(seed=[0, 1])
        assert first[0][1]["content"].startswith("Using the numbers")
        second, *_ = envs.step(("\\boxed{1}", "\\boxed{2}"))
        assert second[1][-1]["content"] == CountdownTask.reflection_request
        assert len(second) == 2 and tuple(second) == tuple(first)  # one live view
    finally:
        envs.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reflect": "False"},
        {"reflect": 0},
        {"reflect": None},
        {"max_attempts": True},
        {"max_attempts": 2.0},
        {"max_attempts": "2"},
        {"feedback": None},
        {"render_mode": 1},
        {"task": 3},
    ],
)
def test_argument_types_are_checked_not_coerced(kwargs):
    # Regression: reflect="False" was silently True. A wrong type is a TypeError (issue 27:
    # max_attempts="2" raised ValueError), still caught by `except ValueError` as in 0.1.
    with pytest.raises(TypeError, match=next(iter(kwargs))) as caught:
        ReflectRetryEnv(**{"task": "countdown", **kwargs})
    assert isinstance(caught.value, ValueError)


def test_numpy_integers_and_bools_are_accepted_like_python_ones():
    # Regression: np.int64 was refused for max_attempts (and size, seed, num_count).
    env = gym.make(
        "rrr/Countdown-v0",
        max_attempts=np.int64(3),
        reflect=np.bool_(False),
        size=np.int32(20),
        seed=np.int64(1),
        num_count=np.int64(3),
    ).unwrapped
    assert env.max_attempts == 3 and type(env.max_attempts) is int and env.reflect is False
    assert len(env.task) == 20
    obs, info = env.reset(seed=np.int64(5), options={"index": np.int16(4)})
    assert info["index"] == 4 and info["item_id"] == env.task[4].id
    with pytest.raises(TypeError, match="int"):
        env.reset(options={"index": True})  # a bool is not an index
