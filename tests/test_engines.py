"""CPU generation engines (issue 26): GGUF export of the policy, the OpenVINO engine, fallback.

The export is checked by reading the file back with transformers' own GGUF loader; the engine
by teacher forcing: the tokens it picks greedily must be the torch policy's most likely ones
after the same prefix (bf16 numerics on both sides, so near-ties may differ: a share, not
identity), before and after a weight sync. Real SmolLM2-135M weights and tokenizer.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import rrr_env
from agents.backends import ReflectionAdapterBackend, TransformersBackend
from agents.engines import (
    EngineBackend,
    EngineFallbackWarning,
    check_engine,
    engine_unavailable_reason,
    make_backend,
)
from agents.engines.gguf_export import (
    UnsupportedModelError,
    export_gguf,
    gguf_tensor_name,
    merged_weights,
)
from agents.models import load_model_and_tokenizer
from agents.rollout import SamplingParams

gym.register_envs(rrr_env)
HAS_OPENVINO = importlib.util.find_spec("openvino_genai") is not None
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="pip install -e '.[cpu-engine]'")
GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)


@pytest.fixture(scope="module")
def smol():
    model, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="bfloat16")
    return model, tokenizer


def conversations(count: int = 4):
    env = gym.make("rrr/Countdown-v0", split="test", num_count=2, number_range=(1, 20))
    return [env.reset(options={"index": i})[0] for i in range(count)]


def with_adapter(model, scale: float = 0.05, seed: int = 1):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"])
    torch.manual_seed(seed)  # lora_A's random start: the same adapter whatever ran before
    policy = get_peft_model(model, config)
    perturb(policy, scale, seed)
    return policy.eval()


def perturb(policy, scale: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in policy.named_parameters():
            if "lora_B" in name:
                weight.copy_(torch.randn(weight.shape, generator=generator) * scale)


def top1_share(model, generations) -> float:
    """Share of generated tokens that are ``model``'s greedy choice after the same prefix."""
    hits = total = 0
    with torch.no_grad():
        for g in generations:
            ids = torch.tensor([g.prompt_ids + g.completion_ids])
            logits = model(ids).logits[0, len(g.prompt_ids) - 1 : -1]
            hits += int((logits.argmax(-1) == torch.tensor(g.completion_ids)).sum())
            total += len(g.completion_ids)
    return hits / total


# -- export ----------------------------------------------------------------------------------


def test_gguf_names_follow_llama_cpp():
    assert gguf_tensor_name("model.embed_tokens.weight") == "token_embd.weight"
    assert gguf_tensor_name("model.layers.11.mlp.down_proj.weight") == "blk.11.ffn_down.weight"
    assert gguf_tensor_name("model.layers.0.self_attn.k_proj.bias") == "blk.0.attn_k.bias"
    with pytest.raises(UnsupportedModelError, match="rotary_emb"):
        gguf_tensor_name("model.layers.0.self_attn.rotary_emb.inv_freq")


def load_gguf(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )


def test_export_reads_back_as_the_same_weights(smol, tmp_path):
    """Llama's rotary permutation and the tied output head survive a round trip exactly."""
    model, _ = smol
    path = export_gguf(model, tmp_path / "policy.gguf")
    assert path.stat().st_mode & 0o044  # readable by others, like any file the user writes
    assert not list(tmp_path.glob(".*tmp"))  # written beside and renamed into place
    loaded = load_gguf(path).state_dict()
    for name, weight in model.state_dict().items():
        assert torch.equal(loaded[name], weight.float()), name


def test_q8_export_reads_back_within_its_quantization_step(smol, tmp_path):
    """Q8_0: each block of 32 weights shares one scale; every weight is within about half a step."""
    model, _ = smol
    path = export_gguf(model, tmp_path / "policy-q8.gguf", weight_type="q8_0")
    loaded = load_gguf(path).state_dict()
    for name, weight in model.state_dict().items():
        weight = weight.float()
        if weight.dim() == 1:
            assert torch.equal(loaded[name], weight), name
            continue
        blocks = weight.reshape(-1, 32)
        step = blocks.abs().amax(dim=1, keepdim=True) / 127
        error = (loaded[name].reshape(-1, 32) - blocks).abs()
        # half a step, plus the scale stored as f16 (127 steps times its rounding, 2**-11)
        assert torch.all(error <= step * (0.5 + 127 * 2**-11) + 1e-8), name
        assert not torch.equal(loaded[name], weight), name  # quantized, not a copy


def test_export_merges_lora_and_leaves_the_policy_alone(smol, tmp_path):
    model, _ = smol
    base = {k: v.clone() for k, v in model.state_dict().items()}
    policy = with_adapter(model)
    try:
        before = {k: v.clone() for k, v in policy.state_dict().items()}
        path = export_gguf(policy, tmp_path / "policy.gguf")
        loaded = load_gguf(path).state_dict()
        q = "model.layers.3.self_attn.q_proj.weight"
        layer = policy.base_model.model.model.layers[3].self_attn.q_proj
        expected = base[q].float() + layer.get_delta_weight("default").float()
        assert not torch.equal(expected, base[q].float())  # the adapter does change q
        assert torch.allclose(loaded[q], expected.half().float(), atol=1e-6)
        k = "model.layers.3.self_attn.k_proj.weight"  # not adapted: untouched
        assert torch.equal(loaded[k], base[k].float())
        after = policy.state_dict()
        assert before.keys() == after.keys()  # still a PEFT model, not merged
        assert all(torch.equal(before[n], after[n]) for n in before)
        with policy.disable_adapter():  # the adapter switched off exports the base weights
            names = dict(merged_weights(policy))
        assert torch.equal(names[q], base[q])
    finally:
        policy.unload()


def test_export_refuses_a_reference_of_another_model(smol, tmp_path):
    import gguf

    model, _ = smol
    reference = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(reference), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((10, 8), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedModelError, match="not the same base model"):
        export_gguf(model, tmp_path / "out.gguf", reference=reference)
    assert not (tmp_path / "out.gguf").exists()
    assert not list(tmp_path.glob(".out.gguf*"))  # no partial file left behind


def test_export_needs_a_gguf_for_the_tokenizer():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2,
    )  # fmt: skip
    with pytest.raises(UnsupportedModelError, match="bundled model"):
        export_gguf(LlamaForCausalLM(config), "/tmp/never-written.gguf")


# -- choosing an engine ----------------------------------------------------------------------


def test_engine_names_are_checked_cheaply():
    check_engine("openvino")
    with pytest.raises(ValueError, match="torch, openvino"):
        check_engine("vllm")


def test_missing_engine_falls_back_to_torch_with_one_message(smol, monkeypatch):
    import agents.engines as engines

    model, tokenizer = smol
    monkeypatch.setattr(engines.importlib.util, "find_spec", lambda name: None)
    assert "pip install -e '.[cpu-engine]'" in engine_unavailable_reason("openvino")
    messages = []
    backend = make_backend("openvino", model, tokenizer, warn=messages.append)
    assert isinstance(backend, TransformersBackend)
    assert len(messages) == 1
    assert "falling back to --engine torch" in messages[0]
    assert "cpu-engine" in messages[0]


@needs_openvino
def test_a_model_the_engine_cannot_serve_falls_back(smol):
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tokenizer = smol
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, intermediate_size=32,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
    )  # fmt: skip
    with pytest.warns(EngineFallbackWarning, match="no GGUF to take the tokenizer from"):
        backend = make_backend("openvino", LlamaForCausalLM(config), tokenizer)
    assert isinstance(backend, TransformersBackend)


def test_evaluate_rejects_an_unknown_engine_before_loading(tmp_path, capsys):
    from agents import evaluate

    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--engine", "vllm", "--output_dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--engine must be one of torch, openvino" in err[0]
    assert not (tmp_path / "run").exists()


# -- the OpenVINO engine ---------------------------------------------------------------------


@needs_openvino
def test_openvino_greedy_tokens_are_torchs_choices(smol):
    model, tokenizer = smol
    backend = make_backend("openvino", model, tokenizer)
    assert isinstance(backend, EngineBackend)
    convs = conversations()
    generations = backend.generate(convs, GREEDY)
    assert all(g.completion_ids for g in generations)
    assert top1_share(model, generations) >= 0.95
    torch_out = TransformersBackend(model, tokenizer, batch_size=1).generate(convs, GREEDY)
    same = sum(
        a.completion_ids == b.completion_ids for a, b in zip(generations, torch_out, strict=True)
    )
    assert same >= len(convs) // 2
    for g in generations:  # EOS ends a stopped completion, as the torch backend returns it
        if g.stopped:
            assert g.completion_ids[-1] in backend.engine.eos_ids
        assert g.text == tokenizer.decode(g.completion_ids, skip_special_tokens=True)


@needs_openvino
def test_openvino_sampling_is_seeded_per_prompt(smol):
    model, tokenizer = smol
    convs = [conversations(1)[0]] * 4  # a group: identical prompts
    params = SamplingParams(max_new_tokens=16, temperature=1.0)
    first = make_backend("openvino", model, tokenizer, seed=5).generate(convs, params)
    again = make_backend("openvino", model, tokenizer, seed=5).generate(convs, params)
    assert [g.completion_ids for g in first] == [g.completion_ids for g in again]
    assert len({tuple(g.completion_ids) for g in first}) > 1  # a group is not one sample


@needs_openvino
def test_openvino_follows_the_policy_after_a_weight_change(smol):
    """After an optimizer step the engine serves the new weights, as torch's generate does."""
    model, tokenizer = smol
    policy = with_adapter(model, scale=0.0)  # LoRA's start: B = 0, the base model
    try:
        backend = make_backend("openvino", policy, tokenizer)
        engine = backend.engine
        convs = conversations()
        before = backend.generate(convs, GREEDY)
        assert top1_share(policy, before) >= 0.95
        assert engine.sync() is False  # unchanged weights: no rebuild
        perturb(policy, scale=0.05, seed=2)  # what an optimizer step does to the adapter
        after = backend.generate(convs, GREEDY)  # syncs before generating
        assert engine.syncs == 2
        torch_before = TransformersBackend(policy, tokenizer, batch_size=1)
        with policy.disable_adapter():
            base_out = torch_before.generate(convs, GREEDY)
        adapted_out = torch_before.generate(convs, GREEDY)
        changed_torch = [
            a.completion_ids != b.completion_ids for a, b in zip(base_out, adapted_out, strict=True)
        ]
        assert any(changed_torch)  # the step changes torch's greedy outputs...
        assert top1_share(policy, after) >= 0.95  # ...and the engine follows the new policy
        changed_engine = [
            a.completion_ids != b.completion_ids for a, b in zip(before, after, strict=True)
        ]
        assert sum(changed_engine) >= sum(changed_torch) - 1
    finally:
        policy.unload()


@needs_openvino
def test_openvino_reflection_scope_answers_with_the_base_model(smol):
    model, tokenizer = smol
    policy = with_adapter(model, scale=0.3, seed=3)  # strong: the two models disagree
    try:
        env = gym.make("rrr/Countdown-v0", split="test", num_count=2, number_range=(1, 20))
        request = env.unwrapped.task.reflection_request
        backend = make_backend(
            "openvino", policy, tokenizer, adapter_scope="reflection", reflection_request=request
        )
        assert not isinstance(backend, ReflectionAdapterBackend)
        attempt = conversations(2)
        turns = [{"role": "assistant", "content": "7"}, {"role": "user", "content": request}]
        reflection = [c + turns for c in attempt]
        out = backend.generate(attempt + reflection, GREEDY)
        adapted = top1_share(policy, out[2:]), top1_share(policy, out[:2])
        with policy.disable_adapter():
            base = top1_share(policy, out[2:]), top1_share(policy, out[:2])
        # attempts are the base model's choices, reflections the adapted model's (bf16 on both
        # sides: near-ties may differ, so shares, and each against the other model's; this
        # strong adapter's reflections have many near-ties: 0.77-1.0 over LoRA seeds 1-5, where
        # the other model's share is 0.27-0.56)
        assert base[1] >= 0.9 and base[1] > adapted[1]
        assert adapted[0] >= 0.75 and adapted[0] > base[0]
        ref = backend.adapted.generate(reflection, GREEDY)
        assert [g.completion_ids for g in out[2:]] == [g.completion_ids for g in ref]
    finally:
        policy.unload()


@needs_openvino
def test_engines_that_do_not_fit_together_take_turns_with_the_same_outputs(smol, monkeypatch):
    """Adapted and base engine share one slot when memory is short: same tokens, one alive."""
    import psutil

    model, tokenizer = smol
    policy = with_adapter(model, scale=0.3, seed=3)
    try:
        env = gym.make("rrr/Countdown-v0", split="test", num_count=2, number_range=(1, 20))
        request = env.unwrapped.task.reflection_request
        attempt = conversations(2)
        turns = [{"role": "assistant", "content": "7"}, {"role": "user", "content": request}]
        mixed = attempt + [c + turns for c in attempt]  # attempts (base) and reflections

        def scoped():
            return make_backend(
                "openvino",
                policy,
                tokenizer,
                adapter_scope="reflection",
                reflection_request=request,
            )

        together = scoped()
        assert together.adapted.engine.slot is None  # 135M: two engines fit
        expected = [g.completion_ids for g in together.generate(mixed, GREEDY)]
        del together

        real = psutil.virtual_memory()
        short = real._replace(available=2 * 2**30)  # less than two engines and the headroom
        monkeypatch.setattr(psutil, "virtual_memory", lambda: short)
        turns_backend = scoped()
        adapted, base = turns_backend.adapted.engine, turns_backend.base.engine
        assert adapted.slot is not None and adapted.slot is base.slot
        assert [g.completion_ids for g in turns_backend.generate(mixed, GREEDY)] == expected
        assert [g.completion_ids for g in turns_backend.generate(mixed, GREEDY)] == expected
        assert adapted.slot.swaps >= 3  # base, adapted, base, adapted: each turn a reload...
        assert (adapted._pipeline is None) != (base._pipeline is None)  # ...one alive at a time
        assert (adapted._version, base._version) == (1, 1)  # reloads reuse their one export
    finally:
        policy.unload()


@needs_openvino
def test_evaluate_runs_on_the_engine(tmp_path):
    from agents import evaluate

    out = tmp_path / "run"
    metrics = evaluate.main(
        ["--model", "smollm2-135m", "--engine", "openvino", "--n", "3", "--max_new_tokens",
         "16", "--reflection_max_new_tokens", "16", "--env_kwargs",
         json.dumps({"num_count": 2, "number_range": [1, 20]}), "--output_dir", str(out)]
    )  # fmt: skip
    assert metrics["rrr"]["episodes"] == 3
    assert json.loads((out / "config.json").read_text())["engine"] == "openvino"
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == 3


def test_a_grpo_run_whose_engine_cannot_start_trains_with_torch_and_says_so(tmp_path, monkeypatch):
    """One step: the engine's package missing, the rollout warns, samples with the trainer's
    model, and names torch as its engine (what the run's result reports)."""
    from test_no_signal_step import failures, make_config

    import agents.engines as engines
    from agents.grpo_reflect import build_trainer

    monkeypatch.setattr(engines.importlib.util, "find_spec", lambda name: None)
    model, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    config = make_config(tmp_path, engine="openvino", max_steps=1, temperature=1.0)
    trainer = build_trainer(config, model, tokenizer, failures(config, 4))
    with pytest.warns(engines.EngineFallbackWarning, match="falling back to --engine torch"):
        trainer.train()
    assert trainer.state.global_step == 1
    assert trainer.rollout_func.engine == "torch" and trainer.rollout_func._engine_generator is None


@needs_openvino
def test_grpo_rollouts_run_on_the_engine_and_follow_each_update(tmp_path):
    """RRR-GRPO with --engine openvino: the engine samples, and serves each new adapter."""
    from test_no_signal_step import failures, make_config

    from agents.engines.openvino import weights_fingerprint
    from agents.grpo_reflect import build_trainer

    model, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    config = make_config(tmp_path, engine="openvino", max_steps=1, temperature=1.0)
    trainer = build_trainer(config, model, tokenizer, failures(config, 4))
    trainer.train()
    rollout = trainer.rollout_func
    generator = rollout._engine_generator
    assert generator is not None  # the engine started: no fallback
    assert generator._prompts[0] > 0  # and it generated the step's reflections and retries
    policy = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():  # as an optimizer step would (this config trains every weight)
        for param in policy.parameters():
            param.add_(torch.randn_like(param) * 1e-3)
    syncs, sync_seconds = generator.engine.syncs, generator.engine.sync_seconds
    prompts = [r["prompt"] for r in failures(config, 2) for _ in range(2)]
    batch = rollout(prompts, trainer)
    assert generator.engine.syncs == syncs + 1  # new weights served before generating
    assert generator.engine.served == weights_fingerprint(policy)
    assert len(batch["completion_ids"]) == 4
    # The call reports its wall time and its share spent loading the new weights.
    (spent,) = set(batch["engine_sync_seconds"])
    assert spent == pytest.approx(generator.engine.sync_seconds - sync_seconds) and spent > 0
    assert set(batch["rollout_seconds"]) == {batch["rollout_seconds"][0]}
    assert batch["rollout_seconds"][0] > spent
    # The trained step logged both, within TRL's time for the whole step.
    (logged,) = [h for h in trainer.state.log_history if "rrr/rollout_seconds" in h]
    assert 0 < logged["rrr/engine_sync_seconds"] < logged["rrr/rollout_seconds"]
    assert logged["rrr/rollout_seconds"] <= logged["step_time"]


@needs_openvino
def test_grpo_engines_that_take_turns_leave_the_training_step_their_memory(tmp_path, monkeypatch):
    """Scope reflection, memory short: one slot, nothing loaded while the step trains."""
    import psutil
    from peft import LoraConfig
    from test_no_signal_step import failures, make_config

    from agents.grpo_reflect import build_trainer

    real = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: real._replace(available=2 * 2**30))
    model, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    config = make_config(
        tmp_path, engine="openvino", adapter_scope="reflection", max_steps=1, temperature=1.0
    )
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = build_trainer(config, model, tokenizer, failures(config, 4), peft_config=lora)
    trainer.train()
    generator = trainer.rollout_func._engine_generator
    adapted, base = generator.engine, generator.base_engine
    assert adapted.slot is not None and adapted.slot is base.slot
    assert adapted.syncs >= 1 and base.syncs >= 1  # both generated: reflections, retries
    assert adapted._pipeline is None and base._pipeline is None  # released for the step
    (logged,) = [h for h in trainer.state.log_history if "rrr/engine_sync_seconds" in h]
    both = adapted.sync_seconds + base.sync_seconds  # the base engine's loads count too
    assert logged["rrr/engine_sync_seconds"] == pytest.approx(both, rel=1e-3)


@needs_openvino
def test_rise_awr_samples_on_the_engine(tmp_path, monkeypatch):
    """RISE-AWR's rollouts and best-of-N go through one engine that follows the updates."""
    from agents.engines.openvino import OpenVINOEngine
    from agents.rise_awr import Args, train

    rebuilds = []
    sync = OpenVINOEngine.sync

    def counted(self, force=False):
        rebuilt = sync(self, force)
        rebuilds.append(rebuilt)
        return rebuilt

    monkeypatch.setattr(OpenVINOEngine, "sync", counted)
    import agents.rise_awr as rise_awr

    engines, loaded_while_updating = [], []
    original_init, original_update = OpenVINOEngine.__init__, rise_awr.update

    def tracked_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        engines.append(self)

    def tracked_update(*args, **kwargs):
        loaded_while_updating.append([e._pipeline is not None for e in engines])
        return original_update(*args, **kwargs)

    monkeypatch.setattr(OpenVINOEngine, "__init__", tracked_init)
    monkeypatch.setattr(rise_awr, "update", tracked_update)

    run = train(
        Args(
            output_dir=str(tmp_path / "runs"),
            env_id="rrr/Countdown-v0",
            env_kwargs=json.dumps({"num_count": 2, "number_range": [1, 20], "size": 50}),
            model="smollm2-135m",
            use_peft=True,
            lora_r=4,
            iterations=2,
            items_per_iteration=2,
            samples_per_item=2,
            best_of=2,
            max_new_tokens=8,
            eval_n=0,
            threads=1,
            train_on_failures=True,
            engine="openvino",
        )
    )
    assert run.iteration == 2
    # started once, then served the weights of iteration 1's update in iteration 2
    assert sum(rebuilds) == 2 and len(rebuilds) > 2
    # Every update ran with the engine's pipeline unloaded (at 1.5B both did not fit in 24 GB).
    assert loaded_while_updating == [[False], [False]]
