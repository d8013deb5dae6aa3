"""RRR-GRPO: train the reflection with GRPO, rewarded by whether the retry succeeds.

    python -m agents.grpo_reflect                          # CPU demo: default model and task
    python -m agents.grpo_reflect --config agents/configs/grpo_reflect_countdown.yaml
    python -m agents.grpo_reflect --config agents/configs/grpo_reflect_h100.yaml --dry-run
    accelerate launch --config_file agents/configs/accelerate_deepspeed_zero3.yaml \\
        -m agents.grpo_reflect --config agents/configs/grpo_reflect_h100.yaml

The method of Reflect, Retry, Reward (arXiv 2505.24726) on TRL's ``GRPOTrainer``, through its
public extension points only:

- The train set is a dataset of failures (``agents.collect_failures``, or ``--collect``): each
  row's ``prompt`` is the conversation up to and including the reflection request.
- TRL's sampler repeats each prompt ``num_generations`` times (one GRPO group) and hands the
  batch to :class:`ReflectRetryRollout`, our ``rollout_func``. It samples one reflection per
  prompt (one batched generation call), continues each episode in the ``rrr/*`` env (which
  poses the task again), samples the retries (a second batched call) and lets the env's
  verifier grade them.
- The completion TRL trains on is the reflection alone (``credit="reflection"``, the paper), or
  reflection + retry with ``env_mask`` zeroing the retry prompt's tokens
  (``credit="reflection+retry"``, an ablation). The reward function :func:`retry_success`
  reads the env's verdict (an extra rollout field): 1.0 if the retry is correct, else 0.0.

Generation uses the trainer's own model (transformers ``generate``, bf16 autocast where the
device supports it, in eval mode: no dropout), or TRL's vLLM engine with ``--use_vllm``
(colocate or server mode), for both the reflection and the retry. With ``--adapter_scope
reflection`` only the reflection uses the LoRA adapter; the retry comes from the base model.

A batch without reward variance takes no optimizer step (:class:`SkipStepsWithoutSignal`):
GRPO gives it no advantage, and an AdamW step on it would still move the weights.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from transformers import TrainerCallback

import rrr_env
from agents.backends import ADAPTER_SCOPES
from agents.engines import EngineFallbackWarning, EngineGenerator
from agents.grpo_reflect_config import (
    CPU_RECIPE_LEARNING_RATE,
    CREDIT_MODES,
    PAPER_LEARNING_RATE,
    TRUNCATED_REFLECTIONS,
    TRUNCATION_PENALTY,
    GRPOReflectConfig,
    apply_cpu_recipe,
    check_launch,
)
from agents.reflection_rollout import (
    EPISODE_OPTIONS,
    EpisodeReplayer,
    HFGenerator,
    RolloutBatch,
    TokenGenerator,
    TRLVLLMGenerator,
    groups_without_gradient,
    prompt_key,
    reflect_and_retry,
    replace_groups,
    trained_rewards,
    with_sampling,
    without_adapter,
)
from agents.snapshots import POLICY_FILE, SnapshotSchedule
from rrr_env.tasks.base import Message

logger = logging.getLogger(__name__)
gym.register_envs(rrr_env)

# The configuration lives in agents/grpo_reflect_config.py (as TRL's grpo_config.py);
# its public names are re-exported here.


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

    Returns from a call (TRL's contract): ``prompt_ids``, ``completion_ids`` and ``logprobs``,
    plus ``env_mask`` in ``reflection+retry`` mode and extra per-completion fields that TRL
    passes to the reward functions: ``retry_reward``, ``retry_reason``, ``reflection``,
    ``retry``, ``reflection_tokens``, ``retry_tokens``, ``reflection_stopped``,
    ``group_draws`` (groups drawn for the completion's slot, 1 without resampling),
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
        seed: int = 0,
        generator_factory: Callable[[Any], contextlib.AbstractContextManager[TokenGenerator]]
        | None = None,
        retry_generator: TokenGenerator | None = None,
        sample_with_dropout: bool = False,
        adapter_scope: str = "all",
        engine: str = "torch",
        truncated_reflections: str = "keep",
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
        self.resample_groups = resample_groups
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
            draws = [1] * (len(prompts) // group_size)
            rounds = self.resample_groups if training else 0
            for _ in range(rounds):
                groups = self.groups_without_signal(batch, group_size)
                if not groups:
                    break
                taken = {prompt_key(p) for p in prompts}
                fresh = [self.draw(taken) for _ in groups]
                batch = replace_groups(
                    batch, groups, run([p for p in fresh for _ in range(group_size)]), group_size
                )
                prompts = [*prompts]
                for g, prompt in zip(groups, fresh, strict=True):
                    prompts[g * group_size : (g + 1) * group_size] = [prompt] * group_size
                    draws[g] += 1
        self.release_shared_engine()
        self.last_batch = batch
        uniform = set(self.groups_without_signal(batch, group_size))
        self.last_groups_with_signal = len(batch.rewards) // group_size - len(uniform)
        output = self.to_trl(batch)
        output["group_draws"] = [draws[i // group_size] for i in range(len(batch.rewards))]
        output["group_uniform"] = [i // group_size in uniform for i in range(len(batch.rewards))]
        # The call's wall time (every draw, the engine's weight syncs included) and the syncs'.
        n = len(batch.rewards)
        output["rollout_seconds"] = [time.perf_counter() - started] * n
        output["engine_sync_seconds"] = [self.engine_sync_seconds() - synced] * n
        return output

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


# -- data, evaluation, training --------------------------------------------------------------


def load_failures(path: str | Path) -> Any:
    """The dataset of failures at ``path`` as a ``datasets.Dataset``.

    ``path`` is an ``agents.collect_failures`` output folder, a ``save_to_disk`` folder, or a
    JSONL file of rows with ``prompt`` and ``index``.
    """
    import datasets

    path = Path(path)
    if path.is_dir() and (path / "dataset").is_dir():
        path = path / "dataset"
    if path.is_dir():
        dataset = datasets.load_from_disk(str(path))
    elif path.is_file():
        with path.open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        dataset = datasets.Dataset.from_list(rows)
    else:
        raise FileNotFoundError(f"no dataset of failures at {path}")
    missing = {"prompt", "index"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"the dataset at {path} lacks the columns {sorted(missing)}")
    if len(dataset) == 0:
        raise ValueError(f"the dataset of failures at {path} is empty")
    return dataset


def _loaded_summary(dataset: Any, path: str | Path) -> str:
    """What a dataset of failures holds, in the words of :func:`collect_failures`'s log.

    A folder written by ``agents.collect_failures`` also says how many queries and first
    attempts were sampled; any other dataset says how many queries its failures come from.
    """
    from agents.collect_failures import collection_summary

    if (Path(path) / "progress.jsonl").is_file() and (Path(path) / "failures.jsonl").is_file():
        return collection_summary(path)
    return f"{len(dataset)} failures from {len(set(dataset['index']))} queries"


def _autocast(bf16: bool, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    if not bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def collect_failures(args: GRPOReflectConfig, model: Any, tokenizer: Any) -> Any:
    """Build (or resume) the dataset of failures in ``<output_dir>/failures``.

    Sampling is seeded with ``args.seed``: a rerun with the same seed and options on the same
    machine collects the same failures.
    """
    from agents.collect_failures import CollectArgs, collect, collection_summary
    from agents.engines import make_backend

    extra = json.loads(args.env_kwargs)
    collect_args = CollectArgs(
        env=args.env_id,
        model=args.model,
        split=args.train_split,
        env_kwargs=json.dumps(extra),
        n=args.collect_n,
        samples_per_query=args.samples_per_query,
        failures_per_query=args.failures_per_query,
        min_successes=args.min_successes,
        round_size=min(8, args.samples_per_query),
        temperature=args.collect_temperature,
        max_new_tokens=args.attempt_max_tokens,
        batch_size=args.rollout_batch_size or 64,
        seed=args.seed,
        output_dir=str(Path(args.output_dir) / "failures"),
    )
    backend = make_backend(
        args.engine, model, tokenizer, batch_size=collect_args.batch_size, seed=collect_args.seed
    )
    logger.info(
        "collecting failures: up to %d first attempts on each of %d queries -> %s",
        args.samples_per_query,
        args.collect_n,
        collect_args.output_dir,
    )
    with _autocast(args.bf16, model.device)():
        rows = collect(collect_args, backend)  # a bar of finished queries
    logger.info("collected %s", collection_summary(collect_args.output_dir))
    if not rows:
        raise ValueError(
            f"the model failed none of the {args.collect_n} queries; raise --collect_n or pick a "
            "harder --env_kwargs"
        )
    return load_failures(collect_args.output_dir)


def evaluate_model(
    args: GRPOReflectConfig, model: Any, tokenizer: Any, name: str
) -> dict[str, Any] | None:
    """Greedy 1st-try / 2nd-try accuracy on ``eval_n`` items of the held-out split.

    Results go to ``<output_dir>/eval_<name>/`` (``episodes.jsonl``, ``metrics.json``).
    """
    if args.eval_n == 0:
        return None
    from agents.engines import make_backend
    from agents.evaluate import evaluate
    from agents.items import distinct_indices
    from agents.models import generation_model
    from agents.rollout import PhaseSampling, SamplingParams

    options = args.env_options(held_out=True)
    # Distinct problems: a generator's small problem space repeats items.
    indices = distinct_indices(lambda: gym.make(args.env_id, **options), args.eval_n)
    output = Path(args.output_dir) / f"eval_{name}"
    output.mkdir(parents=True, exist_ok=True)
    answer = SamplingParams(args.attempt_max_tokens, temperature=0.0)
    sampling = PhaseSampling(
        attempt=answer,
        reflection=SamplingParams(args.max_completion_length, temperature=0.0),
        retry=SamplingParams(args.retry_max_tokens, temperature=0.0),
    )
    # On a CPU, evaluate a merged bf16 copy (LoRA folded in), before and after alike, as the
    # head-to-head does: bf16 decodes 1.15x faster than fp32 weights under autocast
    # (generation_speed.md) at ~1 GB more peak memory (main_job.md).
    # Under --adapter_scope reflection only reflections use the adapter: no merged copy, the
    # adapter is switched off per phase (before training there is none: the base answers all).
    scoped = args.adapter_scope == "reflection" and hasattr(model, "disable_adapter")
    # An engine exports the weights itself (merged on the fly): no copy either.
    copy = args.bf16 and model.device.type == "cpu" and not scoped and args.engine == "torch"
    policy = generation_model(model, torch.bfloat16) if copy else model
    backend = make_backend(
        args.engine,
        policy,
        tokenizer,
        batch_size=args.rollout_batch_size or 64,
        adapter_scope="reflection" if scoped else "all",
        reflection_request=gym.make(args.env_id, **options).unwrapped.task.reflection_request,
    )
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    logger.info(
        "evaluating %s training: %d items of %s -> %s",
        name,
        len(indices),
        args.eval_split,
        output,
    )
    with contextlib.nullcontext() if copy else _autocast(args.bf16, model.device)():
        _, metrics = evaluate(
            lambda: gym.make(args.env_id, **options),
            backend,
            indices,
            sampling=sampling,
            episodes_path=output / "episodes.jsonl",
        )  # a bar of finished episodes
    model.train(was_training)
    metrics["seconds"] = time.perf_counter() - started
    logger.info(
        "evaluated %s training in %.0f s: 1st try %.3f, 2nd try %.3f",
        name,
        metrics["seconds"],
        metrics["rrr"]["first_try"],
        metrics["rrr"]["second_try"],
    )
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def build_trainer(
    args: GRPOReflectConfig,
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    *,
    peft_config: Any = None,
    callbacks: list[Any] | None = None,
    generator_factory: Callable[[Any], Any] | None = None,
    retry_generator: TokenGenerator | None = None,
) -> Any:
    """A ``GRPOTrainer`` wired with :class:`ReflectRetryRollout` and :func:`retry_success`.

    ``generator_factory`` replaces the trainer's own generation, ``retry_generator`` the
    retry's alone (see :class:`ReflectRetryRollout`).
    """
    per_batch = args.generation_batch_size // args.num_generations
    if len(train_dataset) < per_batch:
        raise ValueError(
            f"each generation batch needs {per_batch} distinct failures (generation_batch_size "
            f"{args.generation_batch_size} / num_generations {args.num_generations}) but the "
            f"dataset has {len(train_dataset)}; collect more failures or lower "
            "--per_device_train_batch_size / --gradient_accumulation_steps"
        )
    options = args.env_options()
    rollout = ReflectRetryRollout(
        lambda: gym.make(args.env_id, **options),
        train_dataset.select_columns(["prompt", "index"]).to_list(),
        retry_max_tokens=args.retry_max_tokens,
        credit=args.credit,
        rollout_batch_size=args.rollout_batch_size,
        retry_temperature=args.retry_temperature,
        retry_top_p=args.retry_top_p,
        resample_groups=args.resample_groups,
        seed=args.seed,
        generator_factory=generator_factory,
        retry_generator=retry_generator,
        sample_with_dropout=args.sample_with_dropout,
        adapter_scope=args.adapter_scope,
        engine=args.engine,
        truncated_reflections=args.truncated_reflections,
    )
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is "experimental"
    trainer = reflect_trainer_class()(
        model=model,
        reward_funcs=[retry_success],
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        rollout_func=rollout,
    )
    skip = args.skip_steps_without_signal
    # DeepSpeed's engine steps inside backward; fp16's grad scaler may refuse a step without
    # gradients. Neither can skip a step this way.
    unsupported = "DeepSpeed" if trainer.is_deepspeed_enabled else "--fp16" if args.fp16 else None
    if skip and unsupported:
        raise ValueError(
            f"--skip_steps_without_signal cannot skip a step under {unsupported}; use "
            "--skip_steps_without_signal false"
        )
    if skip is None:
        skip = unsupported is None
    if skip:
        # Each optimizer step's micro-batches come from one generation batch when generations
        # start on step boundaries: a step without signal is then known at its first loss.
        aligned = args.steps_per_generation % args.gradient_accumulation_steps == 0
        trainer.signal_skip = SkipStepsWithoutSignal(rollout, leave_loss_uncomputed=aligned)
        trainer.add_callback(trainer.signal_skip)
    trainer.add_callback(StepChanges(rollout, args.num_generations))  # after the skip
    if args.adapter_scope == "reflection" and not hasattr(trainer.model, "disable_adapter"):
        raise ValueError(
            "--adapter_scope reflection needs a LoRA adapter to switch off for the retries; "
            "pass --use_peft (or keep the CPU recipe)"
        )
    return trainer


@functools.cache
def reflect_trainer_class() -> type:
    """TRL's ``GRPOTrainer``, with the loss of a step that will be skipped left uncomputed.

    The subclass (built on first use: TRL is imported late) overrides ``compute_loss`` only.
    Where ``signal_skip`` (a :class:`SkipStepsWithoutSignal`) is set, each training
    micro-batch's signal is noted, and a micro-batch of a step that will be skipped returns a
    zero loss without running the model: its gradients would be dropped anyway.
    """
    from trl import GRPOTrainer

    class ReflectGRPOTrainer(GRPOTrainer):
        """``GRPOTrainer`` that computes no loss for an optimizer step without signal."""

        signal_skip: SkipStepsWithoutSignal | None = None

        def compute_loss(
            self,
            model: Any,
            inputs: Any,
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            skip = self.signal_skip
            if skip is not None and self.model.training and skip.note_micro_batch():
                return torch.zeros((), device=self.accelerator.device, requires_grad=True)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return ReflectGRPOTrainer


class SkipStepsWithoutSignal(TrainerCallback):
    """No optimizer step on a batch whose GRPO groups all have equal rewards.

    Such a batch has no advantage anywhere, but an AdamW step on it still moves the weights
    (momentum, weight decay) and the schedule. Before the step, this callback drops the
    gradients (``zero_grad(set_to_none=True)``: torch optimizers skip a parameter without a
    gradient, so no weight, moment or step count changes); after it, it puts the
    learning-rate schedule (and the optimizer's learning rates) back where they were. The
    trainer's ``global_step`` still advances. Logs ``rrr/skipped_steps``, the number of skipped
    steps so far. Every process takes the same decision, from the rewards of all of them.

    A step has signal when any of its micro-batches came from a generation batch with signal:
    :func:`reflect_trainer_class`'s trainer notes each micro-batch (:meth:`note_micro_batch`);
    without such notes (another trainer class) the latest generation batch decides. Where
    ``leave_loss_uncomputed``, a step without signal also runs no forward or backward pass:
    its loss is logged as 0 and TRL's loss metrics (``kl``, ``entropy``, clip ratios) are
    absent from its log. The counts are in ``uncomputed_losses``.

    Args:
        rollout: The trainer's rollout function; its latest training batch is judged.
        leave_loss_uncomputed: Skip the loss of a step without signal. Correct only when each
            optimizer step's micro-batches all come from one generation batch
            (``steps_per_generation`` a multiple of ``gradient_accumulation_steps``).
    """

    def __init__(self, rollout: ReflectRetryRollout, leave_loss_uncomputed: bool = False) -> None:
        self.rollout = rollout
        self.leave_loss_uncomputed = leave_loss_uncomputed
        self.skipped = 0
        self.uncomputed_losses = 0
        self._step_signal: bool | None = None
        self._saved: tuple[dict[str, Any], list[float]] | None = None

    def has_signal(self) -> bool:
        """Whether the latest batch, over all processes, has a group that gives a gradient.

        A group gives one when its trained rewards differ (and, with masked truncated
        reflections, one of its reflections finished): the rollout's
        :meth:`ReflectRetryRollout.groups_without_signal`.
        """
        import torch.distributed as dist

        groups = self.rollout.last_groups_with_signal
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, groups)
            groups = sum(parts)
        return groups > 0

    def note_micro_batch(self) -> bool:
        """Note the signal of the micro-batch about to be trained (the latest generation's).

        Returns:
            Whether its loss may go uncomputed: ``leave_loss_uncomputed`` and no signal (so
            the whole step has none and will be skipped).
        """
        signal = self.has_signal()
        self._step_signal = bool(self._step_signal) or signal
        if self.leave_loss_uncomputed and not signal:
            self.uncomputed_losses += 1
            return True
        return False

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._step_signal = None
        return control

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._saved = None
        signal = self.has_signal() if self._step_signal is None else self._step_signal
        if signal:
            return control
        kwargs["model"].zero_grad(set_to_none=True)
        scheduler, optimizer = kwargs["lr_scheduler"], kwargs["optimizer"]
        self._saved = (
            scheduler.state_dict(),
            [group["lr"] for group in optimizer.param_groups],
        )
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._step_signal = None
        if self._saved is not None:
            schedule, rates = self._saved
            kwargs["lr_scheduler"].load_state_dict(schedule)
            for group, rate in zip(kwargs["optimizer"].param_groups, rates, strict=True):
                group["lr"] = rate
            self.skipped += 1
            self._saved = None
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> Any:
        if logs is not None and "loss" in logs:
            logs["rrr/skipped_steps"] = self.skipped
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1]["rrr/skipped_steps"] = self.skipped
        return control


class StepChanges(TrainerCallback):
    """What each optimizer step changed, logged one line per step and kept in ``records``.

    Per step: the GRPO groups of its batch and how many had reward variance (gave a gradient:
    :meth:`ReflectRetryRollout.groups_without_signal`), the loss and
    gradient norm the trainer logged, the learning rate the optimizer stepped with, whether
    the step was skipped (:class:`SkipStepsWithoutSignal` dropped its gradients), and the
    relative change of the trainable weights, ``||W_after - W_before|| / ||W_before||`` over
    all of them (for a LoRA adapter: its A and B matrices). The weight change is ``None``
    where the trainable weights are over ``max_tracked`` parameters (a copy would cost their
    memory: a full fine-tune) or sharded (DeepSpeed ZeRO-3). Also the step's wall time
    (generation, loss and update). Register it after :class:`SkipStepsWithoutSignal`.

    Args:
        rollout: The trainer's rollout function; its latest training batch is the step's.
        group_size: GRPO group size (``num_generations``).
        max_tracked: Most trainable parameters whose change is measured.
    """

    def __init__(
        self, rollout: ReflectRetryRollout, group_size: int, max_tracked: int = 50_000_000
    ) -> None:
        self.rollout, self.group_size, self.max_tracked = rollout, group_size, max_tracked
        self.records: list[dict[str, Any]] = []
        self._before: list[torch.Tensor] | None = None
        self._started = time.perf_counter()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._started = time.perf_counter()
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.records and self.records[-1]["step"] == state.global_step:
            self.records[-1]["seconds"] = round(time.perf_counter() - self._started, 1)
        return control

    @staticmethod
    def _trainable(model: Any) -> list[torch.Tensor]:
        return [p for p in model.parameters() if p.requires_grad]

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        params = self._trainable(kwargs["model"])
        batch = self.rollout.last_batch
        rewards = [] if batch is None else list(batch.rewards)
        groups = len(rewards) // self.group_size
        with_signal = self.rollout.last_groups_with_signal
        self.records.append(
            {
                "step": state.global_step + 1,
                "groups": groups,
                "groups_with_variance": with_signal,
                "retry_success": sum(rewards) / len(rewards) if rewards else None,
                "loss": None,
                "grad_norm": None,
                "learning_rate": float(kwargs["optimizer"].param_groups[0]["lr"]),
                "skipped": all(p.grad is None for p in params),
                "weight_change": None,
                "seconds": None,
            }
        )
        sizes = [p.numel() for p in params]
        self._before = None
        if 0 not in sizes and 0 < sum(sizes) <= self.max_tracked:
            self._before = [p.detach().clone() for p in params]
        return control

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self._before is not None and self.records:
            params = self._trainable(kwargs["model"])
            moved = sum(
                float((p.detach().float() - b.float()).pow(2).sum())
                for p, b in zip(params, self._before, strict=True)
            )
            norm = sum(float(b.float().pow(2).sum()) for b in self._before)
            self.records[-1]["weight_change"] = (moved / norm) ** 0.5 if norm > 0 else moved**0.5
            self._before = None
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> Any:
        record = self.records[-1] if self.records else None
        if logs and "loss" in logs and record and record["step"] == state.global_step:
            record["loss"], record["grad_norm"] = logs.get("loss"), logs.get("grad_norm")
            if state.is_world_process_zero:
                logger.info("%s", step_line(record, state.max_steps))
        return control


def step_line(record: dict[str, Any], max_steps: int | None = None) -> str:
    """One line on what an optimizer step changed (a :class:`StepChanges` record)."""

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}"

    of = f"/{max_steps}" if max_steps else ""
    head = (
        f"step {record['step']}{of}: {record['groups_with_variance']} of {record['groups']} "
        "groups with reward variance"
    )
    if record["skipped"]:
        return f"{head}; skipped (no reward variance): no weight, moment or learning rate moved"
    change = record["weight_change"]
    moved = "" if change is None else f", trainable weights moved {change:.2e} of their norm"
    return (
        f"{head}; loss {number(record['loss'])}, grad norm {number(record['grad_norm'])}, "
        f"learning rate {number(record['learning_rate'])}{moved}"
    )


def format_steps(records: Sequence[dict[str, Any]]) -> str:
    """A markdown table of what each optimizer step changed (:class:`StepChanges` records)."""
    lines = [
        "What each optimizer step changed (weight change: ||W_after - W_before|| / ||W_before|| "
        "over the trainable weights):",
        "",
        "| step | groups with reward variance | loss | grad norm | learning rate | "
        "weight change | skipped |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        change = "-" if r["weight_change"] is None else f"{r['weight_change']:.2e}"
        cells = [
            "-" if r[k] is None else f"{r[k]:.3g}" for k in ("loss", "grad_norm", "learning_rate")
        ]
        lines.append(
            f"| {r['step']} | {r['groups_with_variance']} / {r['groups']} | {' | '.join(cells)} "
            f"| {change} | {'yes' if r['skipped'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


class TimeBudget(TrainerCallback):
    """Stops training once ``minutes`` of wall clock have passed since ``started``.

    Checked after each optimizer step, so the step under way always finishes (and is saved
    by the trainer's usual end-of-training logic).

    Args:
        minutes: The budget.
        started: ``time.perf_counter()`` at the start of the budgeted work (e.g. collection).
    """

    def __init__(self, minutes: float, started: float) -> None:
        self.deadline = started + 60.0 * minutes
        self.stopped_early = False

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        expired = time.perf_counter() >= self.deadline and state.global_step < state.max_steps
        # Every rank must stop at the same step: one that stopped alone would enter save_model
        # (a collective under ZeRO-3) while the others start the next step's collectives.
        if rank0_decision(expired):
            control.should_training_stop = True
            self.stopped_early = True
        return control


class TimeSnapshots(TrainerCallback):
    """Saves the policy the first time training wall time passes each of ``marks`` minutes.

    Checked after each optimizer step but the last; the snapshots go to
    ``<run_dir>/snapshots/`` (see :mod:`agents.snapshots`). Single process only
    (``GRPOReflectConfig`` checks it). Register it after :class:`TimeBudget`.

    Args:
        marks: Minutes, strictly increasing.
        started: ``time.perf_counter()`` at the start of the budgeted work (e.g. collection).
        run_dir: The run's output folder.
        tokenizer: Saved with each snapshot.
        spent: Training seconds spent before a resumed run's checkpoint: marks it passed were
            taken by the earlier run.
    """

    def __init__(
        self,
        marks: Sequence[float],
        started: float,
        run_dir: Path,
        tokenizer: Any,
        spent: float = 0.0,
    ) -> None:
        self.schedule = SnapshotSchedule(marks, run_dir, spent)
        self.started, self.tokenizer = started, tokenizer

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        spent = time.perf_counter() - self.started
        # The final policy is saved anyway (TimeBudget, before this callback, may stop it).
        final = control.should_training_stop or state.global_step >= state.max_steps
        # The run's adapter scope goes with each snapshot (rrr_policy.json), as with the final.
        scope = getattr(args, "adapter_scope", None)
        model, step = kwargs["model"], state.global_step
        self.schedule.after(spent, final, model, self.tokenizer, adapter_scope=scope, step=step)
        return control


#: In each checkpoint folder: the training wall time (collection included) spent until it was
#: saved, so that a resumed run keeps counting ``max_minutes`` and ``snapshot_minutes``.
SPENT_FILE = "rrr_train_seconds.json"


class RecordSpentTime(TrainerCallback):
    """Writes :data:`SPENT_FILE` into every checkpoint the trainer saves.

    Args:
        started: ``time.perf_counter()`` at the start of the budgeted work, moved back by the
            seconds spent before a resumed checkpoint.
    """

    def __init__(self, started: float) -> None:
        self.started = started

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                spent = {"train_seconds": time.perf_counter() - self.started}
                (folder / SPENT_FILE).write_text(json.dumps(spent) + "\n")
        return control


def resume_checkpoint(args: GRPOReflectConfig) -> tuple[str | None, float]:
    """The checkpoint ``--resume_from_checkpoint`` names and the training seconds before it.

    ``true`` / ``last`` / ``latest`` pick the newest ``checkpoint-N`` in ``output_dir``; a run
    with none starts afresh (logged). A checkpoint without :data:`SPENT_FILE` (saved by another
    tool) counts as 0 seconds spent, with a warning.

    Raises:
        ValueError: A named checkpoint folder does not exist.
    """
    from transformers.trainer_utils import get_last_checkpoint

    value = _resume_value(args.resume_from_checkpoint)
    if value is None or value is False:
        return None, 0.0
    if value is True:
        output = Path(args.output_dir)
        value = get_last_checkpoint(str(output)) if output.is_dir() else None
        if value is None:
            logger.info("no checkpoint in %s to resume from: training starts afresh", output)
            return None, 0.0
    if not Path(value).is_dir():
        raise ValueError(f"--resume_from_checkpoint: no checkpoint folder at {value}")
    spent_file = Path(value) / SPENT_FILE
    if not spent_file.is_file():
        logger.warning("%s has no %s: its training time counts as 0", value, SPENT_FILE)
        return str(value), 0.0
    return str(value), float(json.loads(spent_file.read_text())["train_seconds"])


def rank0_decision(flag: bool) -> bool:
    """``flag`` as rank 0 computed it, on every rank of the default process group.

    A collective when a group of several processes is initialized (every rank must call it at
    the same point); ``flag`` itself otherwise.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    decision = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.broadcast(decision, src=0)
    return bool(decision.item())


def _resume_value(value: str | bool | None) -> str | bool | None:
    if isinstance(value, str) and value.lower() in ("true", "last", "latest"):
        return True
    return value or None


def load_policy(args: GRPOReflectConfig, model_args: Any, num_processes: int) -> tuple[Any, Any]:
    """The policy and its tokenizer, for this launch.

    One process: the model object, loaded here (it also collects and evaluates). Several
    processes (DDP, DeepSpeed ZeRO-3): the model's folder or hub id, so that TRL loads it
    itself with ``model_init_kwargs`` (the path TRL supports under ZeRO-3).
    """
    from agents.models import load_model_and_tokenizer, resolve_model

    dtype = model_args.dtype or "float32"
    if num_processes == 1:
        model, tokenizer = load_model_and_tokenizer(args.model, dtype=dtype)
        if model_args.attn_implementation is not None:
            model.set_attn_implementation(model_args.attn_implementation)
        return model, tokenizer
    from transformers import AutoTokenizer

    resolved = resolve_model(args.model)
    if resolved.gguf_file is not None:
        raise ValueError(
            "multi-process training loads models with from_pretrained; convert the .gguf file "
            "to a folder first (or use a bundled name, which is converted for you)"
        )
    args.model_init_kwargs = {"dtype": dtype, **(args.model_init_kwargs or {})}
    if model_args.attn_implementation is not None:
        args.model_init_kwargs.setdefault("attn_implementation", model_args.attn_implementation)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return resolved.path, tokenizer


def train(args: GRPOReflectConfig, model_args: Any = None) -> dict[str, Any]:
    """Collect (or load) failures, evaluate, train with RRR-GRPO, evaluate again.

    Collection and the before / after evaluation run only in single-process launches; under
    ``accelerate launch`` with several processes, pass ``--failures_path`` and evaluate the
    saved model with ``python -m agents.evaluate``.

    Args:
        args: The configuration.
        model_args: TRL's ``ModelConfig`` (dtype, attention implementation, LoRA options).

    Returns:
        ``{"before": metrics, "after": metrics, "train_seconds": ..., "steps": ...}``;
        ``train_seconds`` covers collection and training (what ``max_minutes`` bounds; a run
        resumed from a checkpoint adds the seconds spent before it), and
        ``"model"`` holds the trained model object (it is not written to ``result.json``).
    """
    from accelerate import PartialState
    from trl import ModelConfig, get_peft_config

    model_args = apply_cpu_recipe(args, model_args or ModelConfig())
    if model_args.model_name_or_path not in (None, args.model):
        raise ValueError("pass the model with --model (not --model_name_or_path)")
    state = PartialState()
    single = state.num_processes == 1
    if args.collect and not single:
        raise ValueError(
            "--collect runs in one process; build the failures first (python -m "
            "agents.collect_failures ... --output-dir DIR) and pass --failures_path DIR"
        )
    if args.dry_run:
        model, tokenizer, note = dry_run_policy(args, model_args, state.num_processes)
        result = dry_run(args, model_args, model, tokenizer, state.num_processes)
        result["notes"] += [note] if note else []
        return result
    checkpoint, spent_before = resume_checkpoint(args)
    model, tokenizer = load_policy(args, model_args, state.num_processes)
    started = time.perf_counter()
    if args.collect:
        dataset = collect_failures(args, model, tokenizer)  # logs its summary
    else:
        dataset = load_failures(args.failures_path)
        summary = _loaded_summary(dataset, args.failures_path)
        logger.info("loaded %s from %s", summary, args.failures_path)
        note = screened_note(args)
        if note is not None:
            logger.info("training on %s", note)

    collect_seconds = time.perf_counter() - started
    before = evaluate_model(args, model, tokenizer, "before") if single else None
    peft_config = get_peft_config(model_args)
    # The budget covers collection and training, not the evaluation in between; a resumed
    # run adds what its checkpoint had spent.
    budget_start = time.perf_counter() - collect_seconds - spent_before
    callbacks: list[Any] = [RecordSpentTime(budget_start)]
    if args.max_minutes is not None:
        callbacks.append(TimeBudget(args.max_minutes, budget_start))
    if args.snapshot_minutes:
        marks, run_dir = args.snapshot_minutes, Path(args.output_dir)
        callbacks.append(TimeSnapshots(marks, budget_start, run_dir, tokenizer, spent_before))
    trainer = build_trainer(
        args, model, tokenizer, dataset, peft_config=peft_config, callbacks=callbacks
    )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = spent_before + collect_seconds + time.perf_counter() - started
    logger.info(
        "trained %d steps in %.0f s; saving the model to %s",
        trainer.state.global_step,
        train_seconds,
        args.output_dir,
    )
    trainer.save_model(args.output_dir)
    if state.is_main_process:
        policy = {"adapter_scope": args.adapter_scope}
        (Path(args.output_dir) / POLICY_FILE).write_text(json.dumps(policy) + "\n")
    # accelerate patched the model's forward with its mixed-precision autocast and fp32 output
    # conversion; the patch travels with copies of the model. Generating from a bf16 copy that
    # kept it took 6.9 s per item against 2.35 s unpatched (benchmarks/rrr_vs_rise, CPU).
    trained = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)

    after = None
    if single:
        stale = Path(args.output_dir) / "eval_after" / "episodes.jsonl"
        stale.unlink(missing_ok=True)  # the model changed since any earlier run
        after = evaluate_model(args, trained, tokenizer, "after")
    else:
        logger.info(
            "multi-process run: evaluate with python -m agents.evaluate --model %s", args.output_dir
        )
    result = {
        "before": before,
        "after": after,
        "train_seconds": train_seconds,
        "collect_seconds": collect_seconds,
        "steps": trainer.state.global_step,
        "failures": len(dataset),
        "failures_source": failures_source(args),
        # What generated the rollouts: --engine, or torch after an engine failed to start.
        "generation_engine": "vllm" if args.use_vllm else trainer.rollout_func.engine,
        "step_changes": _step_changes(trainer),
        "log_history": trainer.state.log_history,
    }
    if state.is_main_process:
        (Path(args.output_dir) / "result.json").write_text(json.dumps(result, indent=2))
    return {**result, "model": trained, "tokenizer": tokenizer}


def screened_note(args: GRPOReflectConfig) -> str | None:
    """What the run's failures are when they are a screened set (``agents.screen_failures``).

    Says which file, whether it is the bundled set the run defaulted to, that its failures
    were screened for reward variance, and the command that made them; None for other data.
    """
    from agents.screen_failures import describe, read_meta

    meta = read_meta(args.failures_path) if args.failures_path and not args.collect else None
    if meta is None:
        return None
    which = "the bundled screened set" if getattr(args, "bundled_failures", False) else ""
    return f"{which or 'the screened set'} {args.failures_path}: {describe(meta)}"


def failures_source(args: GRPOReflectConfig) -> str:
    """Where the failures came from, in a few words (``result.json``, benchmarks)."""
    if args.collect:
        return "collected"
    if getattr(args, "bundled_failures", False):
        return f"bundled {Path(args.failures_path).name}"
    return str(args.failures_path)


def _step_changes(trainer: Any) -> list[dict[str, Any]]:
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, StepChanges):
            return callback.records
    return []


def scripted_failures(args: GRPOReflectConfig, count: int) -> Any:
    """Up to ``count`` failures made by the env from a scripted wrong first attempt.

    The prompts are the env's real reflection requests; only the first attempt is not the
    model's. For :func:`dry_run`, which must not generate.
    """
    import datasets

    env = gym.make(args.env_id, **args.env_options())
    rows = []
    for index in range(min(count, len(env.unwrapped.task))):
        env.reset(options={"index": index})
        prompt, _, _, _, info = env.step("I do not know.")
        if info["phase"] == "reflection":
            rows.append({"prompt": prompt, "index": index})
    return datasets.Dataset.from_list(rows)


class ModelUnavailableError(ValueError):
    """A model (or the stand-in of a dry run) that cannot be had on this machine."""


#: The bundled model whose config and tokenizer make a dry run's stand-in when the hub model's
#: own cannot be read.
STAND_IN_MODEL = "smollm2-135m"
STAND_IN_LAYERS = 2


def dry_run_policy(
    args: GRPOReflectConfig, model_args: Any, num_processes: int
) -> tuple[Any, Any, str | None]:
    """The policy a dry run builds its trainer around, and a note when it is a stand-in.

    Bundled models, local folders and ``.gguf`` files load as in a real run. A Hugging Face
    id is never downloaded: the trainer gets a :data:`STAND_IN_LAYERS`-layer model with
    random weights, from the model's own config and tokenizer where the local cache has them
    (or the hub is reachable: a few small files), else from the bundled
    :data:`STAND_IN_MODEL`'s. That checks the batch arithmetic and the construction of the
    trainer and its rollout function, not the weights or the memory they take.

    Raises:
        ModelUnavailableError: not even the stand-in can be had (one line).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from agents.cli import hub_cached, hub_reachable
    from agents.models import resolve_dtype, resolve_model

    try:
        hub_id = resolve_model(args.model).is_hub_id  # fetches a bundled model once
    except RuntimeError as error:  # a bundled model whose download failed
        raise ModelUnavailableError(f"--model {args.model}: {error}") from None
    if not hub_id:
        return (*load_policy(args, model_args, num_processes), None)
    config = tokenizer = None
    online = not hub_cached(args.model) and hub_reachable()
    if online or hub_cached(args.model):
        try:  # a few small files, from the cache or the hub
            config = AutoConfig.from_pretrained(args.model, local_files_only=not online)
            tokenizer = AutoTokenizer.from_pretrained(args.model, local_files_only=not online)
            where = f"{args.model}'s own config and tokenizer"
        except OSError:
            config = None
    if config is None:
        try:
            source = resolve_model(STAND_IN_MODEL).path
            config = AutoConfig.from_pretrained(source)
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, RuntimeError, ValueError) as error:
            raise ModelUnavailableError(
                f"--dry-run: {args.model} is not in the local Hugging Face cache and the hub "
                f"is not reachable, and its stand-in {STAND_IN_MODEL} could not be had: {error}"
            ) from None
        where = (
            f"the bundled {STAND_IN_MODEL}'s config and tokenizer ({args.model} is not in "
            "the local Hugging Face cache and the hub was not reachable)"
        )
    config.num_hidden_layers = STAND_IN_LAYERS
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:STAND_IN_LAYERS]
    dtype = resolve_dtype(model_args.dtype or "float32", "cpu")
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    note = (
        f"{args.model}'s weights were not loaded: the trainer was built around a "
        f"{STAND_IN_LAYERS}-layer stand-in with random weights from {where}"
    )
    return model, tokenizer, note


def dry_run(
    args: GRPOReflectConfig, model_args: Any, model: Any, tokenizer: Any, num_processes: int
) -> dict[str, Any]:
    """Build the trainer and its rollout function as :func:`train` does, then stop.

    Nothing is generated, trained or saved. Failures come from ``failures_path``, or are
    scripted from the env when the run would collect them or there are none at that path
    (a dry run needs no real failures). Where vLLM is not installed, the trainer is built
    without its engine (``use_vllm`` off) and the result says so.
    """
    import importlib.util

    from trl import get_peft_config

    notes = []
    per_batch = args.generation_batch_size // args.num_generations
    if args.collect:
        dataset = scripted_failures(args, per_batch)
        source = f"{len(dataset)} scripted failures (a real run collects {args.collect_n} queries)"
    elif not Path(args.failures_path).exists():
        dataset = scripted_failures(args, per_batch)
        source = (
            f"{len(dataset)} scripted failures (none at {args.failures_path}; a real run "
            "needs them there: python -m agents.collect_failures ... --output-dir "
            f"{args.failures_path})"
        )
    else:
        dataset = load_failures(args.failures_path)
        note = screened_note(args)
        source = note or f"{len(dataset)} failures from {args.failures_path}"
    if args.use_vllm and importlib.util.find_spec("vllm") is None:
        args.use_vllm = False
        notes.append(
            f"vLLM is not installed here: the trainer was built without its {args.vllm_mode} "
            "engine (pip install -e '.[train,gpu]' on the GPU machine)"
        )
    trainer = build_trainer(
        args, model, tokenizer, dataset, peft_config=get_peft_config(model_args)
    )
    return {
        "dry_run": True,
        "processes": num_processes,
        "model": args.model,
        "env": f"{args.env_id} {args.env_kwargs}",
        "failures": source,
        "generation_batch_size": args.generation_batch_size,
        "groups_per_generation": per_batch,
        "max_steps": args.max_steps,
        "generation": f"vLLM ({args.vllm_mode})" if args.use_vllm else "transformers generate",
        "trainer": type(trainer).__name__,
        "rollout_func": type(trainer.rollout_func).__name__,
        "notes": notes,
        "trainer_object": trainer,
    }


def format_dry_run(result: dict[str, Any]) -> str:
    """The dry run's findings, one ``key: value`` line each."""
    lines = ["dry run: built everything, generated nothing"]
    for key, value in result.items():
        if key in ("dry_run", "trainer_object", "notes"):
            continue
        lines.append(f"  {key}: {value}")
    lines += [f"  note: {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


#: Below these, :func:`format_result` says the run checks the pipeline, not learning.
SHORT_RUN_STEPS, SHORT_RUN_ITEMS = 50, 200


def format_result(args: GRPOReflectConfig, result: dict[str, Any]) -> str:
    """A markdown table of vanilla vs trained accuracy."""
    lines = [
        f"# RRR-GRPO: {args.model} on {args.env_id} {args.env_kwargs}",
        "",
        f"{result['steps']} steps on {result['failures']} failures in "
        f"{result['train_seconds']:.0f} s; greedy evaluation on {args.eval_split} "
        f"({args.eval_n} items)",
        "",
        "| model | 1st try | 2nd try | fixed by the retry |",
        "|---|---|---|---|",
    ]
    for name in ("before", "after"):
        metrics = result.get(name)
        if metrics is None:
            continue
        rrr = metrics["rrr"]
        label = "vanilla" if name == "before" else "trained"
        lines.append(
            f"| {label} | {rrr['first_try']:.3f} | {rrr['second_try']:.3f} | "
            f"{rrr['fixed_by_retry']} / {rrr['retried']} |"
        )
    curve = [
        f"{entry['step']}: {entry['rrr/retry_success']:.2f}"
        for entry in result.get("log_history", [])
        if "rrr/retry_success" in entry
    ]
    if curve:
        lines += ["", "Retry success of the sampled groups by step: " + ", ".join(curve)]
    if result.get("step_changes"):
        lines += ["", format_steps(result["step_changes"]).rstrip()]
    if result["steps"] < SHORT_RUN_STEPS or args.eval_n < SHORT_RUN_ITEMS:
        lines += [
            "",
            f"A run of {result['steps']} steps checked on {args.eval_n} items shows that the "
            "pipeline works end to end (collection, GRPO on the reflection tokens, evaluation), "
            "not that the model learned: a difference of a few items is noise. Measured runs: "
            "benchmarks/results/rrr_vs_rise/.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; options, envs and ``--model`` are checked before any work."""
    from trl import ModelConfig

    from agents.cli import (
        check_env,
        check_hub_model,
        check_model,
        fail,
        parse_trl,
        preflight,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args, model_args = parse_trl((GRPOReflectConfig, ModelConfig), argv, own=GRPOReflectConfig)
    alias = model_args.model_name_or_path
    if alias is not None and alias != args.model:
        # TRL's flag for the model, an alias of --model: one model, named once.
        if args.model != GRPOReflectConfig.__dataclass_fields__["model"].default:
            fail(
                f"--model_name_or_path {alias} and --model {args.model} name different "
                "models; pass the model once, with --model"
            )
        args.model = alias
        if args.bundled_failures:  # matched for the default model; match the one named
            args.use_bundled_failures()
    model_args.model_name_or_path = None if alias is None else args.model
    preflight(lambda: check_env(args.env_id, args.env_options(), env_flag="--env_id"))
    if args.eval_n:
        options = args.env_options(held_out=True)
        preflight(lambda: check_env(args.env_id, options, env_flag="--env_id"))
    preflight(lambda: check_model(args.model))
    if args.dry_run:
        pass  # needs neither real failures nor real weights (see dry_run, dry_run_policy)
    else:
        if args.failures_path is not None and not Path(args.failures_path).exists():
            fail(f"--failures_path: no dataset of failures at {args.failures_path}")
        preflight(lambda: check_hub_model(args.model))
    try:
        result = train(args, model_args)
    except ModelUnavailableError as error:
        fail(str(error))
    if result.get("dry_run"):
        print(format_dry_run(result))
        return result
    if result["before"] is not None or result["after"] is not None:
        print(format_result(args, result))
    elif result.get("step_changes"):
        print(format_steps(result["step_changes"]))
    return result


__all__ = [
    "ADAPTER_SCOPES",
    "CPU_RECIPE_LEARNING_RATE",
    "CREDIT_MODES",
    "EPISODE_OPTIONS",
    "PAPER_LEARNING_RATE",
    "POLICY_FILE",
    "GRPOReflectConfig",
    "ReflectRetryRollout",
    "SPENT_FILE",
    "RecordSpentTime",
    "SkipStepsWithoutSignal",
    "StepChanges",
    "TRUNCATED_REFLECTIONS",
    "TRUNCATION_PENALTY",
    "TimeBudget",
    "apply_cpu_recipe",
    "build_trainer",
    "check_launch",
    "dry_run",
    "dry_run_policy",
    "load_failures",
    "rank0_decision",
    "resume_checkpoint",
    "main",
    "retry_success",
    "train",
]


if __name__ == "__main__":
    main()
