"""rrr/GSM8K-v0: the numeric-answer verifier, the task's data loading, and the env."""

from __future__ import annotations

import gzip
import json
import sys
import time
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import rrr_env
from rrr_env.data import GSM8K_TEST, GSM8K_TRAIN
from rrr_env.tasks import make_task
from rrr_env.tasks.gsm8k import INSTRUCTION, GSM8KTask
from rrr_env.verdict import Verdict
from rrr_env.verifiers.math_answer import REASONS, gold_answer, parse_answer, verify

gym.register_envs(rrr_env)

ENV_ID = "rrr/GSM8K-v0"


@pytest.fixture
def data_dir() -> Path:
    # The bundled copy: train.jsonl.gz and test.jsonl.gz, the original files compressed.
    return GSM8K_TRAIN.parent


def _golds(folder: Path) -> list[str]:
    golds = []
    for name in ("train.jsonl.gz", "test.jsonl.gz"):
        with gzip.open(folder / name, "rt", encoding="utf-8") as handle:
            golds += [gold_answer(json.loads(line)["answer"]) for line in handle if line.strip()]
    return golds


# -- verifier on the real gold answers --------------------------------------------------------


def test_every_gold_answer_verifies_against_itself(data_dir: Path) -> None:
    golds = _golds(data_dir)
    assert len(golds) == 7473 + 1319
    for gold in golds:
        value = parse_answer(gold)
        assert value.denominator == 1, gold  # GSM8K answers are integers
        boxed = verify(f"Step by step ... so the answer is \\boxed{{{gold}}}.", gold)
        plain = verify(f"Step by step ... so the answer is {gold}", gold)
        assert boxed == Verdict(True, "ok", str(value)), gold
        assert plain == Verdict(True, "ok", str(value)), gold
        wrong = verify(f"\\boxed{{{value + 1}}}", gold)
        assert wrong.reason == "wrong_answer" and wrong.answer == str(value + 1), gold
        assert verify(f"the answer is {value + 1}", gold).reason == "wrong_answer", gold


def test_gold_answer_takes_the_text_after_the_last_marker() -> None:
    assert gold_answer("a #### b\n2 + 3 = <<2+3=5>>5\n#### 1,080") == "1,080"
    with pytest.raises(ValueError, match="####"):
        gold_answer("no marker here")


# -- verifier formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        (r"\boxed{\$1,234.00}", "1234"),
        (r"\boxed{$1,234.00}", "1,234"),
        ("She pays $1,234.00.", "1,234"),
        (r"\boxed{1,234}", "1234"),
        (r"\boxed{1\,234}", "1234"),
        (r"\boxed{1{,}234}", "1234"),
        (r"\boxed{\frac{3}{4}}", "0.75"),
        (r"\boxed{\dfrac{3}{4}}", "0.75"),
        (r"\boxed{\tfrac34}", "0.75"),
        (r"\boxed{0.75}", "3/4"),
        (r"\boxed{3/4}", "0.75"),
        ("the answer is 3/4", "0.75"),
        (r"the answer is $-\frac{3}{4}$.", "-0.75"),
        (r"\boxed{-\frac{3}{4}}", "-0.75"),
        (r"\boxed{\frac{-3}{4}}", "-0.75"),
        (r"\boxed{18 dollars}", "18"),
        ("So she makes 18 dollars.", "18"),
        (r"\boxed{18 \text{ dollars}}", "18"),
        (r"\boxed{\text{18}}", "18"),
        (r"\boxed{\textbf{18}}", "18"),
        (r"\boxed{18.}", "18"),
        (r"\boxed{18.0}", "18"),
        (r"\boxed{18\,\text{cm}}", "18"),
        (r"\boxed{5 \text{ cm}^2}", "5"),
        (r"\boxed{\$18/\text{hour}}", "18"),
        (r"\boxed{18 km/h}", "18"),
        (r"\boxed{12 quarters}", "12"),
        (r"\boxed{3 times}", "3"),
        (r"\boxed{25\%}", "25"),
        ("That is 25%.", "25"),
        (r"\boxed{90^\circ}", "90"),
        (r"\boxed{x = 18}", "18"),
        (r"\boxed{-5}", "-5"),
        (r"\boxed{−5}", "-5"),
        ("The temperature drops to -5.", "-5"),
        ("Then 23 - 5", "5"),  # a binary minus is not a sign
        (r"\boxed{2.5}", "5/2"),
        (r"\boxed{.5}", "0.5"),
        (r"$\boxed{18}$", "18"),
        (r"Put it in \boxed{}. Total: 7 + 11 = 18", "18"),  # the echoed instruction is skipped
        (r"first \boxed{17}, no wait: \boxed{18}", "18"),
    ],
)
def test_accepted_formats(response: str, gold: str) -> None:
    verdict = verify(response, gold)
    assert verdict.correct, verdict
    assert verdict.reason == "ok"
    assert verdict.answer == str(parse_answer(gold))


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ("", "no_answer"),
        ("I do not know.", "no_answer"),
        (r"\boxed{}", "no_answer"),
        (r"\boxed{eighteen}", "unparsable"),
        (r"\boxed{3 + 15}", "unparsable"),
        (r"\boxed{2 1/2}", "unparsable"),  # mixed numbers are not guessed
        (r"\boxed{18 and a half}", "unparsable"),  # words that change the value
        (r"\boxed{0.018 thousand}", "unparsable"),
        (r"\boxed{minus 18}", "unparsable"),
        (r"\boxed{6 \text{ times } 3}", "unparsable"),
        (r"\boxed{18\pi}", "unparsable"),
        (r"\boxed{1,23}", "unparsable"),
        (r"\boxed{18 or 19}", "unparsable"),
        (r"\boxed{\frac{18}{0}}", "unparsable"),
        (r"\boxed{" + "1" * 101 + "}", "unparsable"),  # over the digit cap
        (r"\boxed{17}", "wrong_answer"),
        ("so the answer is 17", "wrong_answer"),
        ("18 + 5 - 6 = 17", "wrong_answer"),
        (r"\boxed{18} ... \boxed{17}", "wrong_answer"),  # the last box counts
        (r"\boxed{-18}", "wrong_answer"),
        (r"\boxed{18.5}", "wrong_answer"),
    ],
)
def test_rejected_responses(response: str, reason: str) -> None:
    verdict = verify(response, "18")
    assert not verdict.correct
    assert verdict.reason == reason, verdict
    assert (verdict.answer is not None) == (reason == "wrong_answer")


def test_equal_answers_have_equal_canonical_forms() -> None:
    answers = {verify(r, "1").answer for r in [r"\boxed{2.5}", r"\boxed{\frac{5}{2}}", "5/2"]}
    assert answers == {"5/2"}


def test_bad_gold_and_non_str_response_raise() -> None:
    with pytest.raises(ValueError, match="gold answer"):
        verify(r"\boxed{1}", "one")
    with pytest.raises(TypeError):
        verify(18, "18")  # type: ignore[arg-type]


# -- hostile input ----------------------------------------------------------------------------

MB = 1_000_000
HOSTILE = [
    "x" * MB,
    "{" * MB,
    "}" * MB,
    "\\boxed{" * (MB // 7),
    "\\boxed{" + "{" * MB,
    "\\boxed{" + "9" * MB + "}",
    "9" * 10**6,
    "\\boxed{" + "9" * 10**6 + "}" + "x" * 10,
    "-" * MB,
    "1," * (MB // 2),
    "1/" * (MB // 2),
    ".5" * (MB // 2),
    "\\frac{" * (MB // 6),
    "\\boxed{" + "\\frac{" * 10_000 + "}" * 20_000,
    "\\boxed{" + "\\text{" * 1000 + "1" + "}" * 1001,
    "\\boxed{{{{{{{{{18}}}}}}}}}",
    "\\boxed{18" + "}" * MB,
    ("\\boxed{1}" * (MB // 9)) + "\\boxed{",
    "\\boxed{\\boxed{\\boxed{18}}}",
    "1" * 99 + "." + "1" * 99,
    "\\boxed{" + "a" * 999 + "}",
    "\\boxed{" + "=" * 5000 + "18}",
    "\x00\ud800\U0001f600" * (MB // 3),
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_returns_a_verdict_quickly(text: str) -> None:
    start = time.perf_counter()
    verdict = verify(text, "18")
    assert time.perf_counter() - start < 2.0  # ~10 ms in practice; generous for slow CI
    assert isinstance(verdict, Verdict)
    assert verdict.reason in REASONS


LATEX_TOKENS = [
    *"0123456789-+.,/{}$% =^\\xa",
    *(r"\boxed{", r"\frac{", r"\dfrac", r"\text{", r"\,", r"\%", r"\$", r"\circ", "dollars"),
    *("half", "−", "\n"),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(LATEX_TOKENS), max_size=40).map("".join))
def test_random_latexish_text_never_raises(text: str) -> None:
    verdict = verify(text, "18")
    assert verdict.reason in REASONS
    assert verdict.correct == (verdict.reason == "ok")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_random_unicode_text_never_raises(text: str) -> None:
    assert verify(text, "-3/4").reason in REASONS


@settings(max_examples=200, deadline=None)
@given(st.fractions(min_value=-(10**12), max_value=10**12, max_denominator=1000), st.booleans())
def test_any_rational_in_a_box_verifies(value, as_frac: bool) -> None:
    shown = rf"\frac{{{value.numerator}}}{{{value.denominator}}}" if as_frac else str(value)
    verdict = verify(rf"\boxed{{{shown}}}", str(value))
    assert verdict.correct and verdict.answer == str(value)


# -- task options and data loading ------------------------------------------------------------


def test_task_loads_the_bundled_files(data_dir: Path) -> None:
    train = GSM8KTask(split="train", data=data_dir)
    test = GSM8KTask(split="test", data=GSM8K_TEST)
    assert (len(train), len(test)) == (7473, 1319)
    assert test[0].id == "gsm8k-test-0" and test[0].gold == "18"
    assert test[0].question.startswith("Janet")
    assert train.source == test.source == "jsonl"
    small = GSM8KTask(split="test", data=data_dir, size=5)
    assert [item.id for item in small] == [test[i].id for i in range(5)]
    messages = test.prompt(test[0])
    assert messages == [{"role": "user", "content": f"{test[0].question}\n{INSTRUCTION}"}]


def test_bundled_copy_is_the_offline_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: the default went to the hub (24 s of retries offline, then an error).
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setitem(sys.modules, "datasets", None)  # any hub access would fail
    env = gym.make(ENV_ID, split="test", size=3)
    task = env.unwrapped.task
    assert task.source == "bundled" and len(task) == 3 and task[0].gold == "18"
    assert len(gym.make(ENV_ID).unwrapped.task) == 7473


def test_split_none_is_every_item_as_in_the_other_envs(data_dir: Path) -> None:
    # Regression: split=None raised here but meant "every item" in the other envs.
    every = GSM8KTask(split=None)
    assert len(every) == 7473 + 1319
    assert every[0].id == "gsm8k-train-0" and every[7473].id == "gsm8k-test-0"
    assert len(GSM8KTask(split=None, data=data_dir)) == 7473 + 1319
    assert len(GSM8KTask(split=None, data=GSM8K_TEST)) == 1319
    assert len(GSM8KTask(split=None, size=4)) == 4


def test_data_takes_a_file_an_iterable_or_a_dataset(tmp_path: Path) -> None:
    rows = [{"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"} for i in range(3)]
    path = tmp_path / "mine.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    from_file = GSM8KTask(data=path)
    from_list = GSM8KTask(data=rows, split="test")
    assert [i.gold for i in from_file] == [i.gold for i in from_list] == ["1", "2", "3"]
    assert from_file[0].id == "gsm8k-mine-0" and from_list[0].id == "gsm8k-test-0"
    datasets = pytest.importorskip("datasets")
    from_dataset = GSM8KTask(data=datasets.Dataset.from_list(rows), split=None)
    assert [i.question for i in from_dataset] == [i.question for i in from_list]
    assert from_dataset[0].id == "gsm8k-data-0"


def test_old_source_and_path_keywords_still_work_with_a_warning(data_dir: Path) -> None:
    with pytest.warns(DeprecationWarning, match="data="):
        old = GSM8KTask(split="test", source="jsonl", path=data_dir, size=3)
    with pytest.warns(DeprecationWarning, match="data="):
        older = GSM8KTask(split="test", path=GSM8K_TEST, size=3)
    assert (
        [i.id for i in old]
        == [i.id for i in older]
        == [i.id for i in GSM8KTask(split="test", size=3)]
    )


def test_hub_is_one_option_away_and_gives_the_same_items(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    bundled = GSM8KTask(split="test")
    rows = [{"question": item.question, "answer": item.solution} for item in bundled]

    class FakeDatasets:
        @staticmethod
        def load_dataset(*args, **kwargs):
            calls.append((args, kwargs))
            return rows

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # CI sets them; this is online
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("rrr_env.data.hub_reachable", lambda timeout=0: True)
    monkeypatch.setitem(sys.modules, "datasets", FakeDatasets)
    task = GSM8KTask(split="test", data="openai/gsm8k")
    assert calls == [(("openai/gsm8k", "main"), {"split": "test"})]
    assert task.source == "hub" and [i for i in task] == [i for i in bundled]


def test_unreachable_hub_fails_fast_and_says_what_to_pass(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    class OfflineDatasets:
        @staticmethod
        def load_dataset(*args, **kwargs):
            raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub")

    # Offline with a cache folder for the id: the (fake) datasets cache lookup runs and fails.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    (tmp_path / "datasets" / "openai___gsm8k").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "datasets", OfflineDatasets)
    with pytest.raises(ConnectionError, match="data=None, the default"):
        gym.make(ENV_ID, data="openai/gsm8k")
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ImportError, match="pip install datasets.*data=None"):
        GSM8KTask(data="openai/gsm8k")


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"split": "dev"}, ValueError, "split must be one of"),
        ({"source": "web"}, ValueError, "source must be one of"),
        ({"size": 0}, ValueError, "size must be an int >= 1"),
        ({"size": True}, ValueError, "size must be an int >= 1"),
        ({"size": "10"}, ValueError, "size must be an int >= 1"),
        ({"source": "hub", "path": "x.jsonl"}, ValueError, "path is only allowed"),
        ({"source": "jsonl"}, ValueError, "needs path="),
        ({"data": 3}, TypeError, "iterable of dicts"),
        ({"data": "/nonexistent/gsm8k"}, FileNotFoundError, "neither a folder nor a file"),
        ({"path": 3}, ValueError, "path must be a str"),
        ({"path": "/nonexistent/gsm8k"}, FileNotFoundError, "neither a folder nor a file"),
    ],
)
def test_bad_options_raise(options: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        GSM8KTask(**options)


def test_bad_data_raises(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        GSM8KTask(split="test", data=tmp_path)
    with pytest.raises(ValueError, match="split='test'"):
        GSM8KTask(split="train", data=GSM8K_TEST)
    with pytest.raises(ValueError, match="has only 1319"):
        GSM8KTask(split="test", data=data_dir, size=5000)
    good = json.dumps({"question": "q", "answer": "#### 1"})
    bad_rows = {
        "json": "{not json",
        "keys": json.dumps({"q": "q", "a": "#### 1"}),
        "marker": json.dumps({"question": "q", "answer": "1"}),
        "number": json.dumps({"question": "q", "answer": "#### one"}),
    }
    for name, row in bad_rows.items():
        path = _write(tmp_path / f"{name}.jsonl", [good, "", row])
        with pytest.raises(ValueError, match=f"{name}.jsonl:3"):
            GSM8KTask(data=path)
    with pytest.raises(ValueError, match="no GSM8K problems"):
        GSM8KTask(data=_write(tmp_path / "empty.jsonl", [""]))
    custom = GSM8KTask(data=_write(tmp_path / "mine.jsonl", [good]))
    assert custom[0].id == "gsm8k-mine-0"


def test_unknown_option_names_the_valid_ones(data_dir: Path) -> None:
    with pytest.raises(TypeError, match="split"):
        make_task("gsm8k", splt="test", data=data_dir)
    with pytest.raises(TypeError, match="size"):
        gym.make(ENV_ID, data=data_dir, n_items=3)


# -- the environment --------------------------------------------------------------------------


def test_check_env_passes_with_warnings_as_errors(data_dir: Path) -> None:
    env = gym.make(ENV_ID, split="test", data=data_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_rise_episode_wrong_wrong_right(data_dir: Path) -> None:
    env = gym.make(ENV_ID, split="test", data=data_dir, reflect=False, max_attempts=3)
    task = env.unwrapped.task
    obs, info = env.reset(seed=0, options={"index": 0})
    assert obs == task.prompt(task[0]) and task[0].gold == "18"
    rewards = []
    for response in [r"\boxed{16}", "I think it is 20 dollars.", r"So \boxed{\$18}."]:
        obs, reward, terminated, truncated, info = env.step(response)
        rewards.append(reward)
        assert not truncated
        if reward == 0.0:
            assert obs[-1] == {"role": "user", "content": task.feedback_message}
            assert task.feedback_message == "The answer is incorrect. Please try again."
            assert not terminated
    assert rewards == [0.0, 0.0, 1.0]
    assert terminated and info["phase"] == "done" and info["attempt"] == 3
    assert [v.reason for v in info["verdicts"]] == ["wrong_answer", "wrong_answer", "ok"]
    with pytest.raises(RuntimeError):
        env.step(r"\boxed{18}")


def test_rrr_episode_reposes_the_question(data_dir: Path) -> None:
    env = gym.make(ENV_ID, split="test", data=data_dir, size=10)
    obs, _ = env.reset(seed=0, options={"index": 1})
    obs, reward, terminated, _, info = env.step("no idea")
    assert (reward, terminated, info["phase"]) == (0.0, False, "reflection")
    assert info["verdict"].reason == "no_answer"
    obs, reward, terminated, _, info = env.step("I should add the fibers.")
    assert (reward, terminated, info["phase"], info["attempt"]) == (0.0, False, "retry", 2)
    assert obs[-1] == obs[0] and obs[-3]["content"] == env.unwrapped.task.reflection_request


def test_reset_seed_is_deterministic(data_dir: Path) -> None:
    def episode_starts(seed: int) -> list[str]:
        env = gym.make(ENV_ID, split="test", data=data_dir)
        env.reset(seed=seed)
        return [env.reset()[1]["item_id"] for _ in range(5)]

    assert episode_starts(3) == episode_starts(3)
    assert episode_starts(3) != episode_starts(4)
    env_a = gym.make(ENV_ID, split="test", data=data_dir)
    env_b = gym.make(ENV_ID, split="test", data=data_dir)
    assert env_a.reset(seed=7) == env_b.reset(seed=7)
