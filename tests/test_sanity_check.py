"""The learning sanity check, fast: does a trainer learn a reward that one word decides?

A tiny Llama built from a config (2 layers, hidden size 32) with SmolLM2's real tokenizer and
chat template. Its output layer is set so that it samples almost only from eight word tokens,
``" wrong"`` among them: a reflection of 3 tokens holds the marker about a third of the time.

- RRR-GRPO through ``agents.grpo_reflect.build_trainer`` (TRL's GRPOTrainer, our
  ``rollout_func``, ``retry_success``), the retry scripted by ``MarkerRetry``: right exactly
  when the reflection says "wrong", graded by the real Countdown env.
- RISE-AWR's ``collect`` / ``make_targets`` / ``weighted_examples`` / ``update`` on
  ``MarkerTask`` (reward: the answer says "wrong"), with the official ``exp(reward / beta)``
  weights and one sample per item, so that the weights alone carry the reward.

Each runs once on the correct path, which must raise the held-out marker rate, and once per
mutation injected into the real code (credit on the retry's tokens instead of the
reflection's, rewards not passed through, AWR weights ignored), which must not.
"""

from __future__ import annotations

import pytest
import torch

from agents.grpo_reflect import ReflectRetryRollout
from benchmarks.sanity_check import (
    failure_rows,
    measure_rise,
    measure_rrr,
    rise_iteration,
    rrr_config,
    rrr_trainer,
)

pytestmark = pytest.mark.slow  # trains (a tiny model, about 45 s for the six cases)

MARKER = "wrong"
#: The tiny model samples (almost) only these tokens; the marker is one of eight.
ALPHABET = (" wrong", " apple", " river", " stone", " cloud", " green", " table", " light")
TOKENS = 3  # reflection / answer length
STEPS = 8  # RRR-GRPO optimizer steps
#: The held-out rate must rise by this much on the correct path, and by less when broken.
LEARNED = 0.25


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from agents.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tiny_model(tokenizer, seed: int = 0):
    """A 2-layer Llama whose samples are (almost) only the :data:`ALPHABET` tokens.

    The first hidden dimension is a large constant after the final norm; only the alphabet's
    output rows read it, so they get logits around 11 (the other 49k tokens around 0), and
    the remaining dimensions make the choice among them depend on the context.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 1.0
        model.model.norm.weight[0] = 10.0
        head = model.lm_head.weight
        head[:, 0] = 0.0
        for word in ALPHABET:
            (token,) = tokenizer.encode(word, add_special_tokens=False)
            head[token, 0] = 0.2
            head[token, 1:] = torch.randn(head.shape[1] - 1) * 0.3
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


# -- RRR-GRPO --------------------------------------------------------------------------------


def retry_credit(monkeypatch) -> dict:
    """Mutation: the loss is on the retry's tokens, not the reflection's."""
    to_trl = ReflectRetryRollout.to_trl

    def retry_only(self, batch):
        output = to_trl(self, batch)
        output["env_mask"] = [
            [0] * len(r) + mask[len(r) :]
            for r, mask in zip(batch.reflection_ids, output["env_mask"], strict=True)
        ]
        return output

    monkeypatch.setattr(ReflectRetryRollout, "to_trl", retry_only)
    return {"credit": "reflection+retry"}


def zero_reward(monkeypatch) -> dict:
    """Mutation: the env's verdicts do not reach the trainer (the reward function sees 0)."""
    import agents.grpo_reflect as grpo_reflect

    real = grpo_reflect.retry_success

    def retry_success(prompts, completions, retry_reward, **kwargs):
        return [0.0 for _ in real(prompts, completions, retry_reward, **kwargs)]

    monkeypatch.setattr(grpo_reflect, "retry_success", retry_success)
    return {}


def correct(monkeypatch) -> dict:
    return {}


@pytest.mark.parametrize(
    ("mutation", "learns"),
    [(correct, True), (retry_credit, False), (zero_reward, False)],
    ids=["reflection-credit", "retry-credit", "reward-zeroed"],
)
def test_rrr_grpo_learns_the_marker_only_on_the_correct_credit_path(
    tokenizer, tmp_path, monkeypatch, mutation, learns
):
    overrides = mutation(monkeypatch)
    model = tiny_model(tokenizer)
    held_out = failure_rows("test", 8)

    def rate() -> float:
        items, episodes = measure_rrr(
            model, tokenizer, held_out, MARKER, samples=16, reflection_tokens=TOKENS, seed=1
        )
        assert all(e["reward"] == float(e["marker"]) for e in episodes)
        return sum(i["hits"] for i in items) / sum(i["samples"] for i in items)

    before = rate()
    assert 0.1 < before < 0.6, "the marker is neither absent nor certain before training"
    config = rrr_config(
        tmp_path,
        max_completion_length=TOKENS,
        retry_max_tokens=16,
        learning_rate=1e-2,
        max_steps=STEPS,
        per_device_train_batch_size=8,  # 2 groups of 4 reflections per step
        bf16=False,
        **overrides,
    )
    trainer = rrr_trainer(config, model, tokenizer, failure_rows("train", 16), MARKER)
    trainer.train()
    assert trainer.state.global_step == STEPS
    marked = [m for call in trainer.rollout_func.retry_generator.seen for m in call]
    assert any(marked) and not all(marked), "some reflections had the marker, some not"
    after = rate()
    print(f"{mutation.__name__}: held-out marker rate {before:.3f} -> {after:.3f}")
    if learns:
        assert after - before > LEARNED, f"the marker rate went {before:.2f} -> {after:.2f}"
    else:
        assert after - before < LEARNED, f"a broken path learned: {before:.2f} -> {after:.2f}"


# -- RISE-AWR --------------------------------------------------------------------------------


def ignored_weights(monkeypatch) -> None:
    """Mutation: every AWR weight is 1 (plain SFT on the policy's own samples)."""
    import agents.rise_awr as rise_awr

    monkeypatch.setattr(rise_awr, "awr_weight", lambda advantage, beta, max_weight: 1.0)


def rewards_dropped(monkeypatch) -> None:
    """Mutation: the env's rewards do not reach the targets (every group's rewards are 0)."""
    import agents.rise_awr as rise_awr

    collect = rise_awr.collect

    def without_rewards(*args, **kwargs):
        episodes, groups = collect(*args, **kwargs)
        for group in groups:
            group.rewards = [0.0] * len(group.rewards)
        return episodes, groups

    monkeypatch.setattr(rise_awr, "collect", without_rewards)


def awr_correct(monkeypatch) -> None:
    pass


@pytest.mark.parametrize(
    ("mutation", "learns"),
    [(awr_correct, True), (ignored_weights, False), (rewards_dropped, False)],
    ids=["weighted", "weights-ignored", "rewards-dropped"],
)
def test_rise_awr_learns_the_marker_only_through_its_weights(
    tokenizer, monkeypatch, mutation, learns
):
    from agents.items import distinct_indices
    from benchmarks.sanity_check import marker_env

    mutation(monkeypatch)
    model = tiny_model(tokenizer)
    held_out = distinct_indices(lambda: marker_env("test", MARKER), 8)

    def rate() -> float:
        items, _ = measure_rise(
            model, tokenizer, held_out, MARKER, samples=16, response_tokens=TOKENS, seed=1
        )
        return sum(i["hits"] for i in items) / sum(i["samples"] for i in items)

    before = rate()
    assert 0.1 < before < 0.6
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    for iteration in range(8):
        stats, targets, _ = rise_iteration(
            model,
            optimizer,
            tokenizer,
            range(iteration * 32, (iteration + 1) * 32),
            MARKER,
            samples=1,
            response_tokens=TOKENS,
            weighting="official",
            minibatch_size=8,
            micro_batch_size=8,
            seed=iteration,
        )
        assert len(targets) == 32 and stats["optimizer_steps"] == 4
    after = rate()
    print(f"{mutation.__name__}: held-out marker rate {before:.3f} -> {after:.3f}")
    if learns:
        assert after - before > LEARNED, f"the marker rate went {before:.2f} -> {after:.2f}"
    else:
        assert after - before < LEARNED, f"a broken path learned: {before:.2f} -> {after:.2f}"
