"""Generation engines behind the :class:`agents.rollout.Backend` protocol, chosen by ``--engine``.

- ``torch``: transformers ``model.generate`` (:class:`agents.backends.TransformersBackend`);
  always available, the reference.
- ``openvino``: OpenVINO GenAI's continuous-batching pipeline serving the policy's current
  weights (:class:`agents.engines.openvino.OpenVINOEngine`), for CPUs. Optional: ``pip install
  -e '.[cpu-engine]'``.

:func:`make_backend` builds the backend a command line asked for. An engine that cannot start
(not installed, a model it cannot serve) is reported in one warning that names the fallback,
and the torch backend runs instead; once running, an engine's errors propagate (a run never
switches engines midway).

Example:
    >>> from agents.engines import ENGINES, check_engine
    >>> ENGINES
    ('torch', 'openvino')
    >>> check_engine("torch")
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.rollout import Backend, Generation, SamplingParams, Tools
from rrr_env.tasks.base import Message

logger = logging.getLogger(__name__)

__all__ = [
    "ENGINES",
    "EngineBackend",
    "EngineFallbackWarning",
    "BaseView",
    "EngineGenerator",
    "check_engine",
    "engine_unavailable_reason",
    "engines_fit",
    "scoped_engines",
    "make_backend",
    "make_engine",
]

#: Values of ``--engine``.
ENGINES = ("torch", "openvino")


class EngineFallbackWarning(UserWarning):
    """An engine that was asked for could not start; the torch backend runs instead."""


def check_engine(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is one of :data:`ENGINES` (cheap, for CLIs)."""
    if name not in ENGINES:
        raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, got {name!r}")


def engine_unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot run here (not installed), or None if it can be tried."""
    check_engine(name)
    if name == "openvino" and importlib.util.find_spec("openvino_genai") is None:
        return "openvino-genai is not installed (pip install -e '.[cpu-engine]')"
    return None


def make_engine(name: str, model: Any, tokenizer: Any, **options: Any) -> Any:
    """Start engine ``name`` on ``model``'s current weights (exported and loaded now).

    Raises:
        RuntimeError: The engine cannot run here or cannot serve this model (the message says
            why); callers that may fall back catch it.
    """
    from agents.backends import eos_token_ids

    reason = engine_unavailable_reason(name)
    if reason is not None:
        raise RuntimeError(reason)
    if name == "torch":
        raise ValueError("the torch engine is the transformers backend, not a separate engine")
    from agents.engines.gguf_export import UnsupportedModelError
    from agents.engines.openvino import OpenVINOEngine

    try:
        engine = OpenVINOEngine(model, sorted(eos_token_ids(model, tokenizer)), **options)
        engine.sync()
    except (UnsupportedModelError, ImportError) as error:
        raise RuntimeError(str(error)) from error
    except RuntimeError as error:  # OpenVINO's own (a CPU or model it cannot compile)
        raise RuntimeError(f"OpenVINO could not load the model: {error}") from error
    return engine


#: Resident bytes of an OpenVINO pipeline per model parameter: about three copies of the
#: 16-bit weights (measured on an AMD EPYC: 9.3 GB for Qwen2.5-Coder-1.5B after its first
#: generation; 6.4 GB before it).
ENGINE_BYTES_PER_PARAMETER = 6.0
#: Memory left free beside the engines for the policy's training step.
TRAINING_HEADROOM_BYTES = 4 * 2**30


def engines_fit(model: Any, count: int, headroom_bytes: int = TRAINING_HEADROOM_BYTES) -> bool:
    """Whether ``count`` engines of ``model`` fit in the memory available now, with headroom.

    Args:
        model: The policy (already loaded: its own memory is not available any more).
        count: Engines to keep loaded together.
        headroom_bytes: Memory to leave free (a training step's activations).
    """
    import psutil

    params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    need = count * ENGINE_BYTES_PER_PARAMETER * params + headroom_bytes
    return need <= psutil.virtual_memory().available


def scoped_engines(name: str, model: Any, tokenizer: Any, **options: Any) -> tuple[Any, Any]:
    """The adapted and the base engine of adapter scope ``reflection``, started.

    Where the two do not fit in memory together (:func:`engines_fit`) they share an
    :class:`agents.engines.openvino.EngineSlot` and take turns (same outputs, a load per turn),
    and a log line says so.

    Raises:
        RuntimeError: As :func:`make_engine`.
    """
    if "slot" not in options and name == "openvino" and not engines_fit(model, 2):
        from agents.engines.openvino import EngineSlot

        options["slot"] = EngineSlot()
        logger.warning(
            "the adapted and the base engine do not fit in memory together: they take turns "
            "(one loaded at a time; each turn reloads one: 20-40 s at 1.5B on 2 cores)"
        )
    adapted = make_engine(name, model, tokenizer, **options)
    base = make_engine(name, BaseView(model), tokenizer, **options)
    return adapted, base


class EngineBackend:
    """A :class:`agents.rollout.Backend` over an engine's ``generate_ids``.

    Args:
        engine: An engine such as :class:`agents.engines.openvino.OpenVINOEngine`.
        tokenizer: The model's tokenizer (chat template, decoding).
        seed: Base seed for sampling; every prompt gets its own (``seed`` plus the number of
            prompts before it over all calls), so identical prompts (a group) differ.
    """

    def __init__(self, engine: Any, tokenizer: Any, *, seed: int | None = None) -> None:
        self.engine = engine
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
        from agents.backends import render_prompts

        prompts = render_prompts(self.tokenizer, conversations, tools)
        first = self._prompts
        self._prompts += len(prompts)
        seeds = None if self.seed is None else [self.seed + first + i for i in range(len(prompts))]
        completions, stopped = self.engine.generate_ids(
            prompts,
            max_new_tokens=params.max_new_tokens,
            temperature=0.0 if params.greedy else params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            seeds=seeds,
        )
        return [
            Generation(self.tokenizer.decode(ids, skip_special_tokens=True), list(p), ids, stop)
            for p, ids, stop in zip(prompts, completions, stopped, strict=True)
        ]

    def release(self) -> None:
        """Unload the engine's pipeline, freeing its memory for a training step.

        The next call loads it again, with the weights of that time.
        """
        release = getattr(self.engine, "release", None)
        if release is not None:
            release()


class _ScopedEngineBackend:
    """Reflections from the adapted policy's engine, other turns from the base model's."""

    def __init__(self, adapted: Backend, base: Backend, reflection_request: str) -> None:
        self.adapted, self.base, self.reflection_request = adapted, base, reflection_request

    def generate(
        self,
        conversations: Sequence[list[Message]],
        params: SamplingParams,
        tools: Sequence[Tools] | None = None,
    ) -> list[Generation]:
        """One response per conversation, in order; reflections from the adapted engine."""
        from agents.backends import generate_by_phase

        return generate_by_phase(
            conversations,
            params,
            tools,
            self.reflection_request,
            self.adapted.generate,
            self.base.generate,
        )


def make_backend(
    engine: str,
    model: Any,
    tokenizer: Any,
    *,
    batch_size: int = 16,
    seed: int | None = None,
    adapter_scope: str = "all",
    reflection_request: str | None = None,
    warn: Callable[[str], None] | None = None,
    **engine_options: Any,
) -> Backend:
    """The generation backend ``--engine`` asked for, with the policy's adapter scope.

    Args:
        engine: One of :data:`ENGINES`.
        model: The policy (unmerged PEFT model under adapter scope ``reflection``).
        tokenizer: Its tokenizer.
        batch_size: Micro-batch of the torch backend (engines batch continuously).
        seed: Sampling seed (see the backends).
        adapter_scope: ``all`` or ``reflection`` (:data:`agents.backends.ADAPTER_SCOPES`).
        reflection_request: The task's reflection request (needed under ``reflection``).
        warn: Where the one-line fallback message goes (default: ``warnings.warn`` with
            :class:`EngineFallbackWarning`).
        **engine_options: Passed to the engine (e.g. ``kv_cache_precision``).

    Returns:
        A backend; the torch one if ``engine`` could not start (after the warning).
    """
    from agents.backends import TransformersBackend, scoped_backend

    check_engine(engine)
    scoped = adapter_scope == "reflection"
    if scoped and not reflection_request:
        raise ValueError("adapter_scope 'reflection' needs the task's reflection_request")
    if engine != "torch":
        try:
            if not scoped:
                adapted_engine = make_engine(engine, model, tokenizer, **engine_options)
                return EngineBackend(adapted_engine, tokenizer, seed=seed)
            adapted_engine, base_engine = scoped_engines(engine, model, tokenizer, **engine_options)
            adapted = EngineBackend(adapted_engine, tokenizer, seed=seed)
            base = EngineBackend(base_engine, tokenizer, seed=None if seed is None else seed + 7919)
            return _ScopedEngineBackend(adapted, base, reflection_request)  # type: ignore[arg-type]
        except RuntimeError as error:
            message = f"--engine {engine} is unavailable ({error}); falling back to --engine torch"
            if warn is not None:
                warn(message)
            else:
                warnings.warn(message, EngineFallbackWarning, stacklevel=2)
    backend = TransformersBackend(model, tokenizer, batch_size=batch_size, seed=seed)
    if scoped:
        return scoped_backend(backend, "reflection", reflection_request or "")
    return backend


class BaseView:
    """A PEFT model seen with its adapter off (what an engine exports and fingerprints).

    An engine started on ``BaseView(policy)`` serves the frozen base model of a LoRA policy
    (attempts and retries under adapter scope ``reflection``) and never needs a re-sync.
    """

    def __init__(self, model: Any) -> None:
        if not hasattr(model, "disable_adapter"):
            raise RuntimeError(
                "adapter scope 'reflection' needs an unmerged PEFT model "
                f"(got a {type(model).__name__})"
            )
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any:
        return (
            (n, p) for n, p in self._model.named_parameters(*args, **kwargs) if "lora_" not in n
        )

    def named_modules(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        for name, module in self._model.named_modules(*args, **kwargs):
            if hasattr(module, "get_delta_weight"):
                yield name, _NoDelta(module)
            else:
                yield name, module


class _NoDelta:
    """A LoRA layer whose delta is left out of the export."""

    def __init__(self, module: Any) -> None:
        self.base_layer = module.base_layer
        self.get_delta_weight = module.get_delta_weight
        self.merged = getattr(module, "merged", False)
        self.disable_adapters = True


@dataclass
class EngineGenerator:
    """A :class:`agents.reflection_rollout.TokenGenerator` on an engine (GRPO rollouts).

    The engine re-syncs the policy's weights before a call whenever they changed (after an
    optimizer step). Returns no sampling logprobs.

    Attributes:
        engine: The engine.
        temperature: Sampling temperature; 0 is greedy.
        top_p: Nucleus mass.
        top_k: 0 disables.
        seed: Base seed; each prompt gets its own.
        base_engine: An engine serving the policy with its adapter off (for
            :func:`agents.reflection_rollout.without_adapter`), or None.
    """

    engine: Any
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    base_engine: Any = None
    # Prompts seeded so far; a list, so that copies (``dataclasses.replace``: the retry's
    # generator) share it and never reuse a seed.
    _prompts: list[int] = field(default_factory=lambda: [0], repr=False)

    def __call__(
        self, prompt_ids: Sequence[list[int]], max_new_tokens: int, group_size: int = 1
    ) -> tuple[list[list[int]], None]:
        first = self._prompts[0]
        self._prompts[0] += len(prompt_ids)
        seeds = (
            None if self.seed is None else [self.seed + first + i for i in range(len(prompt_ids))]
        )
        completions, _ = self.engine.generate_ids(
            prompt_ids,
            max_new_tokens=max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            seeds=seeds,
        )
        return completions, None
