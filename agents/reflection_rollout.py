"""Continue failed episodes: sample reflections and retries, let the env grade the retries.

The episode logic of RRR-GRPO, independent of any trainer: a failure prompt (the conversation
up to the reflection request) is replayed in its env, a reflection is sampled for it, the env
poses the task again, a retry is sampled and the env's verifier grades it. Generation goes
through a :class:`TokenGenerator` (token ids in, token ids out), so that the same code runs on
the trainer's own model, on TRL's vLLM engine, or on a plain model (``benchmarks``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import gymnasium as gym
import torch

from agents.backends import require_control_token_sanitizing
from agents.models import contiguous_head_inputs
from agents.sampling import sampling_kwargs
from rrr_env.tasks.base import Message

#: Env options of an RRR episode: an attempt, a reflection, one retry.
EPISODE_OPTIONS: dict[str, Any] = {"max_attempts": 2, "reflect": True, "feedback": "binary"}

Tools = list[dict[str, Any]] | None

# -- generation ------------------------------------------------------------------------------


class TokenGenerator(Protocol):
    """Samples one completion per prompt, from token ids to token ids."""

    def __call__(
        self, prompt_ids: Sequence[list[int]], max_new_tokens: int, group_size: int
    ) -> tuple[list[list[int]], list[list[float]] | None]:
        """Completions (ending with an EOS id when they stopped) and their sampling logprobs.

        ``group_size`` says that consecutive runs of that many prompts are identical (a GRPO
        group), which lets a server sample a group with one request.
        """
        ...


@dataclass
class HFGenerator:
    """Batched ``model.generate`` from token ids, with left padding.

    Attributes:
        model: A causal LM (the policy, unwrapped for generation).
        eos_ids: Token ids that end a response.
        pad_id: Padding token id.
        temperature: Sampling temperature; 0 means greedy.
        top_p: Nucleus sampling mass.
        top_k: Keep the k most likely tokens; 0 disables.
        min_p: Minimum token probability relative to the most likely one, or None.
        repetition_penalty: 1.0 disables.
        batch_size: Most prompts per ``generate`` call; None for all at once.
        autocast: Context manager factory for mixed precision (e.g. the trainer's).
        generation_kwargs: More ``generate`` keyword arguments (TRL's ``generation_kwargs``);
            they override the ones above.
    """

    model: Any
    eos_ids: Sequence[int]
    pad_id: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float | None = None
    repetition_penalty: float = 1.0
    batch_size: int | None = None
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    generation_kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(
        self, prompt_ids: Sequence[list[int]], max_new_tokens: int, group_size: int = 1
    ) -> tuple[list[list[int]], None]:
        size = self.batch_size or max(len(prompt_ids), 1)
        order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
        out: list[list[int]] = [[] for _ in prompt_ids]
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            for i, ids in zip(
                chunk, self._generate([prompt_ids[i] for i in chunk], max_new_tokens), strict=True
            ):
                out[i] = ids
        return out, None  # TRL only uses sampling logprobs for vLLM's importance correction

    @torch.no_grad()
    def _generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention[row, width - len(prompt) :] = 1
        sampling = sampling_kwargs(
            self.temperature, top_p=self.top_p, top_k=self.top_k, min_p=self.min_p
        )
        device = self.model.device
        with self.autocast(), contiguous_head_inputs(self.model):
            output = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=max_new_tokens,
                pad_token_id=self.pad_id,
                eos_token_id=list(self.eos_ids),
                **{
                    "repetition_penalty": self.repetition_penalty,
                    **sampling,
                    **self.generation_kwargs,
                },
            )
        eos = set(self.eos_ids)
        completions = []
        for row in output[:, width:].tolist():
            stop = next((j for j, token in enumerate(row) if token in eos), None)
            completions.append(row if stop is None else row[: stop + 1])
        return completions


@dataclass
class TRLVLLMGenerator:
    """Generation through the trainer's ``VLLMGeneration`` (TRL's colocate or server engine).

    The engine samples with the trainer's temperature / top-p / top-k and returns sampling
    logprobs (for TRL's importance-sampling correction). Its token limit is
    ``max_completion_length``; for the retry it is raised to ``retry_max_tokens`` for the
    duration of the call.

    Attributes:
        vllm_generation: TRL's ``VLLMGeneration`` of the trainer.
        temperature: Overrides the engine's temperature for the duration of a call (0 is
            greedy); None keeps the trainer's.
        top_p: Overrides the engine's top-p likewise; None keeps the trainer's.
    """

    vllm_generation: Any
    temperature: float | None = None
    top_p: float | None = None

    def __call__(
        self, prompt_ids: Sequence[list[int]], max_new_tokens: int, group_size: int
    ) -> tuple[list[list[int]], list[list[float]] | None]:
        engine = self.vllm_generation
        overrides = {"max_completion_length": max_new_tokens}
        if self.temperature is not None:
            overrides["temperature"] = self.temperature
        if self.top_p is not None:
            overrides["top_p"] = self.top_p
        saved = {name: getattr(engine, name) for name in overrides}
        for name, value in overrides.items():
            setattr(engine, name, value)
        try:
            _, completion_ids, logprobs, _ = engine.generate(
                prompts=[list(p) for p in prompt_ids], images=None, num_generations=group_size
            )
        finally:
            for name, value in saved.items():
                setattr(engine, name, value)
        completion_ids = [list(ids) for ids in completion_ids]
        if logprobs is not None:  # top-1 = the sampled token, as TRL does; None stays NaN
            logprobs = [[lp[0] for lp in seq] for seq in logprobs]
        return completion_ids, logprobs


def with_sampling(
    generate: TokenGenerator, temperature: float | None, top_p: float | None = None
) -> TokenGenerator:
    """``generate`` with another temperature / top-p (e.g. for the retry); None keeps its own.

    Raises:
        TypeError: An override was asked of a generator that has no sampling settings.
    """
    if temperature is None and top_p is None:
        return generate
    if temperature is not None and temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    from agents.engines import EngineGenerator

    if not isinstance(generate, HFGenerator | TRLVLLMGenerator | EngineGenerator):
        raise TypeError(
            f"cannot change the sampling of a {type(generate).__name__}; build the retry's "
            "generator yourself, or use HFGenerator / TRLVLLMGenerator / EngineGenerator"
        )
    changes = {"temperature": temperature, "top_p": top_p}
    return replace(generate, **{k: v for k, v in changes.items() if v is not None})


def without_adapter(generate: TokenGenerator) -> TokenGenerator:
    """``generate`` with its model's adapter off (PEFT's ``disable_adapter()``) while it runs.

    The frozen base model samples, e.g. the retries of ``adapter_scope="reflection"``.

    An :class:`agents.engines.EngineGenerator` switches to its ``base_engine`` (an engine
    serving the model with its adapter off).

    Raises:
        TypeError: ``generate`` is neither an :class:`HFGenerator` of a model with an adapter
            nor an engine generator with a base engine.
    """
    from agents.engines import EngineGenerator

    if isinstance(generate, EngineGenerator):
        if generate.base_engine is None:
            raise TypeError("this engine generator has no base engine to generate without adapter")
        return replace(generate, engine=generate.base_engine, base_engine=None)
    if not isinstance(generate, HFGenerator) or not hasattr(generate.model, "disable_adapter"):
        raise TypeError(
            "only a transformers generator of a PEFT model can generate without its adapter "
            f"(got a {type(generate).__name__})"
        )
    model, autocast = generate.model, generate.autocast

    @contextlib.contextmanager
    def base_model() -> Any:
        with autocast(), model.disable_adapter():
            yield

    return replace(generate, autocast=base_model)


# -- episodes --------------------------------------------------------------------------------


def prompt_key(prompt: Sequence[Message]) -> str:
    """A hashable key of a conversation (roles and contents)."""
    return json.dumps([[m["role"], m["content"]] for m in prompt], ensure_ascii=False)


def render(tokenizer: Any, conversation: Sequence[Message], tools: Tools, *, generation: bool):
    """Token ids of ``conversation`` in the model's chat template (control tokens sanitized)."""
    require_control_token_sanitizing(tokenizer)
    return list(
        tokenizer.apply_chat_template(
            list(conversation),
            tools=tools,
            add_generation_prompt=generation,
            tokenize=True,
            return_dict=False,
            sanitize_control_tokens=True,
        )
    )


def turn_suffix_ids(
    tokenizer: Any,
    conversation: Sequence[Message],
    new_turns: Sequence[Message],
    tools: Tools,
    eos_ids: set[int],
) -> tuple[int, list[int]]:
    """The tokens that follow the last assistant turn's end-of-turn token, up to the next reply.

    Renders ``conversation`` (ending with an assistant turn) and ``conversation + new_turns``
    (with the generation prompt) and returns the end-of-turn token id and what the second adds
    after it: e.g. ``"\\n<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n"``.

    Raises:
        ValueError: the chat template is not prefix-preserving (rendering more turns changes
            the earlier ones), so a token-level continuation would not match the template.
    """
    before = render(tokenizer, conversation, tools, generation=False)
    ends = [i for i, token in enumerate(before) if token in eos_ids]
    if not ends:
        raise ValueError("the chat template closes assistant turns with no end-of-sequence token")
    before = before[: ends[-1] + 1]
    full = render(tokenizer, [*conversation, *new_turns], tools, generation=True)
    if full[: len(before)] != before:
        raise ValueError(
            "the chat template is not prefix-preserving (it re-renders earlier turns when a "
            "turn is added); RRR-GRPO continues episodes at the token level and needs one"
        )
    return before[-1], full[len(before) :]


@dataclass
class RolloutBatch:
    """What one call of the rollout produced, one entry per prompt.

    Attributes:
        prompt_ids: The reflection prompt (failed attempt + reflection request), rendered.
        reflection_ids: The sampled reflection (ends with EOS unless it hit the limit).
        retry_prompt_ids: What the env adds before the retry (end of turn + task posed again);
            where the env starts the retry in a fresh conversation (``retry_context=
            "reflection"``), that whole conversation, rendered.
        retry_ids: The sampled retry.
        reflections: Reflection texts.
        retries: Retry texts.
        rewards: 1.0 if the env's verifier accepted the retry, else 0.0.
        reasons: The verdicts' reasons.
        reflection_logprobs: Sampling logprobs of the reflection tokens, if the engine gives them.
        retry_logprobs: Sampling logprobs of the retry tokens, if the engine gives them.
        reflection_stopped: Whether each reflection ended with EOS.
        retry_continues: Whether each retry continues the reflection's sequence (prompt +
            reflection + retry prompt), rather than a fresh conversation.
    """

    prompt_ids: list[list[int]]
    reflection_ids: list[list[int]]
    retry_prompt_ids: list[list[int]]
    retry_ids: list[list[int]]
    reflections: list[str]
    retries: list[str]
    rewards: list[float]
    reasons: list[str]
    reflection_logprobs: list[list[float]] | None
    retry_logprobs: list[list[float]] | None
    reflection_stopped: list[bool]
    retry_continues: list[bool]


def uniform_groups(rewards: Sequence[float], group_size: int) -> list[int]:
    """Indices of the groups whose rewards are all equal: GRPO gives them no advantage."""
    return [
        g
        for g in range(len(rewards) // group_size)
        if len(set(rewards[g * group_size : (g + 1) * group_size])) == 1
    ]


def trained_rewards(
    rewards: Sequence[float], reflection_stopped: Sequence[bool], rule: str, penalty: float
) -> list[float]:
    """What GRPO trains on under ``rule`` for cut reflections.

    The env's rewards, less ``penalty`` where a reflection was cut and ``rule`` is
    ``"penalize"``.
    """
    if rule != "penalize":
        return list(rewards)
    return [
        reward - (0.0 if stopped else penalty)
        for reward, stopped in zip(rewards, reflection_stopped, strict=True)
    ]


def groups_without_gradient(
    rewards: Sequence[float],
    reflection_stopped: Sequence[bool],
    group_size: int,
    rule: str,
    penalty: float,
) -> list[int]:
    """Groups (by position) that give GRPO no gradient under ``rule`` for cut reflections.

    Those whose trained rewards (:func:`trained_rewards`) are all equal, and under ``"mask"``
    also those whose every reflection was cut (no token of theirs carries loss).
    """
    trained = trained_rewards(rewards, reflection_stopped, rule, penalty)
    without = set(uniform_groups(trained, group_size))
    if rule == "mask":
        without |= {
            g
            for g in range(len(reflection_stopped) // group_size)
            if not any(reflection_stopped[g * group_size : (g + 1) * group_size])
        }
    return sorted(without)


def replace_groups(
    batch: RolloutBatch, groups: Sequence[int], fresh: RolloutBatch, group_size: int
) -> RolloutBatch:
    """``batch`` with its groups ``groups`` replaced, in order, by the groups of ``fresh``."""
    if len(fresh.rewards) != len(groups) * group_size:
        raise ValueError(
            f"{len(groups)} groups of {group_size} to replace, but the fresh batch has "
            f"{len(fresh.rewards)} entries"
        )
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(batch):
        old, new = getattr(batch, spec.name), getattr(fresh, spec.name)
        if old is None or new is None:
            values[spec.name] = None  # logprobs: only if every entry has them
            continue
        merged = list(old)
        for k, g in enumerate(groups):
            merged[g * group_size : (g + 1) * group_size] = new[
                k * group_size : (k + 1) * group_size
            ]
        values[spec.name] = merged
    return RolloutBatch(**values)


def take_groups(batch: RolloutBatch, groups: Sequence[int], group_size: int) -> RolloutBatch:
    """The groups ``groups`` of ``batch`` (by position), in that order."""
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(batch):
        entries = getattr(batch, spec.name)
        values[spec.name] = (
            None
            if entries is None
            else [e for g in groups for e in entries[g * group_size : (g + 1) * group_size]]
        )
    return RolloutBatch(**values)


class EpisodeReplayer:
    """Puts envs back into the state a failure prompt describes.

    A failure prompt ends with the failed attempt and the reflection request. The env is reset
    on the prompt's item and stepped with the attempt; the resulting observation must equal the
    prompt, which proves that the env (id, options, split, version) is the one the failures
    were collected with.

    Args:
        make_env: Builds one env with the episode options (see ``GRPOReflectConfig.env_options``).
        rows: Dataset rows with ``prompt`` and ``index`` (the item index in the env's task).
    """

    def __init__(self, make_env: Callable[[], gym.Env], rows: Sequence[dict[str, Any]]) -> None:
        self.make_env = make_env
        self.index_of: dict[str, int] = {}
        for row in rows:
            key = prompt_key(row["prompt"])
            previous = self.index_of.setdefault(key, int(row["index"]))
            if previous != int(row["index"]):
                raise ValueError(
                    f"items {previous} and {row['index']} have the same failure prompt; "
                    "deduplicate the dataset of failures"
                )
        self._pool: list[gym.Env] = []

    def envs(self, count: int) -> list[gym.Env]:
        """``count`` envs, created once and reused."""
        while len(self._pool) < count:
            self._pool.append(self.make_env())
        return self._pool[:count]

    def replay(self, env: gym.Env, prompt: Sequence[Message]) -> dict[str, Any]:
        """Reset ``env`` to the reflection phase of ``prompt``'s episode; return the info."""
        key = prompt_key(prompt)
        if key not in self.index_of:
            raise KeyError(
                "a prompt that is not in the dataset of failures reached the rollout; build the "
                "rollout with the same dataset as the trainer"
            )
        if len(prompt) < 2 or prompt[-2]["role"] != "assistant":
            raise ValueError(
                "a failure prompt ends with the failed attempt and the reflection request"
            )
        env.reset(options={"index": self.index_of[key]})
        obs, _, _, _, info = env.step(prompt[-2]["content"])
        if info["phase"] != "reflection" or prompt_key(obs) != key:
            raise ValueError(
                f"the env does not reproduce the failure prompt of item {self.index_of[key]}: "
                "the failures were collected with another env, split or options (or the env's "
                "version changed); pass the same --env_id, --env_kwargs and --train_split"
            )
        return info


def reflect_and_retry(
    prompts: Sequence[Sequence[Message]],
    replayer: EpisodeReplayer,
    generate: TokenGenerator,
    tokenizer: Any,
    eos_ids: set[int],
    *,
    reflection_max_tokens: int,
    retry_max_tokens: int,
    group_size: int = 1,
    retry_generate: TokenGenerator | None = None,
) -> RolloutBatch:
    """Sample a reflection and a retry for each failure prompt; the env grades the retries.

    Two generation calls in all: every reflection, then every retry. The retry is generated
    from the token-level continuation ``prompt + reflection + end of turn + retry request``,
    so the sequence TRL scores is exactly the sequence that was sampled; or, where the env
    starts the retry in a fresh conversation (``retry_context="reflection"``), from that.

    ``retry_generate`` samples the retries (default: ``generate``): a greedy one makes the
    reward a function of the reflection alone, without the retry's sampling noise.
    """
    envs = replayer.envs(len(prompts))
    infos = [replayer.replay(env, prompt) for env, prompt in zip(envs, prompts, strict=True)]
    tools = [info.get("tools") for info in infos]
    prompt_ids = [
        render(tokenizer, p, t, generation=True) for p, t in zip(prompts, tools, strict=True)
    ]

    reflection_ids, reflection_logprobs = generate(prompt_ids, reflection_max_tokens, group_size)
    reflections = [tokenizer.decode(ids, skip_special_tokens=True) for ids in reflection_ids]
    stopped = [bool(ids) and ids[-1] in eos_ids for ids in reflection_ids]

    retry_prompt_ids, continues, contexts = [], [], []
    for k, env in enumerate(envs):
        obs, _, _, _, info = env.step(reflections[k])
        if info["phase"] != "retry":
            raise RuntimeError(f"expected the retry phase after a reflection, got {info['phase']}")
        done = [*prompts[k], {"role": "assistant", "content": reflections[k]}]
        if obs[: len(done)] != done:  # the env starts the retry afresh (retry_context)
            context = render(tokenizer, obs, tools[k], generation=True)
            retry_prompt_ids.append(context)
            continues.append(False)
            contexts.append(context)
            continue
        end_of_turn, suffix = turn_suffix_ids(tokenizer, done, obs[len(done) :], tools[k], eos_ids)
        # A reflection cut at the token limit has no end-of-turn token yet: the env closes it.
        retry_prompt_ids.append(suffix if stopped[k] else [end_of_turn, *suffix])
        continues.append(True)
        contexts.append(prompt_ids[k] + reflection_ids[k] + retry_prompt_ids[-1])

    retry_ids, retry_logprobs = (retry_generate or generate)(contexts, retry_max_tokens, 1)
    retries = [tokenizer.decode(ids, skip_special_tokens=True) for ids in retry_ids]
    rewards, reasons = [], []
    for env, retry in zip(envs, retries, strict=True):
        _, reward, terminated, _, info = env.step(retry)
        if not terminated:
            raise RuntimeError("the env did not end the episode after grading the retry")
        rewards.append(float(reward))
        reasons.append(info["verdict"].reason)
    return RolloutBatch(
        prompt_ids=prompt_ids,
        reflection_ids=reflection_ids,
        retry_prompt_ids=retry_prompt_ids,
        retry_ids=retry_ids,
        reflections=reflections,
        retries=retries,
        rewards=rewards,
        reasons=reasons,
        reflection_logprobs=reflection_logprobs,
        retry_logprobs=retry_logprobs,
        reflection_stopped=stopped,
        retry_continues=continues,
    )
