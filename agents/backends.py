"""Generation backends: transformers ``generate`` on any device, vLLM on GPUs."""

from __future__ import annotations

import contextlib
import inspect
import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch

from agents.models import contiguous_head_inputs
from agents.rollout import Backend, Generation, SamplingParams, Tools
from agents.sampling import sampling_kwargs
from rrr_env.tasks.base import Message

logger = logging.getLogger(__name__)


#: The first transformers release whose ``apply_chat_template`` has ``sanitize_control_tokens``.
SANITIZING_TRANSFORMERS = "5.20.0"
_SANITIZING_CHECKED: weakref.WeakSet[Any] = weakref.WeakSet()


def require_control_token_sanitizing(tokenizer: Any) -> None:
    """Raise unless ``tokenizer`` encodes control tokens inside messages as plain text.

    Before transformers 5.20, ``apply_chat_template`` took ``sanitize_control_tokens=True``
    for a template variable and ignored it: model text could then forge chat turns with no
    error. This checks the signature, then renders a message holding the tokenizer's own
    special tokens and checks that none of them became a special token (once per tokenizer).

    Raises:
        RuntimeError: The installed transformers does not honour ``sanitize_control_tokens``.
    """
    with contextlib.suppress(TypeError):  # objects that cannot be weakly referenced
        if tokenizer in _SANITIZING_CHECKED:
            return
    import transformers

    fix = (
        f"transformers {transformers.__version__} does not honour "
        "apply_chat_template(sanitize_control_tokens=True), so model text could forge chat "
        f"turns; install transformers>={SANITIZING_TRANSFORMERS} (pip install -e '.[train]')"
    )
    if "sanitize_control_tokens" not in inspect.signature(tokenizer.apply_chat_template).parameters:
        raise RuntimeError(fix)
    forged = "".join(str(t) for t in tokenizer.all_special_tokens)
    if forged:
        special = set(tokenizer.all_special_ids)

        def count(content: str) -> int:
            ids = _apply_template(tokenizer, [{"role": "user", "content": content}], None)
            return sum(token in special for token in ids)

        if count("x" + forged) != count("x"):
            raise RuntimeError(fix)
    with contextlib.suppress(TypeError):
        _SANITIZING_CHECKED.add(tokenizer)


def _apply_template(tokenizer: Any, conversation: list[Message], tools: Tools) -> list[int]:
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


def render_prompt(tokenizer: Any, conversation: list[Message], tools: Tools = None) -> list[int]:
    """Token ids of ``conversation`` in the model's own chat template, ready for the reply.

    Model text is hostile input: control tokens inside messages (a reflection that writes
    ``<|im_end|><|im_start|>system``) are encoded as plain text, so only the template itself
    can open or close a turn. Refuses (``RuntimeError``) to render with a transformers that
    would not do so (see :func:`require_control_token_sanitizing`).
    """
    require_control_token_sanitizing(tokenizer)
    return _apply_template(tokenizer, conversation, tools)


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
        temperature = 0.0 if params.greedy else params.temperature
        sampling = sampling_kwargs(temperature, top_p=params.top_p, top_k=params.top_k)
        with contiguous_head_inputs(self.model):
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
        seed: Base seed for sampling. Every prompt gets its own seed (``seed`` plus the
            number of prompts before it, over all calls): one seed shared by a batch would
            give identical prompts (a GRPO group, collection rounds) identical samples.
    """

    def __init__(self, llm: Any, tokenizer: Any, *, seed: int | None = None) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.seed = seed
        self._prompts = 0

    def generate(
        self,
        conversations: Sequence[list[Message]],
        params: SamplingParams,
        tools: Sequence[Tools] | None = None,
    ) -> list[Generation]:
        """One response per conversation, in order."""
        from vllm import SamplingParams as VLLMSamplingParams

        prompts = render_prompts(self.tokenizer, conversations, tools)
        first = self._prompts
        self._prompts += len(prompts)
        vllm_params = [
            VLLMSamplingParams(
                n=1,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else -1,
                max_tokens=params.max_new_tokens,
                seed=None if self.seed is None else self.seed + first + i,
            )
            for i in range(len(prompts))
        ]
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


def asks_reflection(conversation: Sequence[Message], reflection_request: str) -> bool:
    """Whether ``conversation`` ends with the task's reflection request (a user turn).

    >>> asks_reflection([{"role": "user", "content": "Reflect."}], "Reflect.")
    True
    """
    last = conversation[-1] if conversation else None
    return (
        last is not None
        and last.get("role") == "user"
        and last.get("content") == reflection_request
    )


#: Adapter scopes of a saved policy (``rrr_policy.json``): ``all`` answers and reflects with the
#: adapter (the paper's shared weights); ``reflection`` reflects with it and answers without.
ADAPTER_SCOPES = ("all", "reflection")


class ReflectionAdapterBackend:
    """Reflections from the adapted model, attempts and retries from its frozen base.

    A conversation asks for a reflection when its last message is the user message
    ``reflection_request`` (what the env appends after a wrong answer; :func:`agents.rollout.
    rollout` generates each phase in its own call). Every other conversation is generated
    inside PEFT's ``disable_adapter()`` of the same model: no second copy of the weights.

    Args:
        inner: A :class:`TransformersBackend` of a PEFT model (not merged).
        reflection_request: The task's reflection request text.

    Raises:
        TypeError: ``inner`` cannot switch its model's adapter off.
    """

    def __init__(self, inner: TransformersBackend, reflection_request: str) -> None:
        if not reflection_request:
            raise ValueError("reflection_request must be the task's non-empty request text")
        model = getattr(inner, "model", None)
        if not hasattr(model, "disable_adapter"):
            raise TypeError(
                "adapter scope 'reflection' needs a transformers backend of an unmerged PEFT "
                f"model (got a {type(model).__name__})"
            )
        self.inner = inner
        self.reflection_request = reflection_request

    def generate(
        self,
        conversations: Sequence[list[Message]],
        params: SamplingParams,
        tools: Sequence[Tools] | None = None,
    ) -> list[Generation]:
        """One response per conversation, in order; only reflections use the adapter."""

        def base(batch: list[list[Message]], p: SamplingParams, t: list[Tools]) -> list[Generation]:
            with self.inner.model.disable_adapter():
                return self.inner.generate(batch, p, t)

        return generate_by_phase(
            conversations, params, tools, self.reflection_request, self.inner.generate, base
        )


def generate_by_phase(
    conversations: Sequence[list[Message]],
    params: SamplingParams,
    tools: Sequence[Tools] | None,
    reflection_request: str,
    reflections: Callable[[list[list[Message]], SamplingParams, list[Tools]], list[Generation]],
    others: Callable[[list[list[Message]], SamplingParams, list[Tools]], list[Generation]],
) -> list[Generation]:
    """Reflection requests generated by ``reflections``, every other turn by ``others``, in order.

    Each callable is called once (with its conversations, in their order), or not at all.
    """
    tools = list(tools) if tools is not None else [None] * len(conversations)
    out: list[Generation | None] = [None] * len(conversations)
    reflect = [asks_reflection(c, reflection_request) for c in conversations]
    for generate, wanted in ((reflections, True), (others, False)):
        members = [k for k, r in enumerate(reflect) if r == wanted]
        if members:
            generated = generate(
                [conversations[k] for k in members], params, [tools[k] for k in members]
            )
            for k, generation in zip(members, generated, strict=True):
                out[k] = generation
    return out  # type: ignore[return-value]


def scoped_backend(backend: Backend, adapter_scope: str, reflection_request: str) -> Backend:
    """``backend`` as a policy of ``adapter_scope`` uses it (see :data:`ADAPTER_SCOPES`)."""
    if adapter_scope not in ADAPTER_SCOPES:
        raise ValueError(f"adapter_scope must be one of {ADAPTER_SCOPES}, got {adapter_scope!r}")
    if adapter_scope == "all":
        return backend
    return ReflectionAdapterBackend(backend, reflection_request)  # type: ignore[arg-type]
