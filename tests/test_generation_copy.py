"""A generation copy of a trained policy runs its own weights, in the asked dtype."""

from __future__ import annotations

import types

import torch

from agents.models import generation_model, load_model_and_tokenizer


def test_copy_drops_trainer_patches_of_forward_and_turns_the_kv_cache_back_on():
    model, _ = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    calls = []
    original = model.forward

    def patched(self, *args, **kwargs):  # what TRL / accelerate put on the instance
        calls.append(self)
        return original(*args, **kwargs)

    model.forward = types.MethodType(patched, model)
    model.config.use_cache = False  # TRL's setting for training
    copy = generation_model(model, torch.bfloat16)

    assert copy is not model and copy.dtype == torch.bfloat16
    assert "forward" not in copy.__dict__ and copy.config.use_cache is True
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        logits = copy(input_ids=ids).logits
    assert logits.dtype == torch.bfloat16 and calls == [], "the original never ran"
    assert model.config.use_cache is False and "forward" in model.__dict__, "original untouched"
