"""RRR-GRPO's rollout (TRL's ``rollout_func``) and its reward function.

:class:`ReflectRetryRollout` receives the prompts TRL's sampler repeated into GRPO groups,
samples one reflection per prompt, continues each episode in the ``rrr/*`` env, samples the
retries and lets the env's verifier grade them; :func:`retry_success` turns the verdicts into
GRPO's rewards. The trainer is built in :mod:`agents.grpo_reflect`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from agents.backends import ADAPTER_SCOPES
from agents.engines import EngineFallbackWarning, EngineGenerator
from agents.grpo_reflect_config import CREDIT_MODES, TRUNCATED_REFLECTIONS, TRUNCATION_PENALTY
from agents.reflection_rollout import (
    EpisodeReplayer,
    HFGenerator,
    RolloutBatch,
    TokenGenerator,
    TRLVLLMGenerator,
    groups_without_gradient,
    prompt_key,
    reflect_and_retry,
    replace_groups,
    take_groups,
    trained_rewards,
    with_sampling,
    without_adapter,
)
from rrr_env.tasks.base import Message

logger = logging.getLogger(__name__)


class ReflectRetryRollout:
    """TRL ``rollout_func``: reflections for the trainer's prompts, retries graded by the env.

    Args:
        make_env: Builds one env with the episode options of the failures.
        rows: The dataset of failures (``prompt`` and ``index`` columns).
        retry_max_tokens: Token limit of a retry (the reflection's is TRL's
            ``max_completion_length``).
        credit: ``"reflection"`` or ``"reflection+retry"`` (see :data:`CREDIT_MODES`).
        rollout_batch_size: Most sequences per ``generate`` call (transformers backend).
        retry_temperature: Temperature of the retry (None: the reflection's; 0: greedy).
        retry_top_p: Nucleus mass of the retry (None: the reflection's).
        resample_groups: Dynamic sampling (DAPO) while training: a group whose retries all got
            the same reward is replaced by a fresh group on another failure of the dataset,
            drawn at random, up to this many times (0: off). The trainer scores the prompt ids
            returned here, so the replaced group trains on its own failure; TRL's completions
            table still shows the dataset's prompt for it.
        resample_batch: Replacement groups generated together, per group without signal and
            round of resampling (1: one at a time). Each slot trains on the first of them
            with signal, in draw order (the last one if none has), so the group trained on
            is distributed as with one at a time; generating them together saves the
            rounds' engine turns at the cost of the groups drawn after one with signal.
            Counts toward ``resample_groups``.
        seed: Seed of the draws of replacement failures.
        generator_factory: Builds the generator for a trainer, as a context manager; default:
            the trainer's model (transformers ``generate``) or its vLLM engine (``use_vllm``).
            Tests pass a scripted one.
        retry_generator: Samples the retries instead of the trainer's generator (e.g. a
            scripted retry policy, ``agents.scripted.MarkerRetry``); the reflections still come
            from ``generator_factory``.
        sample_with_dropout: Generate with the trainer's model in training mode (dropout
            active, TRL's behaviour); ``False`` switches it to eval mode while generating and
            restores its mode after.
        adapter_scope: ``"all"``, or ``"reflection"``: the retries are sampled with the
            model's adapter disabled (see :data:`ADAPTER_SCOPES`); not with ``retry_generator``.
        engine: ``"torch"`` (the trainer's generation) or an engine of
            :data:`agents.engines.ENGINES` that serves the policy's current weights (synced
            after every optimizer step); ignored with ``use_vllm``.
        truncated_reflections: A reflection cut at the token limit: ``"keep"`` (trained as
            any other), ``"mask"`` (``env_mask`` zeroes its completion's loss) or
            ``"penalize"`` (its reward drops by :data:`TRUNCATION_PENALTY`); see
            :data:`TRUNCATED_REFLECTIONS`.
        episodes_path: A JSONL file to which each training call appends one row per episode
            of every group it drew (fields: :meth:`write_episodes`), so that the episodes
            behind a training curve can be read; None: no file. A resumed run appends: the rows of a
            step re-run after a kill appear again, with the same ``step``.

    Returns from a call (TRL's contract): ``prompt_ids``, ``completion_ids`` and ``logprobs``,
    plus ``env_mask`` in ``reflection+retry`` mode and extra per-completion fields that TRL
    passes to the reward functions: ``retry_reward``, ``retry_reason``, ``reflection``,
    ``retry``, ``reflection_tokens``, ``retry_tokens``, ``reflection_stopped``,
    ``group_draws`` (groups drawn for the completion's slot, 1 without resampling),
    ``group_signal_draws`` (how many of them had signal: more than one only with
    ``resample_batch`` above 1),
    ``group_uniform`` (whether its group gives no gradient: equal trained rewards, or every
    reflection cut under ``truncated_reflections="mask"``), ``trained_reward`` (the
    reward GRPO trains on: ``retry_reward`` less any truncation penalty), and the call's
    ``rollout_seconds`` and ``engine_sync_seconds`` (the same on every completion).
    ``env_mask`` also comes with ``truncated_reflections="mask"``.
    """

    def __init__(
        self,
        make_env: Callable[[], gym.Env],
        rows: Sequence[dict[str, Any]],
        *,
        retry_max_tokens: int,
        credit: str = "reflection",
        rollout_batch_size: int | None = None,
        retry_temperature: float | None = None,
        retry_top_p: float | None = None,
        resample_groups: int = 0,
        resample_batch: int = 1,
        seed: int = 0,
        generator_factory: Callable[[Any], contextlib.AbstractContextManager[TokenGenerator]]
        | None = None,
        retry_generator: TokenGenerator | None = None,
        sample_with_dropout: bool = False,
        adapter_scope: str = "all",
        engine: str = "torch",
        truncated_reflections: str = "keep",
        episodes_path: str | Path | None = None,
    ) -> None:
        if truncated_reflections not in TRUNCATED_REFLECTIONS:
            raise ValueError(
                f"truncated_reflections must be one of {TRUNCATED_REFLECTIONS}, got "
                f"{truncated_reflections!r}"
            )
        if credit not in CREDIT_MODES:
            raise ValueError(f"credit must be one of {CREDIT_MODES}, got {credit!r}")
        if adapter_scope not in ADAPTER_SCOPES:
            raise ValueError(f"adapter_scope must be one of {ADAPTER_SCOPES}: {adapter_scope!r}")
        if resample_groups < 0:
            raise ValueError(f"resample_groups must be >= 0, got {resample_groups}")
        self.replayer = EpisodeReplayer(make_env, rows)
        self.pool = {prompt_key(row["prompt"]): row["prompt"] for row in rows}
        if resample_batch < 1:
            raise ValueError(f"resample_batch must be >= 1, got {resample_batch}")
        self.resample_groups = resample_groups
        self.resample_batch = resample_batch
        self.rng = random.Random(seed)
        self.retry_max_tokens = retry_max_tokens
        self.credit = credit
        self.rollout_batch_size = rollout_batch_size
        self.retry_temperature = retry_temperature
        self.retry_top_p = retry_top_p
        self.generator_factory = generator_factory or self.trainer_generator
        self.retry_generator = retry_generator
        self.sample_with_dropout = sample_with_dropout
        self.adapter_scope = adapter_scope
        self.engine = engine
        self._engine_generator: EngineGenerator | None = None
        self.truncated_reflections = truncated_reflections
        self.episodes_path = None if episodes_path is None else Path(episodes_path)
        self.last_batch: RolloutBatch | None = None
        #: Groups of the latest call that give GRPO a gradient (see :meth:`groups_without_signal`).
        self.last_groups_with_signal = 0

    def __call__(self, prompts: list[list[Message]], trainer: Any) -> dict[str, Any]:
        started, synced = time.perf_counter(), self.engine_sync_seconds()
        args = trainer.args
        # Read before generating: the generator may switch the model to eval mode meanwhile.
        training = trainer.model.training
        group_size = trainer.num_generations if training else trainer.num_generations_eval
        eos_ids = set(trainer.eos_token_ids)
        tokenizer = trainer.processing_class
        with self.generator_factory(trainer) as generate:
            retry_generate = self.retry_generator or with_sampling(
                generate, self.retry_temperature, self.retry_top_p
            )
            if self.adapter_scope == "reflection" and self.retry_generator is None:
                retry_generate = without_adapter(retry_generate)

            def run(batch_prompts: Sequence[Sequence[Message]]) -> RolloutBatch:
                return reflect_and_retry(
                    batch_prompts,
                    self.replayer,
                    generate,
                    tokenizer,
                    eos_ids,
                    reflection_max_tokens=args.max_completion_length,
                    retry_max_tokens=self.retry_max_tokens,
                    group_size=group_size,
                    retry_generate=retry_generate,
                )

            batch = run(prompts)
            slots = len(prompts) // group_size
            draws = [1] * slots
            first_without = set(self.groups_without_signal(batch, group_size))
            signal_draws = [int(g not in first_without) for g in range(slots)]
            # Every draw, for the episode file: its prompts, its batch, the slot of each of its
            # groups, and which (draw, position) each slot trains on.
            drawn = [(prompts, batch, list(range(slots)))]
            prompts = [*prompts]  # the slots' current failures (the trainer's list stays)
            trained_from = {g: (0, g) for g in range(slots)}
            budget = self.resample_groups if training else 0
            while True:
                groups = [
                    g
                    for g in self.groups_without_signal(batch, group_size)
                    if draws[g] - 1 < budget
                ]
                if not groups:
                    break
                taken = {prompt_key(p) for p in prompts}
                # Each group gets up to resample_batch fresh ones, within its budget.
                owners = [
                    g
                    for g in groups
                    for _ in range(min(self.resample_batch, budget + 1 - draws[g]))
                ]
                fresh = [self.draw(taken) for _ in owners]
                fresh_prompts = [p for p in fresh for _ in range(group_size)]
                redrawn = run(fresh_prompts)
                without = set(self.groups_without_signal(redrawn, group_size))
                chosen = []
                for g in groups:
                    mine = [k for k, owner in enumerate(owners) if owner == g]
                    with_signal = [k for k in mine if k not in without]
                    pick = with_signal[0] if with_signal else mine[-1]
                    chosen.append(pick)
                    draws[g] += len(mine)
                    signal_draws[g] += len(with_signal)
                    trained_from[g] = (len(drawn), pick)
                    prompts[g * group_size : (g + 1) * group_size] = [fresh[pick]] * group_size
                drawn.append((fresh_prompts, redrawn, owners))
                batch = replace_groups(
                    batch, groups, take_groups(redrawn, chosen, group_size), group_size
                )
        self.release_shared_engine()
        self.last_batch = batch
        uniform = set(self.groups_without_signal(batch, group_size))
        self.last_groups_with_signal = len(batch.rewards) // group_size - len(uniform)
        if training and self.episodes_path is not None:
            self.write_episodes(drawn, group_size, trainer, trained_from)
        output = self.to_trl(batch)
        output["group_draws"] = [draws[i // group_size] for i in range(len(batch.rewards))]
        output["group_signal_draws"] = [
            signal_draws[i // group_size] for i in range(len(batch.rewards))
        ]
        output["group_uniform"] = [i // group_size in uniform for i in range(len(batch.rewards))]
        # The call's wall time (every draw, the engine's weight syncs included) and the syncs'.
        n = len(batch.rewards)
        output["rollout_seconds"] = [time.perf_counter() - started] * n
        output["engine_sync_seconds"] = [self.engine_sync_seconds() - synced] * n
        return output

    def write_episodes(
        self,
        drawn: Sequence[tuple[Sequence[Sequence[Message]], RolloutBatch, Sequence[int]]],
        group_size: int,
        trainer: Any,
        trained_from: dict[int, tuple[int, int]],
    ) -> None:
        """Append every drawn group's episodes to :attr:`episodes_path` (one JSON row each).

        A row: ``step`` (the optimizer step the call feeds, from 1), ``draw`` (0: the
        trainer's own prompts, then one per resampling round), ``slot`` (the group's place
        in the trained batch), ``index`` (the failure's item index), ``reflection``,
        ``retry``, ``reward`` (the env's verdict), ``reason``, ``reflection_tokens``,
        ``retry_tokens``, ``reflection_stopped``, ``group_with_signal`` (whether the group
        gives GRPO a gradient) and ``trained`` (whether the group is the one its slot trained
        on). Under several processes, process ``k > 0`` writes ``<stem>.rank<k>.jsonl``.

        Args:
            drawn: Each draw's prompts, its batch and the batch slot of each of its groups,
                in order.
            group_size: GRPO group size.
            trainer: The trainer (its step and process index).
            trained_from: For each slot, the draw and the position in it of the group the
                slot trains on.
        """
        step = trainer.state.global_step + 1
        rows = []
        for d, (prompts, batch, slots) in enumerate(drawn):
            uniform = set(self.groups_without_signal(batch, group_size))
            for i, text in enumerate(batch.reflections):
                position = i // group_size
                slot = slots[position]
                rows.append(
                    {
                        "step": step,
                        "draw": d,
                        "slot": slot,
                        "index": self.replayer.index_of[prompt_key(prompts[i])],
                        "reflection": text,
                        "retry": batch.retries[i],
                        "reward": batch.rewards[i],
                        "reason": batch.reasons[i],
                        "reflection_tokens": len(batch.reflection_ids[i]),
                        "retry_tokens": len(batch.retry_ids[i]),
                        "reflection_stopped": batch.reflection_stopped[i],
                        "group_with_signal": position not in uniform,
                        "trained": trained_from[slot] == (d, position),
                    }
                )
        path = self.episodes_path
        process = getattr(getattr(trainer, "accelerator", None), "process_index", 0)
        if process:
            path = path.with_name(f"{path.stem}.rank{process}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write("".join(json.dumps(row) + "\n" for row in rows))

    def engine_sync_seconds(self) -> float:
        """Seconds the ``--engine`` generator's engines have spent loading weights so far."""
        generator = self._engine_generator
        if generator is None:
            return 0.0
        engines = [generator.engine, generator.base_engine]
        return float(sum(getattr(e, "sync_seconds", 0) for e in engines if e is not None))

    def release_shared_engine(self) -> None:
        """Unload the engine holding a shared slot, so that the training step has its memory.

        Engines that take turns (:class:`agents.engines.openvino.EngineSlot`) reload at the
        next rollout's first turn anyway: this costs no load.
        """
        generator = self._engine_generator
        slot = getattr(generator.engine, "slot", None) if generator is not None else None
        if slot is not None and slot.holder is not None:
            slot.holder.release()

    def rewards(self, batch: RolloutBatch) -> list[float]:
        """What GRPO trains on: the env's verdicts, less the truncation penalty if any."""
        return trained_rewards(
            batch.rewards, batch.reflection_stopped, self.truncated_reflections, TRUNCATION_PENALTY
        )

    def groups_without_signal(self, batch: RolloutBatch, group_size: int) -> list[int]:
        """Groups (by position) that give GRPO no gradient.

        Those whose trained rewards (:meth:`rewards`) are all equal, and under
        ``truncated_reflections="mask"`` also those whose every reflection was cut (no token
        of theirs carries loss); see :func:`agents.reflection_rollout.groups_without_gradient`.
        """
        return groups_without_gradient(
            batch.rewards,
            batch.reflection_stopped,
            group_size,
            self.truncated_reflections,
            TRUNCATION_PENALTY,
        )

    def draw(self, taken: set[str]) -> list[Message]:
        """A random failure prompt of the dataset, one not in ``taken`` while there are any.

        Adds the drawn prompt's key to ``taken``.
        """
        free = [key for key in self.pool if key not in taken] or list(self.pool)
        key = self.rng.choice(free)
        taken.add(key)
        return self.pool[key]

    @contextlib.contextmanager
    def trainer_generator(self, trainer: Any) -> Iterator[TokenGenerator]:
        """The generator of ``trainer``: its vLLM engine, or its model unwrapped for generation.

        The model is unwrapped once for both phases (one ZeRO-3 parameter gather per batch),
        and put in eval mode for them unless ``sample_with_dropout``.
        """
        if trainer.args.use_vllm:
            # TRL syncs the policy's weights into vLLM before it calls the rollout_func.
            yield TRLVLLMGenerator(trainer.vllm_generation)
            return
        from trl.models import unwrap_model_for_generation

        args = trainer.args
        if self.engine != "torch":
            generator = self.engine_generator(trainer)
            if generator is not None:
                yield generator  # re-syncs the weights if a step changed them
                return
        with (
            unwrap_model_for_generation(
                trainer.model_wrapped,
                trainer.accelerator,
                gather_deepspeed3_params=args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs,
            ) as model,
            self.generation_mode(model),
        ):
            yield HFGenerator(
                model,
                eos_ids=list(trainer.eos_token_ids),
                pad_id=trainer.processing_class.pad_token_id,
                temperature=args.temperature,
                top_p=args.top_p,
                top_k=args.top_k,
                min_p=args.min_p,
                repetition_penalty=args.repetition_penalty,
                batch_size=self.rollout_batch_size,
                autocast=trainer.accelerator.autocast,
                generation_kwargs=dict(args.generation_kwargs or {}),
            )

    def engine_generator(self, trainer: Any) -> EngineGenerator | None:
        """The ``--engine`` generator, started on the first call; None if it fell back to torch.

        An engine that cannot start warns once (:func:`agents.engines.make_engine`'s reason)
        and the trainer's own generation runs from then on; once started, its errors fail the
        run (no switch midway).
        """
        if self._engine_generator is not None or self.engine == "torch":
            return self._engine_generator
        from agents.engines import make_engine, scoped_engines

        args, tokenizer = trainer.args, trainer.processing_class
        model = trainer.accelerator.unwrap_model(trainer.model)
        try:
            base = None
            if self.adapter_scope == "reflection":
                engine, base = scoped_engines(self.engine, model, tokenizer)
            else:
                engine = make_engine(self.engine, model, tokenizer)
        except RuntimeError as error:
            warnings.warn(
                f"--engine {self.engine} is unavailable ({error}); falling back to --engine torch",
                EngineFallbackWarning,
                stacklevel=2,
            )
            self.engine = "torch"
            return None
        self._engine_generator = EngineGenerator(
            engine,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k or 0,
            seed=args.seed,
            base_engine=base,
        )
        return self._engine_generator

    @contextlib.contextmanager
    def generation_mode(self, model: Any) -> Iterator[None]:
        """``model`` in eval mode (no dropout) unless ``sample_with_dropout``; its mode after."""
        training = model.training
        if not self.sample_with_dropout:
            model.eval()
        try:
            yield
        finally:
            model.train(training)

    def to_trl(self, batch: RolloutBatch) -> dict[str, Any]:
        """The batch in TRL's ``rollout_func`` format for this credit mode."""
        if self.credit == "reflection":
            completion_ids = batch.reflection_ids
            logprobs = batch.reflection_logprobs
            env_mask = None
        else:
            if not all(batch.retry_continues):
                raise ValueError(
                    f"credit {self.credit!r} needs retries that continue the reflection's "
                    "sequence; the env started them afresh (retry_context='reflection')"
                )
            completion_ids, env_mask = [], []
            for r, s, a in zip(
                batch.reflection_ids, batch.retry_prompt_ids, batch.retry_ids, strict=True
            ):
                completion_ids.append(r + s + a)
                env_mask.append([1] * len(r) + [0] * len(s) + [1] * len(a))
            logprobs = None
            if batch.reflection_logprobs is not None and batch.retry_logprobs is not None:
                # The retry prompt was not sampled; its logprobs are masked out by env_mask.
                logprobs = [
                    r + [0.0] * len(s) + a
                    for r, s, a in zip(
                        batch.reflection_logprobs,
                        batch.retry_prompt_ids,
                        batch.retry_logprobs,
                        strict=True,
                    )
                ]
        output: dict[str, Any] = {
            "prompt_ids": batch.prompt_ids,
            "completion_ids": completion_ids,
            "logprobs": logprobs,
            "retry_reward": batch.rewards,
            "retry_reason": batch.reasons,
            "reflection": batch.reflections,
            "retry": batch.retries,
            "reflection_tokens": [len(ids) for ids in batch.reflection_ids],
            "retry_tokens": [len(ids) for ids in batch.retry_ids],
            "reflection_stopped": batch.reflection_stopped,
            "trained_reward": self.rewards(batch),
        }
        if self.truncated_reflections == "mask":
            # A cut reflection's completion carries no loss (reflection and retry alike).
            masks = env_mask or [[1] * len(ids) for ids in completion_ids]
            env_mask = [
                mask if stopped else [0] * len(mask)
                for mask, stopped in zip(masks, batch.reflection_stopped, strict=True)
            ]
        if env_mask is not None:
            output["env_mask"] = env_mask
        return output


def retry_success(
    prompts: list[Any],
    completions: list[Any],
    retry_reward: list[float],
    log_metric: Callable[[str, float], None] | None = None,
    log_extra: Callable[[str, list[Any]], None] | None = None,
    **kwargs: Any,
) -> list[float]:
    """The RRR reward: 1.0 if the retry after the reflection was correct (the env's verdict).

    Where the rollout passes ``trained_reward`` (its verdicts less a truncation penalty, see
    ``--truncated_reflections``), that is returned instead; the metrics below log verdicts.

    Also logs ``rrr/retry_success``, ``rrr/reflection_tokens``, ``rrr/retry_tokens``,
    ``rrr/reflection_clipped`` (share of reflections cut at the token limit),
    ``rrr/group_draws`` (groups drawn per trained group, see ``--resample_groups``) and
    ``rrr/drawn_zero_variance`` (share of all drawn groups whose rewards were all equal, TRL's
    ``frac_reward_zero_std`` before resampling), ``rrr/rollout_seconds`` (the rollout's wall
    time: every draw, weight syncs included; TRL's ``step_time`` less this is scoring and the
    backward passes) and ``rrr/engine_sync_seconds`` (its ``--engine`` weight syncs), and
    adds the reflection, retry and verdict reason to TRL's completions table
    (``--log_completions``).
    """
    rewards = [float(r) for r in retry_reward]
    if log_metric is not None and rewards:
        log_metric("rrr/retry_success", sum(rewards) / len(rewards))
        for name in ("reflection_tokens", "retry_tokens"):
            if name in kwargs:
                log_metric(f"rrr/{name}", sum(kwargs[name]) / len(kwargs[name]))
        if "reflection_stopped" in kwargs:
            stopped = kwargs["reflection_stopped"]
            log_metric("rrr/reflection_clipped", 1 - sum(stopped) / len(stopped))
        if "group_draws" in kwargs and "group_uniform" in kwargs:
            # Per completion; every group has the same size, so sums over completions are
            # sums over groups times that size.
            drawn = sum(kwargs["group_draws"])
            if "group_signal_draws" in kwargs:
                with_variance = sum(kwargs["group_signal_draws"])
            else:
                with_variance = sum(not u for u in kwargs["group_uniform"])
            log_metric("rrr/group_draws", drawn / len(rewards))
            log_metric("rrr/drawn_zero_variance", (drawn - with_variance) / drawn)
        for name in ("rollout_seconds", "engine_sync_seconds"):
            if kwargs.get(name):
                log_metric(f"rrr/{name}", kwargs[name][0])
    if log_extra is not None:
        for name in ("reflection", "retry", "retry_reason"):
            if name in kwargs:
                log_extra(name, list(kwargs[name]))
    if kwargs.get("trained_reward") is not None:
        return [float(r) for r in kwargs["trained_reward"]]
    return rewards


__all__ = ["ReflectRetryRollout", "retry_success"]
