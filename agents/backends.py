"""Generation backends: transformers ``generate`` on any device, vLLM on GPUs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from agents.rollout import Generation, SamplingParams, Tools
from rrr_env.tasks.base import Message

logger = logging.getLogger(__name__)


def render_prompt(tokenizer: Any, conversation: list[Message], tools: Tools = None) -> list[int]:
    """Token ids of ``conversation`` in the model's own chat template, ready for the reply.

    Model text is hostile input: control tokens inside messages (a reflection that writes
    ``<|im_end|><|im_start|>system``) are encoded as plain text, so only the template itself
    can open or close a turn.
    """
    return list(
        tokenizer.apply_chat_template(
            conversation,
            tools=tools,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
            sanitize_control_tokens=True,
        )
    )


def render_prompts(
    tokenizer: Any, conversations: Sequence[list[Message]], tools: Sequence[Tools] | None
) -> list[list[int]]:
    """:func:`render_prompt` over a batch; ``tools`` is one entry per conversation, or None."""
    tools = list(tools) if tools is not None else [None] * len(conversations)
    return [render_prompt(tokenizer, c, t) for c, t in zip(conversations, tools, strict=True)]


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token id that ends a response for this model."""
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [] if ids is None else [ids])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class TransformersBackend:
    """Batched ``model.generate`` with left padding, in micro-batches of similar length.

    Args:
        model: A causal LM.
        tokenizer: Its tokenizer (must have a chat template).
        batch_size: Most conversations per ``generate`` call.
        seed: If given, seeds torch before each call (call ``n`` uses ``seed + n``), so a
            rerun of the same calls samples the same responses.
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, batch_size: int = 16, seed: int | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.seed = seed
        self._calls = 0
        self._eos = eos_token_ids(model, tokenizer)
        self._pad = tokenizer.pad_token_id
        if self._pad is None:
            self._pad = min(self._eos)

    def generate(
        self,
        conversations: Sequence[list[Message]],
        params: SamplingParams,
        tools: Sequence[Tools] | None = None,
    ) -> list[Generation]:
        """One response per conversation, in order."""
        prompts = render_prompts(self.tokenizer, conversations, tools)
        if self.seed is not None:
            torch.manual_seed(self.seed + self._calls)
        self._calls += 1
        # Longest first, so each micro-batch holds prompts of similar length (less padding).
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            outputs = self._generate_batch([prompts[i] for i in chunk], params)
            for i, output in zip(chunk, outputs, strict=True):
                results[i] = output
        return results  # type: ignore[return-value]

    @torch.no_grad()
    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        width = max(len(p) for p in prompts)
        device = self.model.device
        input_ids = torch.full((len(prompts), width), self._pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention[row, width - len(prompt) :] = 1
        sampling: dict[str, Any] = {"do_sample": False}
        if not params.greedy:
            sampling = {
                "do_sample": True,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "top_k": params.top_k or None,
            }
        else:  # silence warnings about sampling options set in the model's generation config
            sampling.update(temperature=None, top_p=None, top_k=None)
        output = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=params.max_new_tokens,
            pad_token_id=self._pad,
            eos_token_id=sorted(self._eos),
            **sampling,
        )
        generations = []
        for row, prompt in enumerate(prompts):
            new = output[row, width:].tolist()
            stop = next((j for j, token in enumerate(new) if token in self._eos), None)
            completion = new if stop is None else new[: stop + 1]
            text = self.tokenizer.decode(completion, skip_special_tokens=True)
            generations.append(Generation(text, list(prompt), completion, stop is not None))
        return generations


class VLLMBackend:
    """Generation with a vLLM engine (GPU only; ``pip install rrr[vllm]``).

    Args:
        llm: A ``vllm.LLM`` (e.g. TRL's colocated engine) or anything with its ``generate``.
        tokenizer: The model's tokenizer, for the chat template.
        seed: Base seed for sampling; call ``n`` uses ``seed + n``.
    """

    def __init__(self, llm: Any, tokenizer: Any, *, seed: int | None = None) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.seed = seed
        self._calls = 0

    def generate(
        self,
        conversations: Sequence[list[Message]],
        params: SamplingParams,
        tools: Sequence[Tools] | None = None,
    ) -> list[Generation]:
        """One response per conversation, in order."""
        from vllm import SamplingParams as VLLMSamplingParams

        prompts = render_prompts(self.tokenizer, conversations, tools)
        seed = None if self.seed is None else self.seed + self._calls
        self._calls += 1
        vllm_params = VLLMSamplingParams(
            n=1,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1,
            max_tokens=params.max_new_tokens,
            seed=seed,
        )
        outputs = self.llm.generate(
            [{"prompt_token_ids": p} for p in prompts], vllm_params, use_tqdm=False
        )
        generations = []
        for prompt, output in zip(prompts, outputs, strict=True):
            completion = output.outputs[0]
            generations.append(
                Generation(
                    completion.text,
                    list(prompt),
                    list(completion.token_ids),
                    completion.finish_reason == "stop",
                )
            )
        return generations
