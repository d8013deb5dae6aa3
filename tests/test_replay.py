"""Replayed greedy first attempts (agents.replay) and the harness arms that use them (issue 25).

The harness replays the vanilla control's greedy first attempts in the arms whose first attempt
is the same model's greedy answer. A replay must give exactly the episodes a fresh generation
gives, and must generate whatever it cannot replay exactly.
"""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from transformers import AutoTokenizer

import benchmarks.rrr_vs_rise as harness
from agents.backends import render_prompt
from agents.evaluate import read_episodes
from agents.models import resolve_model
from agents.replay import GreedyReplay, RecordedAnswer, conversation_key, first_observation
from agents.rollout import Generation, PhaseSampling, SamplingParams, rollout

TASK = [{"role": "user", "content": "Using the numbers [3, 4], create an equation that equals 7."}]
GREEDY_16 = SamplingParams(max_new_tokens=16, temperature=0.0)
GREEDY_64 = SamplingParams(max_new_tokens=64, temperature=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)


class Recorder:
    """Answers every conversation with ``fresh`` and keeps what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[list[dict], SamplingParams]] = []

    def generate(self, conversations, params, tools=None):
        self.asked += [(c, params) for c in conversations]
        return [Generation("fresh", [], [1], True) for _ in conversations]


def replay_of(tokenizer, answer: RecordedAnswer) -> tuple[GreedyReplay, Recorder]:
    inner = Recorder()
    return GreedyReplay(inner, tokenizer, {conversation_key(TASK): answer}), inner


def recorded(tokenizer, text: str, stopped: bool) -> RecordedAnswer:
    tokens = len(tokenizer.encode(text, add_special_tokens=False)) + int(stopped)
    return RecordedAnswer(text, tokens, stopped)


@pytest.mark.parametrize(
    ("stopped", "limit", "replayed"),
    [
        (True, 0, True),  # stopped within the limit: the same answer under any limit it fits
        (True, 8, True),
        (True, -1, False),  # one token short of the answer: greedy would cut it
        (False, 0, True),  # cut by its limit: the same answer under that very limit only
        (False, 8, False),  # a longer limit would have gone on
        (False, -1, False),
    ],
)
def test_an_answer_is_replayed_only_under_a_limit_that_gives_it(
    tokenizer, stopped, limit, replayed
):
    answer = recorded(tokenizer, "3 + 4 = 7, so the answer is \\boxed{3 + 4}", stopped)
    replay, inner = replay_of(tokenizer, answer)
    params = SamplingParams(max_new_tokens=answer.completion_tokens + limit, temperature=0.0)
    (generation,) = replay.generate([TASK], params)
    assert (generation.text == answer.text) is replayed
    assert (replay.replayed, replay.generated, len(inner.asked)) == (
        (1, 0, 0) if replayed else (0, 1, 1)
    )
    if replayed:
        assert len(generation.completion_ids) == answer.completion_tokens
        assert generation.stopped is stopped
        assert (generation.completion_ids[-1] == tokenizer.eos_token_id) is stopped
        assert generation.prompt_ids == render_prompt(tokenizer, TASK), "as a backend renders"


def test_sampled_calls_and_other_conversations_are_generated(tokenizer):
    answer = recorded(tokenizer, "\\boxed{3 + 4}", stopped=True)
    replay, inner = replay_of(tokenizer, answer)
    other = [{"role": "user", "content": "Using the numbers [3, 5], make 8."}]
    sampled = SamplingParams(max_new_tokens=16, temperature=1.0)
    assert [g.text for g in replay.generate([TASK], sampled)] == ["fresh"]
    texts = [g.text for g in replay.generate([other, TASK, other], GREEDY_16)]
    assert texts == ["fresh", answer.text, "fresh"], "the order of the batch is kept"
    assert [c for c, _ in inner.asked] == [TASK, other, other]
    assert (replay.replayed, replay.generated) == (1, 3)


def test_a_text_that_does_not_round_trip_to_its_tokens_is_generated(tokenizer):
    answer = recorded(tokenizer, "\\boxed{3 + 4}", stopped=True)
    miscounted = RecordedAnswer(answer.text, answer.completion_tokens + 1, stopped=True)
    replay, inner = replay_of(tokenizer, miscounted)
    assert [g.text for g in replay.generate([TASK], GREEDY_16)] == ["fresh"]
    assert len(inner.asked) == 1


class SeededPrompt(gym.Env):
    """An env whose first observation depends on the reset seed."""

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return [{"role": "user", "content": f"seed {seed}"}], {}


def test_an_env_whose_first_observation_depends_on_the_seed_cannot_be_replayed():
    with pytest.raises(ValueError, match="depends on the reset seed"):
        first_observation(SeededPrompt, 0)


class Echo:
    """Answers each conversation with the start of its last message (a greedy stand-in)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def generate(self, conversations, params, tools=None):
        out = []
        for conversation in conversations:
            text = conversation[-1]["content"][:48]
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            out.append(Generation(text, [], [*ids, self.tokenizer.eos_token_id], True))
        return out


def test_each_item_replays_its_own_first_attempt(tokenizer, tmp_path):
    """Recorded where the final conversation no longer holds the attempt (retry from the
    reflection), replayed in an env without reflections: each item gets its own answer."""
    options = {"split": "test", "max_attempts": 2, "reflect": True}
    recording = rollout(
        lambda: gym.make("rrr/Countdown-v1", **options, retry_context="reflection"),
        Echo(tokenizer),
        [0, 1, 2, 3],
        sampling=PhaseSampling.same(GREEDY_64),
    )
    for episode in recording:  # the final conversation no longer holds the first attempt
        answers = [m["content"] for m in episode.messages if m["role"] == "assistant"]
        assert episode.turns[0].text not in answers
    path = tmp_path / "recorded.jsonl"
    path.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in recording))

    def make_env():
        return gym.make("rrr/Countdown-v1", **options, retry_context="reflection")

    inner = Recorder()
    replay = GreedyReplay.from_episodes(path, make_env, inner, tokenizer)
    retry_env = {**options, "reflect": False}
    replayed = rollout(
        lambda: gym.make("rrr/Countdown-v1", **retry_env),
        replay,
        [3, 2, 1, 0],
        sampling=PhaseSampling.same(GREEDY_64),
        max_steps=1,
    )
    firsts = {e.index: e.turns[0].text for e in recording}
    assert len(set(firsts.values())) == 4, "distinct answers, so a mix-up would show"
    assert {e.index: e.turns[0].text for e in replayed} == firsts
    assert (replay.replayed, inner.asked) == (4, [])


def harness_args(tmp_path, *more: str):
    return harness.parse_args(
        [
            "--eval-n",
            "3",
            "--attempt-max-tokens",
            "12",
            "--reflection-max-tokens",
            "6",
            "--engine",
            "torch",
            "--eval-dtype",
            "float32",
            "--retry-context",
            "reflection",
            "--model",
            "smollm2-135m",
            "--out-dir",
            str(tmp_path),
            *more,
        ]
    )


def test_the_harness_replays_only_the_arms_whose_first_attempt_is_vanillas(tmp_path):
    args = harness_args(tmp_path)
    vanilla = {"arm": "vanilla", "model": args.model, "eval_engine": "torch"}
    vanilla["eval_dtype"] = "float32"
    (tmp_path / "episodes").mkdir()
    (tmp_path / "episodes" / "vanilla__seed0.jsonl").write_text("")
    path = tmp_path / "episodes" / "vanilla__seed0.jsonl"
    assert harness.replay_source("retry", args, []) is None, "no vanilla row yet"
    assert harness.replay_source("retry", args, [vanilla]) == path
    assert harness.replay_source("fixed_reflection", args, [vanilla]) == path
    assert harness.replay_source("rrr", args, [vanilla], "reflection") == path
    assert harness.replay_source("rrr", args, [vanilla], "all") is None, "the adapter answers"
    for arm in ("vanilla", "best_of_2", "rise"):
        assert harness.replay_source(arm, args, [vanilla]) is None
    assert harness.replay_source("retry", args, [{**vanilla, "eval_dtype": "bfloat16"}]) is None
    assert harness.replay_source("retry", args, [{**vanilla, "model": "other"}]) is None
    no_replay = harness_args(tmp_path, "--no-replay")
    assert harness.replay_source("retry", no_replay, [vanilla]) is None


def test_replayed_first_attempts_give_the_episodes_of_a_fresh_evaluation(tmp_path):
    """The retry control with the vanilla control's answers replayed, against without.

    SmolLM2-135M's real weights, greedy, on 3 Countdown problems: the replayed evaluation
    must write the same episodes as the one that generates every turn.
    """
    from agents.models import load_model_and_tokenizer

    args = harness_args(tmp_path)
    model, tokenizer = load_model_and_tokenizer(args.model, dtype="float32")
    model.eval()
    episodes = tmp_path / "episodes"
    episodes.mkdir()
    scores = {}
    for arm, name, replay in (
        ("vanilla", "vanilla__seed0.jsonl", None),
        ("retry", "fresh.jsonl", None),
        ("retry", "replayed.jsonl", episodes / "vanilla__seed0.jsonl"),
    ):
        scores[name] = harness.run_eval(
            arm, model, tokenizer, args, episodes / name, 0, "all", replay
        )

    def turns(name: str) -> list:
        return [
            [(t.phase, t.text, t.completion_tokens, t.stopped, t.correct) for t in e.turns]
            for e in read_episodes(episodes / name)
        ]

    assert turns("replayed.jsonl") == turns("fresh.jsonl")
    assert scores["replayed.jsonl"]["replayed_turns"] == 3, "each first attempt, and no retry"
    assert scores["replayed.jsonl"]["replay_from"] == "vanilla__seed0.jsonl"
    assert "replayed_turns" not in scores["fresh.jsonl"]
    firsts = [t[0][1] for t in turns("vanilla__seed0.jsonl")]
    assert firsts == [t[0][1] for t in turns("replayed.jsonl")]
    # Every first attempt failed, so every retry (a conversation vanilla never answered) was
    # generated, by the same model.
    assert [len(t) for t in turns("replayed.jsonl")] == [2, 2, 2]
