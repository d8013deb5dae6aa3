"""Regression tests for the rough edges a third-party user hit on the env side (issue 27)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec

import rrr_env
from rrr_env import ReflectRetryEnv
from rrr_env.data import COUNTDOWN_TINYZERO_TEST, is_path_like
from rrr_env.tasks.countdown import CountdownTask
from rrr_env.tasks.function_calling import FunctionCallingTask

gym.register_envs(rrr_env)

README = Path(__file__).resolve().parents[1] / "README.md"
FIXTURES = Path(__file__).parent / "fixtures"
#: Rows of which the first has no solution (1 and 1 cannot make 5).
UNSOLVABLE_ROWS = [{"nums": [1, 1], "target": 5}, {"nums": [3, 8], "target": 11}]


def out_of_date_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if "out of date" in str(w.message)]


def quickstart_block(text: str, heading: str) -> str:
    """The first ```python block after ``heading`` in markdown ``text``."""
    start = text.index(heading)
    match = re.search(r"```python\n(.*?)```", text[start:], re.DOTALL)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def run_quickstart(code: str) -> tuple[dict, list[warnings.WarningMessage]]:
    namespace: dict = {}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        exec(compile(code, "<quickstart>", "exec"), namespace)  # our own documentation
    return namespace, record


# -- 1 and 10: the quickstart uses the newest Countdown and its answer is right --------------


def test_the_package_docstring_quickstart_warns_nothing_and_its_action_is_correct():
    code = textwrap.dedent(rrr_env.__doc__.split("::\n", 1)[1])
    namespace, record = run_quickstart(code)
    assert not out_of_date_warnings(record)
    assert namespace["reward"] == 1.0 and namespace["info"]["verdict"].correct


def test_the_readme_quickstart_warns_nothing_and_its_example_action_is_correct():
    # Runs the README's quickstart as documented: no "out of date, upgrade" warning from
    # Gymnasium, and the example action answers the item that reset(seed=0) poses.
    code = quickstart_block(README.read_text(encoding="utf-8"), "## Quickstart: the environments")
    namespace, record = run_quickstart(code)
    assert not out_of_date_warnings(record), out_of_date_warnings(record)
    info = namespace["info"]
    assert info["verdict"].correct, (namespace["env"].unwrapped.item, info["verdict"])
    assert (info["phase"], info["attempt"], info["verdict"].reason) == ("done", 1, "ok")


def test_every_newest_version_makes_no_out_of_date_warning_and_v0_still_works():
    newest: dict[str, str] = {}
    for env_id in rrr_env.ENV_IDS:
        name = env_id.rsplit("-v", 1)[0]
        if env_id > newest.get(name, ""):
            newest[name] = env_id
    assert newest["rrr/Countdown"] == "rrr/Countdown-v1"
    for env_id in newest.values():
        options = {"data": FIXTURES / "xlam_sample.jsonl"} if "Function" in env_id else {}
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            gym.make(env_id, **options)
        assert not out_of_date_warnings(record), env_id
    env = gym.make("rrr/Countdown-v0")  # older ids keep working (Gymnasium says v1 exists)
    assert env.reset(seed=0)[1]["phase"] == "attempt"


# -- 2: the unknown-option error lists every option, and no deprecated one ------------------


def test_an_unknown_option_lists_every_accepted_option_and_no_deprecated_one():
    with pytest.raises(TypeError, match="foo") as caught:
        gym.make("rrr/Countdown-v1", foo=1)
    # Gymnasium appends the kwargs it passed; the list is what comes between.
    accepted = str(caught.value).split("accepted: ", 1)[1].split("(rrr_env.describe", 1)[0]
    listed = set(re.findall(r"'(\w+)'", accepted))
    for name in ("max_attempts", "reflect", "feedback", "retry_context", "render_mode"):
        assert name in listed, name
    for name in ("data", "split", "size", "num_count", "seed", "validation_percent"):
        assert name in listed, name
    assert not listed & {"source", "path", "foo", "task"}


# -- 3: spec.to_json with a path, and the env made back from the JSON -----------------------


def test_spec_to_json_works_with_a_path_and_the_round_trip_makes_the_same_env():
    env = gym.make("rrr/Countdown-v1", data=COUNTDOWN_TINYZERO_TEST, split="test")
    text = env.spec.to_json()
    assert json.loads(text)["kwargs"]["data"] == str(COUNTDOWN_TINYZERO_TEST)
    clone = gym.make(EnvSpec.from_json(text))
    assert clone.reset(seed=4) == env.reset(seed=4)
    assert len(clone.unwrapped.task) == len(env.unwrapped.task) > 100


def test_spec_to_json_works_with_numpy_scalars_and_tuples():
    env = gym.make("rrr/Countdown-v1", size=np.int64(5), number_range=(1, 9), num_count=2)
    clone = gym.make(EnvSpec.from_json(env.spec.to_json()))
    assert clone.reset(seed=1) == env.reset(seed=1)


# -- 4: info["index"] is documented ---------------------------------------------------------


def test_info_index_is_documented_and_addresses_the_item():
    info_section = ReflectRetryEnv.__doc__.split("## Info", 1)[1].split("##", 1)[0]
    assert "``index``" in info_section
    env = gym.make("rrr/Countdown-v1").unwrapped
    _, info = env.reset(seed=7)
    assert env.task[info["index"]] == env.item
    _, info = env.reset(options={"index": 3})
    assert info["index"] == 3


# -- 5: one exception type for one kind of mistake -------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reflect": "False"},
        {"max_attempts": "2"},
        {"max_attempts": 2.0},
        {"seed": "a"},
        {"size": "10"},
        {"validation_percent": 1.5},
        {"feedback": 1},
        {"retry_context": None},
        {"split": 3},
        {"num_count": "3"},
    ],
)
def test_a_value_of_the_wrong_type_raises_type_error(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(TypeError, match=rf"{name} must be .*got {type(kwargs[name]).__name__}"):
        gym.make("rrr/Countdown-v1", **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"size": 0},
        {"validation_percent": 95},
        {"feedback": "oracle"},
        {"retry_context": "attempt"},
        {"split": "dev"},
        {"render_mode": "human"},
        {"num_count": 9},
    ],
)
def test_a_value_of_the_right_type_that_is_not_accepted_raises_value_error_only(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))) as caught:
        gym.make("rrr/Countdown-v1", **kwargs)
    assert not isinstance(caught.value, TypeError)


def test_reset_seed_of_the_wrong_type_raises_type_error():
    env = ReflectRetryEnv("countdown", size=5)
    with pytest.raises(TypeError, match="seed must be an int"):
        env.reset(seed="a")
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        env.reset(seed=-1)


def test_type_errors_are_still_value_errors_for_code_that_caught_those():
    with pytest.raises(ValueError, match="max_attempts"):
        ReflectRetryEnv("countdown", max_attempts="2")


def test_function_calling_options_follow_the_same_rule():
    data = FIXTURES / "xlam_sample.jsonl"
    with pytest.raises(TypeError, match="prompt_style"):
        FunctionCallingTask(data=data, prompt_style=1)
    with pytest.raises(ValueError, match="prompt_style") as caught:
        FunctionCallingTask(data=data, prompt_style="mistral")
    assert not isinstance(caught.value, TypeError)


# -- 6: a vector env checks its batch of actions ---------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_vector_env_refuses_a_str_batch_and_a_wrong_count(mode):
    envs = gym.make_vec("rrr/Countdown-v1", num_envs=2, vectorization_mode=mode, size=5)
    try:
        envs.reset(seed=0)
        with pytest.raises(TypeError, match="one str per env"):
            envs.step("ab")
        with pytest.raises(ValueError, match="2 actions, one per env, got 3"):
            envs.step(("a", "b", "c"))
        with pytest.raises(ValueError, match="got 1"):
            envs.step(["a"])
        with pytest.raises(TypeError, match="one str per env"):
            envs.step(42)
        obs, rewards, *_ = envs.step(["\\boxed{1}", "no idea"])  # still usable afterwards
        assert list(rewards) == [0.0, 0.0]
    finally:
        envs.close()


# -- 7: a path-like str that does not exist is "not found", a hub id is still a hub id -------


def test_a_missing_path_under_an_existing_folder_is_not_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mydata").mkdir()
    with pytest.raises(FileNotFoundError, match="not found"):
        gym.make("rrr/Countdown-v1", data="mydata/countdown")


@pytest.mark.parametrize(
    "data", ["./mydata/countdown", "../mydata/countdown", "/nonexistent/countdown", "~/no/such"]
)
def test_an_explicit_path_that_does_not_exist_is_not_found(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_path_like(data)
    with pytest.raises(FileNotFoundError, match="not found"):
        CountdownTask(data=data)


def test_an_owner_name_str_with_no_local_folder_is_a_hub_id_and_its_error_says_so(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert not is_path_like("Jiayi-Pan/Countdown-Tasks-3to4")
    assert not is_path_like("mydata/countdown")
    with pytest.raises(ConnectionError, match=r"no local file or folder 'mydata/countdown'"):
        CountdownTask(data="mydata/countdown")


def test_a_path_with_a_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "rows.jsonl").write_text(json.dumps({"nums": [3, 8], "target": 11}) + "\n")
    assert len(CountdownTask(data="~/rows.jsonl")) == 1


# -- 8: data warnings point at the caller ----------------------------------------------------


def test_the_unsolvable_items_warning_points_at_the_caller():
    for make in (
        lambda: gym.make("rrr/Countdown-v1", data=UNSOLVABLE_ROWS),
        lambda: ReflectRetryEnv("countdown", data=UNSOLVABLE_ROWS),
        lambda: CountdownTask(data=UNSOLVABLE_ROWS),
        lambda: gym.make_vec("rrr/Countdown-v1", num_envs=1, data=UNSOLVABLE_ROWS),
    ):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            make()
        left_out = [w for w in record if "left out" in str(w.message)]
        assert left_out and all(w.filename == __file__ for w in left_out), [
            (w.filename, w.lineno) for w in left_out
        ]


def test_the_unanswered_records_warning_points_at_the_caller():
    rows = [json.loads(line) for line in (FIXTURES / "xlam_sample.jsonl").read_text().splitlines()]
    rows.append({**rows[0], "id": 10_000, "answers": "[]"})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        gym.make("rrr/FunctionCalling-v0", data=rows)
    assert [w.filename for w in record if "left out" in str(w.message)] == [__file__]


def test_the_deprecated_keywords_warning_points_at_the_caller():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        gym.make("rrr/Countdown-v1", source="generator")
    assert [w.filename for w in record if "deprecated" in str(w.message)] == [__file__]


# -- 9: BFCL without bfcl-eval says the one command that installs it -------------------------


def test_bfcl_without_its_package_names_the_exact_install_command():
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.partition(".")[0] == "bfcl_eval":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, Block())
        import gymnasium as gym
        import rrr_env

        try:
            gym.make("rrr/BFCL-v0")
        except ImportError as error:
            print(error)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    message = done.stdout.strip()
    assert "pip install --no-deps bfcl-eval==2026.3.23" in message
    assert "data=" in message and "numpy" in message  # the alternative, and why --no-deps
