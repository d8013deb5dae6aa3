"""The inverse-CDF sampler draws from the distribution transformers' warpers define."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from agents.backends import TransformersBackend
from agents.models import load_model_and_tokenizer
from agents.rollout import SamplingParams
from agents.sampling import InverseCDFSampler, sampling_kwargs

LOGITS = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0], [0.0, 0.0, 3.0, -2.0, 1.0, 0.5]])


def reference(temperature, top_p=1.0, top_k=0, min_p=None) -> torch.Tensor:
    """The distribution transformers' own sampling path draws from."""
    warpers = [TemperatureLogitsWarper(temperature)]
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    if min_p is not None:
        warpers.append(MinPLogitsWarper(min_p))
    return LogitsProcessorList(warpers)(None, LOGITS.clone()).softmax(-1)


def frequencies(sampler: InverseCDFSampler, draws: int) -> torch.Tensor:
    rows = LOGITS.repeat_interleave(draws, dim=0)
    scores = sampler(None, rows)
    assert (torch.isfinite(scores).sum(-1) == 1).all(), "one token left per row"
    tokens = scores.argmax(-1).view(LOGITS.size(0), draws)
    return torch.stack([torch.bincount(t, minlength=LOGITS.size(1)) for t in tokens]) / draws


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 1.0},
        {"temperature": 0.5},
        {"temperature": 1.3, "top_k": 3},
        {"temperature": 0.8, "top_p": 0.7},
        {"temperature": 1.0, "min_p": 0.2},
    ],
)
def test_token_frequencies_match_transformers_distribution(options):
    torch.manual_seed(0)
    expected = reference(**options)
    observed = frequencies(InverseCDFSampler(**options), draws=100_000)
    # 100k draws: the standard error of a frequency is at most 0.0016.
    torch.testing.assert_close(observed, expected, atol=0.008, rtol=0)
    assert (observed[expected == 0] == 0).all(), "filtered tokens are never drawn"


@pytest.mark.parametrize("uniform", [0.0, 1.0 - 2**-24])
def test_extreme_uniform_draws_never_pick_a_filtered_token(monkeypatch, uniform):
    monkeypatch.setattr(torch, "rand", lambda shape, device=None: torch.full(shape, uniform))
    scores = InverseCDFSampler(1.0, top_k=2)(None, LOGITS.clone())
    tokens = scores.argmax(-1).tolist()
    allowed = [set(LOGITS[r].topk(2).indices.tolist()) for r in range(LOGITS.size(0))]
    assert all(t in a for t, a in zip(tokens, allowed, strict=True))
    # the lowest draw takes the first allowed token, the highest the last one
    pick = min if uniform == 0.0 else max
    assert tokens == [pick(a) for a in allowed]


def test_zero_temperature_is_refused_and_gives_greedy_kwargs():
    with pytest.raises(ValueError, match="greedy"):
        InverseCDFSampler(0.0)
    greedy = sampling_kwargs(0.0)
    assert greedy["do_sample"] is False and "logits_processor" not in greedy
    sampled = sampling_kwargs(0.7, top_p=0.9)
    assert sampled["do_sample"] is False and sampled["top_p"] is None
    assert isinstance(sampled["logits_processor"][0], InverseCDFSampler)


def test_backend_sampling_is_seeded_and_sharp_sampling_is_greedy():
    model, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    conversations = [[{"role": "user", "content": f"Count to {n}."}] for n in (3, 5)]
    greedy = TransformersBackend(model, tokenizer).generate(
        conversations, SamplingParams(temperature=0.0, max_new_tokens=12)
    )
    sharp = TransformersBackend(model, tokenizer, seed=0).generate(
        conversations, SamplingParams(temperature=1e-3, max_new_tokens=12)
    )
    assert [g.completion_ids for g in sharp] == [g.completion_ids for g in greedy]

    def sample(seed):
        backend = TransformersBackend(model, tokenizer, seed=seed)
        return [
            g.completion_ids
            for g in backend.generate(conversations, SamplingParams(max_new_tokens=16))
        ]

    assert sample(1) == sample(1), "a seed reproduces its samples"
    assert sample(1) != sample(2), "at temperature 1 two seeds differ"


def test_output_head_gets_contiguous_inputs_inside_the_block_only():
    from agents.models import contiguous_head_inputs

    model, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    model.requires_grad_(False)  # a frozen base, as under LoRA: the slow path of torch.linear
    ids = tokenizer(["Count to three:", "Say hi"], return_tensors="pt", padding=True)
    seen: list[bool] = []

    def run() -> torch.Tensor:
        handle = model.get_output_embeddings().register_forward_pre_hook(
            lambda module, args: seen.append(args[0].is_contiguous())
        )
        try:
            return model.generate(**ids, max_new_tokens=3, do_sample=False)
        finally:
            handle.remove()

    plain = run()
    assert seen[0] is False, "generate hands the head a non-contiguous slice for the prompt"
    seen.clear()
    with contiguous_head_inputs(model):
        fixed = run()
    assert all(seen) and len(seen) == 3
    assert torch.equal(plain, fixed), "same tokens"
    seen.clear()
    run()
    assert seen[0] is False, "the hook is gone after the block"
