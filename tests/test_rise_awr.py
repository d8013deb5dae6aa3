"""RISE-AWR: weights on scripted episodes, the label mask, and short runs on the real model."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import rrr_env
from agents.backends import render_prompt
from agents.rise_awr import (
    IGNORE_INDEX,
    Args,
    Group,
    advantage,
    awr_weight,
    collect,
    finish_interrupted_save,
    load_trainer_state,
    make_targets,
    save_checkpoint,
    tokenize_target,
    train,
)
from agents.rollout import PhaseSampling, SamplingParams
from agents.scripted import ScriptedBackend
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)
PROMPT = re.compile(r"Using the numbers \[([\d, ]+)\], create an equation that equals (\d+)")
WRONG = "\\boxed{1 + 1}"
FEEDBACK = "The answer is incorrect. Please try again."
SAMPLING = PhaseSampling.same(SamplingParams(16))


def rise_env(**kwargs):
    return gym.make(
        "rrr/Countdown-v0",
        split="test",
        size=40,
        max_attempts=2,
        reflect=False,
        feedback="binary",
        **kwargs,
    )


class Script:
    """Right or wrong answers in a fixed order per (question, turn): a stateful policy."""

    def __init__(self, plan: dict[tuple[int, int], list[str]]) -> None:
        self.plan = plan  # (item index, turn) -> ["wrong" | "right", ...] in call order
        self.calls: Counter = Counter()
        env = rise_env()
        self.questions = {env.reset(options={"index": i})[0][1]["content"]: i for i, _ in self.plan}

    def __call__(self, conversation) -> str:
        index = self.questions[conversation[1]["content"]]
        turn = sum(m["role"] == "assistant" for m in conversation) + 1
        verdict = self.plan[index, turn][self.calls[index, turn]]
        self.calls[index, turn] += 1
        if verdict == "wrong":
            return WRONG
        numbers, target = PROMPT.search(conversation[1]["content"]).groups()
        return f"\\boxed{{{solve([int(n) for n in numbers.split(',')], int(target))}}}"


def scripted_groups() -> list[Group]:
    # Item 0: one of two first attempts is right; its failed episode gets a second turn
    # whose own response is wrong and whose 2 fresh samples are wrong, right.
    # Item 1: everything wrong (2 first attempts, then 2 second turns of 3 responses).
    script = Script(
        {
            (0, 1): ["wrong", "right"],
            (0, 2): ["wrong", "wrong", "right"],
            (1, 1): ["wrong", "wrong"],
            (1, 2): ["wrong"] * 6,
        }
    )
    episodes, groups = collect(
        rise_env,
        ScriptedBackend(script),
        [0, 1],
        samples_per_item=2,
        best_of=3,
        sampling=SAMPLING,
    )
    assert [len(e.graded) for e in episodes] == [2, 1, 2, 2]
    assert all(script.calls[key] == len(plan) for key, plan in script.plan.items())
    return groups


def test_collect_builds_turn_groups_from_scripted_episodes():
    groups = scripted_groups()
    assert [(g.index, g.turn, g.rewards) for g in groups] == [
        (0, 1, [0.0, 1.0]),
        (1, 1, [0.0, 0.0]),
        (0, 2, [0.0, 0.0, 1.0]),
        (1, 2, [0.0, 0.0, 0.0]),
        (1, 2, [0.0, 0.0, 0.0]),
    ]
    first, second = groups[0], groups[2]
    assert [m["role"] for m in first.history] == ["system", "user"]
    # The second turn's history is the failed first attempt and RISE's feedback.
    assert second.history[:2] == first.history
    assert second.history[2:] == [
        {"role": "assistant", "content": WRONG},
        {"role": "user", "content": FEEDBACK},
    ]
    assert second.responses[:2] == [WRONG, WRONG] and second.responses[2] != WRONG


@pytest.mark.parametrize(
    ("weighting", "max_weight", "expected"),
    [
        # baseline: A = r_best - mean(group); w = exp(A / 0.4)
        ("baseline", 20.0, [math.exp(0.5 / 0.4), 1.0, math.exp((2 / 3) / 0.4), 1.0, 1.0]),
        # official: A = r_best; w = exp(r / 0.4) = 12.18 for a right answer, 1 for a wrong one
        ("official", 20.0, [math.exp(2.5), 1.0, math.exp(2.5), 1.0, 1.0]),
        # clipped at 5: exp(1.25) = 3.49 survives, exp(1.667) = 5.29 and 12.18 do not
        ("baseline", 5.0, [math.exp(1.25), 1.0, 5.0, 1.0, 1.0]),
        ("official", 5.0, [5.0, 1.0, 5.0, 1.0, 1.0]),
    ],
)
def test_weights_by_hand_on_scripted_episodes(weighting, max_weight, expected):
    targets = make_targets(scripted_groups(), weighting=weighting, beta=0.4, max_weight=max_weight)
    assert [t.weight for t in targets] == pytest.approx(expected)
    assert [t.reward for t in targets] == [1.0, 0.0, 1.0, 0.0, 0.0]
    right = targets[2]
    assert right.turn == 2 and right.response != WRONG, "the best of 3 is the target"
    assert right.history[-1]["content"] == FEEDBACK
    baseline = [0.5, 0.0, 2 / 3, 0.0, 0.0]
    assert [t.advantage for t in targets] == pytest.approx(
        baseline if weighting == "baseline" else [1.0, 0.0, 1.0, 0.0, 0.0]
    )


def test_only_correct_targets_without_train_on_failures():
    targets = make_targets(
        scripted_groups(),
        weighting="baseline",
        beta=0.4,
        max_weight=20.0,
        train_on_failures=False,
    )
    assert [(t.index, t.turn, t.reward) for t in targets] == [(0, 1, 1.0), (0, 2, 1.0)]


def test_advantage_and_weight_helpers():
    assert advantage([1.0, 1.0], 0, "baseline") == 0.0
    assert advantage([0.0, 0.0, 0.0, 1.0], 3, "baseline") == pytest.approx(0.75)
    assert awr_weight(-1.0, 0.4, 20.0) == pytest.approx(math.exp(-2.5))
    assert awr_weight(1e6, 1e-6, 7.0) == 7.0, "no overflow for huge exponents"
    with pytest.raises(ValueError, match="weighting must be one of"):
        advantage([1.0], 0, "softmax")


@pytest.mark.parametrize(
    ("env_id", "options"),
    [
        ("rrr/Countdown-v0", {"size": 20}),
        ("rrr/GSM8K-v0", {}),
        pytest.param(
            "rrr/BFCL-v0",
            {"category": "simple_python", "prompt_style": "chat_template"},
            id="rrr/BFCL-v0",
        ),
    ],
)
def test_collect_works_on_every_task(env_id, options, smollm_tokenizer):
    if env_id == "rrr/BFCL-v0":
        pytest.importorskip("bfcl_eval")
    make_env = lambda: gym.make(  # noqa: E731
        env_id, split="test", max_attempts=3, reflect=False, feedback="binary", **options
    )
    _, groups = collect(
        make_env,
        ScriptedBackend(lambda c: "I do not know."),
        [0, 1],
        samples_per_item=2,
        best_of=2,
        sampling=SAMPLING,
    )
    # 2 first-turn groups, then 2 episodes x 2 items x 2 later turns, all failed.
    assert Counter(g.turn for g in groups) == {1: 2, 2: 4, 3: 4}
    assert all(len(g.responses) == 2 for g in groups[2:])
    if env_id == "rrr/BFCL-v0":
        assert all(g.tools for g in groups), "tool schemas travel with each group"
    targets = make_targets(groups, weighting="baseline", beta=0.4, max_weight=20.0)
    for target in targets:
        ids, labels = tokenize_target(
            smollm_tokenizer, target.history, target.response, target.tools
        )
        assert len(ids) == len(labels) and labels[-1] != IGNORE_INDEX


# -- the real tokenizer and model ------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm_tokenizer():
    from transformers import AutoTokenizer

    from agents.models import DEFAULT_MODEL, resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL).path)


def test_loss_mask_covers_exactly_the_trained_response(smollm_tokenizer):
    tok = smollm_tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    history = [
        {"role": "system", "content": "Put the answer in \\boxed{}."},
        {"role": "user", "content": "Using the numbers [3, 4], make 7."},
        {"role": "assistant", "content": "\\boxed{3 * 4}"},
        {"role": "user", "content": FEEDBACK},
    ]
    response = "3 + 4 = 7, so \\boxed{3 + 4}"
    ids, labels = tokenize_target(tok, history, response, eos_ids={end, tok.eos_token_id})

    prompt = render_prompt(tok, history)
    unmasked = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    assert unmasked == list(range(len(prompt), len(ids))), "one span, right after the prompt"
    assert ids[: len(prompt)] == prompt
    assert [ids[i] for i in unmasked] == [labels[i] for i in unmasked]
    assert tok.decode([ids[i] for i in unmasked]) == response + "<|im_end|>"
    # The whole sequence is the chat template's rendering of the conversation with the reply
    # (minus the newline the template puts after <|im_end|>).
    full = tok.apply_chat_template(
        [*history, {"role": "assistant", "content": response}], tokenize=False
    )
    assert tok.decode(ids) == full.removesuffix("\n")
    # The earlier, wrong assistant turn and the assistant header are masked.
    masked_text = tok.decode(ids[: len(prompt)])
    assert masked_text.endswith(f"{FEEDBACK}<|im_end|>\n<|im_start|>assistant\n")
    assert "\\boxed{3 * 4}" in masked_text


def tiny_args(output_dir: Path, **overrides) -> Args:
    # Not the demo's defaults (Qwen2.5-Coder-1.5B, LoRA, the NoFixedForms preset): a tiny
    # model and 2-number Countdown, a full fine-tune in float32 unless a test asks otherwise.
    options = {
        "output_dir": str(output_dir),
        "env_id": "rrr/Countdown-v0",
        "env_kwargs": json.dumps({"num_count": 2, "number_range": [1, 20], "size": 50}),
        "model": "smollm2-135m",
        "use_peft": False,
        "bf16": False,
        "iterations": 1,
        "items_per_iteration": 2,
        "samples_per_item": 2,
        "best_of": 2,
        "max_new_tokens": 12,
        "batch_size": 8,
        "learning_rate": 1e-4,
        "eval_n": 2,
        "eval_max_new_tokens": 8,
        "seed": 3,
        "threads": 1,  # the CI machine's 2 cores are shared: more threads oversubscribe them
        # SmolLM2 solves almost nothing: failed groups' targets give the update its data.
        "train_on_failures": True,
    }
    return Args(**{**options, **overrides})


class Saves:
    """Stands for a model or tokenizer: ``save_pretrained`` writes one small file."""

    def save_pretrained(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "weights.txt").write_text("w")


class Killed(Exception):
    """Stands for the end of a session, which kills the run."""


def save(path: Path, iteration: int) -> None:
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters())
    save_checkpoint(path, Saves(), Saves(), optimizer, {"iteration": iteration})


def test_a_checkpoint_cut_while_being_replaced_is_restored(tmp_path, monkeypatch, caplog):
    path = tmp_path / "run" / "checkpoint"
    save(path, 1)
    save(path, 2)
    assert load_trainer_state(path)["iteration"] == 2
    assert sorted(f.name for f in path.parent.iterdir()) == ["checkpoint"]

    # Killed between moving the old checkpoint aside and the new one into place.
    rename, renames = Path.rename, []

    def killed_at_the_third_rename(self, target):
        renames.append(self.name)
        if len(renames) == 3:
            raise Killed
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", killed_at_the_third_rename)
    with pytest.raises(Killed):
        save(path, 3)
    monkeypatch.setattr(Path, "rename", rename)
    assert renames == ["trainer_state.pt.part", "checkpoint", "checkpoint.tmp"]
    assert not path.exists()
    finish_interrupted_save(path)
    assert load_trainer_state(path)["iteration"] == 3, "the new one, written in full"
    assert sorted(f.name for f in path.parent.iterdir()) == ["checkpoint"]
    assert "was cut while being replaced" in caplog.text
    finish_interrupted_save(path)  # nothing to do
    assert load_trainer_state(path)["iteration"] == 3

    # Only the old one left (the new one lost): it is moved back.
    path.rename(path.with_name("checkpoint.old"))
    finish_interrupted_save(path)
    assert load_trainer_state(path)["iteration"] == 3


def test_a_first_checkpoint_cut_while_writing_is_not_taken_for_one(tmp_path, monkeypatch):
    path = tmp_path / "run" / "checkpoint"
    torch_save = torch.save

    def killed_while_writing(obj, file):
        Path(file).write_bytes(b"PK\x03")  # the first bytes of a torch file, and no more
        raise Killed

    monkeypatch.setattr(torch, "save", killed_while_writing)
    with pytest.raises(Killed):
        save(path, 1)
    monkeypatch.setattr(torch, "save", torch_save)
    finish_interrupted_save(path)
    assert not path.exists(), "no checkpoint: the run starts afresh"
    save(path, 1)  # the next save replaces the torn folder
    assert load_trainer_state(path)["iteration"] == 1
    assert sorted(f.name for f in path.parent.iterdir()) == ["checkpoint"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    return train(tiny_args(tmp_path_factory.mktemp("rise")))


@pytest.mark.slow
def test_one_iteration_on_the_real_model_changes_parameters(smoke_run):
    from agents.models import load_model_and_tokenizer

    base, _ = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    trained = dict(smoke_run.policy.named_parameters())
    changed = [n for n, p in base.named_parameters() if not torch.equal(p, trained[n])]
    assert len(changed) > len(trained) // 2

    run_dir = smoke_run.run_dir
    assert run_dir.name.startswith("rrr_Countdown-v0__rise_awr__3__")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 1], "base eval, training, final eval"
    assert {"eval/m1@t1", "eval/p1@t2", "eval/first_try", "eval/second_try"} <= set(rows[0])
    prefixes = {key.split("/")[0] for key in rows[1] if key != "iteration"}
    assert prefixes == {"charts", "losses", "rollout"}
    assert rows[1]["rollout/targets"] > 0 and rows[1]["losses/nll"] > 0
    assert list(run_dir.glob("events.out.tfevents.*")), "tensorboard events"
    assert (run_dir / "eval_iter0_rise.jsonl").exists()
    targets = [json.loads(line) for line in (run_dir / "targets.jsonl").read_text().splitlines()]
    assert len(targets) == rows[1]["rollout/targets"] and targets[0]["iteration"] == 1
    assert (run_dir / "eval_iter1_rrr.jsonl").exists()
    state = load_trainer_state(run_dir / "checkpoint")
    assert state["iteration"] == 1 and state["optimizer"]["state"]


@pytest.mark.slow
def test_weighted_nll_matches_unpadded_rows(smoke_run):
    from agents.rise_awr import left_pad, weighted_nll

    model, tok = smoke_run.policy, smoke_run.tokenizer
    history = [{"role": "user", "content": "Using the numbers [3, 4], make 7."}]
    rows = [
        tokenize_target(tok, history, "\\boxed{3 + 4}"),
        tokenize_target(tok, [*history, *history], "It is 3 + 4 = 7, so \\boxed{3 + 4}."),
    ]
    with torch.no_grad():
        batched = weighted_nll(
            model,
            left_pad([r[0] for r in rows], tok.pad_token_id),
            left_pad([r[1] for r in rows], IGNORE_INDEX),
            left_pad([[1] * len(r[0]) for r in rows], 0),
        )
        for (ids, labels), nll in zip(rows, batched, strict=True):
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
            expected = torch.nn.functional.cross_entropy(
                logits, torch.tensor(labels[1:]), ignore_index=IGNORE_INDEX
            )
            assert nll.item() == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.slow
def test_resume_continues_the_iteration_count(smoke_run):
    checkpoint = smoke_run.run_dir / "checkpoint"
    saved = load_trainer_state(checkpoint)["optimizer"]["state"]
    args = tiny_args(smoke_run.run_dir.parent, iterations=2, resume=str(checkpoint))
    resumed = train(args)
    assert resumed.run_dir == smoke_run.run_dir and resumed.iteration == 2
    assert list(resumed.evaluations) == [2], "the base model is not evaluated again"
    rows = [
        json.loads(line) for line in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["iteration"] for r in rows] == [0, 1, 1, 2, 2]
    # The budget's clock goes on from the first run's time; it does not restart.
    first, second = (r for r in rows if "charts/train_seconds" in r)
    for row, before in ((first, 0.0), (second, first["charts/train_seconds"])):
        took = row["charts/collect_seconds"] + row["charts/update_seconds"]
        assert row["charts/train_seconds"] == pytest.approx(before + took)
    state = load_trainer_state(checkpoint)
    assert state["iteration"] == 2
    # AdamW's step counter continued from the saved optimizer state.
    steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {float(s["step"]) + 1 for s in saved.values()}
    # Nothing left to do once the iteration count is reached and evaluated.
    again = train(tiny_args(smoke_run.run_dir.parent, iterations=2, resume=str(checkpoint)))
    assert again.iteration == 2 and again.evaluations == {}


@pytest.mark.slow
def test_the_result_says_which_engine_generated(tmp_path, monkeypatch, smoke_run):
    import agents.engines as engines

    assert smoke_run.engine == "torch"
    # An engine that cannot start (its package missing): the run warns once, goes on with
    # torch, and says so, rather than record the engine it was asked for.
    monkeypatch.setattr(engines.importlib.util, "find_spec", lambda name: None)
    with pytest.warns(engines.EngineFallbackWarning, match="falling back to --engine torch"):
        result = train(tiny_args(tmp_path, engine="openvino", eval_n=0))
    assert result.iteration == 1 and result.engine == "torch"


@pytest.mark.slow
def test_lora_trains_only_the_adapters(tmp_path):
    result = train(tiny_args(tmp_path, use_peft=True, eval_n=0, lora_r=4))
    trainable = [n for n, p in result.policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    lora_b = [p for n, p in result.policy.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b), "LoRA B starts at zero; the update moved it"
    assert (result.run_dir / "checkpoint" / "adapter_config.json").exists()


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"weighting": "exp"}, "--weighting must be one of"),
        ({"beta": 0.0}, "--beta must be a positive"),
        ({"max_weight": 0.5}, "--max-weight must be >= 1"),
        ({"max_attempts": 1}, "--max-attempts must be >= 2"),
        ({"best_of": 0}, "--best-of must be >= 1"),
        ({"temperature": 0.0}, "greedy decoding"),
        ({"samples_per_item": 1, "best_of": 1}, "every advantage is 0"),
        ({"env_kwargs": '{"reflect": true}'}, "may not set"),
        ({"env_kwargs": "[1, 2]"}, "must be a JSON object"),
        ({"env_kwargs": "{num_count: 2}"}, "not valid JSON"),
        ({"report_to": "mlflow"}, "--report-to must be one of"),
        ({"dtype": "fp8"}, "--dtype must be one of"),
        ({"eval_n": -1}, "--eval-n must be >= 0"),
        ({"max_minutes": -1.0}, "--max-minutes must be > 0"),
        ({"snapshot_minutes": [10.0, 5.0]}, "--snapshot-minutes must be strictly increasing"),
    ],
)
def test_bad_args_raise_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Args(**overrides)


def test_official_weighting_allows_single_samples():
    args = Args(samples_per_item=1, best_of=1, weighting="official")
    assert args.env_options("train") == {
        "max_attempts": 2,
        "reflect": False,
        "feedback": "binary",
        "split": "train",
    }


def test_command_line_accepts_hyphens_underscores_and_yaml(tmp_path):
    from trl import TrlParser

    config = tmp_path / "rise.yaml"
    config.write_text("env_id: rrr/GSM8K-v0\nbest_of: 16\nweighting: official\n")
    argv = [
        "--config",
        str(config),
        "--max-new-tokens",
        "64",
        "--max_weight",
        "5",
        "--no-eval-reflect",
    ]
    (args,) = TrlParser((Args,)).parse_args_and_config(argv)
    assert (args.env_id, args.best_of, args.weighting) == ("rrr/GSM8K-v0", 16, "official")
    assert (args.max_new_tokens, args.max_weight, args.eval_reflect) == (64, 5.0, False)
    with pytest.raises(ValueError, match="--weighting must be one of"):
        TrlParser((Args,)).parse_args_and_config(["--weighting", "nope"])


# -- the no-argument demo ----------------------------------------------------------------------


def test_the_demo_defaults_train_a_bundled_model_on_the_shortcut_free_preset():
    from agents.models import BUNDLED_MODELS
    from rrr_env.shortcuts import countdown_fixed_form_solves

    args = Args()
    assert args.env_id == "rrr/Countdown3-NoFixedForms-v1" and args.model in BUNDLED_MODELS
    assert args.model == "qwen2.5-coder-1.5b", "0.5B solved 1 of 128 sampled attempts there"
    assert (args.train_split, args.eval_split) == ("train", "test")
    gym.make(args.env_id, split="validation")  # the preset also has one, for --eval-split
    assert args.eval_n == 0 and args.iterations == 1 and args.max_new_tokens == 512
    # LoRA at the LoRA learning rate; a full fine-tune keeps the smaller one.
    assert args.use_peft and args.learning_rate == 1e-4
    assert Args(use_peft=False).learning_rate == 1e-5
    assert Args(learning_rate=3e-6).learning_rate == 3e-6
    assert isinstance(args.bf16, bool)
    assert args.dtype == "float32", "benchmarks.rrr_vs_rise's RISE arm relies on it"
    # The demo's train items: 3 numbers, solvable, and no fixed-form answer solves any.
    env = gym.make(args.env_id, **args.env_options(args.train_split))
    task = env.unwrapped.task
    items = [task[i] for i in range(50)]
    assert all(len(item.numbers) == 3 and item.solution for item in items)
    assert not any(countdown_fixed_form_solves(item.numbers, item.target) for item in items)
    assert env.unwrapped.max_attempts == 2 and not env.unwrapped.reflect


def _iteration_row(**overrides) -> dict:
    row = {
        "iteration": 1,
        "rollout/episodes": 8.0,
        "rollout/accuracy_t1": 0.0,
        "rollout/targets": 0.0,
        "rollout/correct_targets": 0.0,
        "charts/optimizer_steps": 0.0,
        "losses/weighted_nll": float("nan"),
        "charts/collect_seconds": 100.0,
        "charts/update_seconds": 0.5,
    }
    return {**row, **overrides}


def test_the_demo_says_whether_its_iteration_trained():
    from agents.rise_awr import describe_iteration

    idle = describe_iteration(_iteration_row())
    assert "no update" in idle and idle.startswith("iteration 1: 8 episodes")
    trained = describe_iteration(
        _iteration_row(
            **{
                "rollout/targets": 3.0,
                "rollout/correct_targets": 3.0,
                "charts/optimizer_steps": 1.0,
                "losses/weighted_nll": 1.25,
            }
        )
    )
    assert "3 targets (3 correct) trained in 1 optimizer step(s)" in trained
    assert "no update" not in trained
