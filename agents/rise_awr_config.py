"""Configuration of RISE-AWR: :class:`Args`, the options of ``python -m agents.rise_awr``.

Kept apart from the trainer (``agents/rise_awr.py``), as ``agents/grpo_reflect_config.py`` is
kept apart from RRR-GRPO's trainer: this module holds every option, its default, its
cross-field checks and the env options and sampling it implies; the trainer module reads as
one collect-weight-update loop. ``agents.rise_awr`` re-exports every public name defined here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from agents.cli import json_object
from agents.engines import check_engine
from agents.models import DTYPES, resolve_dtype
from agents.rollout import PhaseSampling, SamplingParams
from agents.snapshots import check_marks

#: How a target's advantage is computed (``--weighting``).
#: ``baseline``: reward minus the mean reward of the target's group (the paper's AWR).
#: ``official``: the reward itself, so the weight is the official code's ``exp(reward / beta)``.
WEIGHTINGS = ("baseline", "official")
#: Where metrics go besides ``metrics.jsonl`` (``--report-to``).
REPORT_TO = ("tensorboard", "wandb", "none")
#: Env options that RISE mode fixes; they may not appear in ``--env-kwargs``.
RISE_MODE_KEYS = ("max_attempts", "reflect", "feedback", "split")
#: The no-argument demo's env: a Countdown preset that no fixed-form answer solves.
DEMO_ENV_ID = "rrr/Countdown3-NoFixedForms-v1"
#: The no-argument demo's model: the smallest bundled one that solves some of DEMO_ENV_ID.
DEMO_MODEL = "qwen2.5-coder-1.5b"
#: Default learning rates of LoRA adapters and of a full fine-tune.
LORA_LEARNING_RATE = 1e-4
FULL_LEARNING_RATE = 1e-5


@dataclass
class Args:
    """Options of ``python -m agents.rise_awr`` (also readable from a YAML ``--config``)."""

    # -- experiment ------------------------------------------------------------------------
    exp_name: str = field(default="rise_awr", metadata={"help": "Name of this experiment."})
    seed: int = field(default=1, metadata={"help": "Seed of item order, sampling and updates."})
    output_dir: str = field(
        default="runs/rise_awr",
        metadata={"help": "Runs go to <output_dir>/<env_id>__<exp_name>__<seed>__<time>/."},
    )
    report_to: str = field(
        default="tensorboard",
        metadata={"help": f"Metrics sink besides metrics.jsonl: one of {', '.join(REPORT_TO)}."},
    )
    wandb_project: str = field(default="rrr", metadata={"help": "wandb project (--report-to)."})
    save_every: int = field(
        default=1, metadata={"help": "Checkpoint every this many iterations (and at the end)."}
    )
    threads: int = field(
        default=0,
        metadata={
            "help": "CPU threads of torch (0: torch's default). On a CPU shared with other "
            "jobs, 1 avoids oversubscription, which slowed generation 5-15x in our runs."
        },
    )
    resume: str | None = field(
        default=None,
        metadata={
            "help": "A checkpoint folder (<run>/checkpoint) to continue from: model, optimizer "
            "and iteration count continue, logs go on in the same run folder."
        },
    )
    # -- environment -----------------------------------------------------------------------
    env_id: str = field(
        default=DEMO_ENV_ID,
        metadata={
            "help": "Environment id. Default: the shortcut-free Countdown preset (3 numbers in "
            "1..20, target 1..50, no item that a fixed form of rrr_env.shortcuts solves)."
        },
    )
    env_kwargs: str = field(
        default="{}",
        metadata={"help": "More env options as a JSON object, e.g. '{\"num_count\": 2}'."},
    )
    train_split: str | None = field(default="train", metadata={"help": "Split to train on."})
    max_attempts: int = field(
        default=2, metadata={"help": "T: turns per episode in training and evaluation (>= 2)."}
    )
    # -- model -----------------------------------------------------------------------------
    model: str = field(
        default=DEMO_MODEL,
        metadata={
            "help": "Bundled model name, Hugging Face id, local folder or .gguf file. Default: "
            "the smallest bundled model with signal on the default preset (sampled at T = 1 "
            "with 512 tokens it solved 2 of 32 train attempts; Qwen2.5-Coder-0.5B 1 of 128)."
        },
    )
    dtype: str = field(
        default="float32",
        metadata={
            "help": "dtype of the trained weights (auto, bfloat16, float16, float32); float32 "
            "keeps small updates that bfloat16 weights would round away. With LoRA, auto "
            "loads the frozen base in bfloat16 where that is fast (peft keeps the adapters in "
            "float32): the demo's peak memory fell from 14.9 to 10.9 GB."
        },
    )
    generation_dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype of the copy of the policy that generates rollouts and evaluations "
            "(auto: bfloat16 on GPUs and CPUs with AMX or AVX-512 BF16, else float32)."
        },
    )
    engine: str = field(
        default="torch",
        metadata={
            "help": "Generation engine of rollouts, best-of-N and evaluations: torch (a copy of "
            "the policy in --generation-dtype) or openvino (CPU; serves the policy's current "
            "weights, re-synced after each update; pip install -e '.[cpu-engine]'; falls back "
            "to torch with a warning when it cannot start)."
        },
    )
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "Run training forward/backward passes under bfloat16 autocast. Default: on "
            "where the device multiplies bfloat16 in hardware (CUDA GPUs that support it, CPUs "
            "with AMX or AVX-512 BF16), off elsewhere."
        },
    )
    use_peft: bool = field(
        default=True,
        metadata={
            "help": "Train LoRA adapters (peft) instead of all weights (default; "
            "--no-use-peft trains every weight)."
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Modules to adapt (default: peft's choice for the architecture)."},
    )
    # -- collection ------------------------------------------------------------------------
    iterations: int = field(default=1, metadata={"help": "Collect-update iterations."})
    max_minutes: float | None = field(
        default=None,
        metadata={
            "help": "Wall-clock budget of training in minutes (evaluations excluded): no new "
            "iteration starts once it is spent. The run stops at --iterations or the budget."
        },
    )
    snapshot_minutes: list[float] | None = field(
        default=None,
        metadata={
            "help": "Training wall times (minutes) at which the policy is also saved, to "
            "<run>/snapshots/<m>min/ at the end of the first iteration past each (not the "
            "last: that is the final policy), for held-out learning curves "
            "(benchmarks.rrr_vs_rise evaluates them)."
        },
    )
    items_per_iteration: int = field(
        default=4, metadata={"help": "Training items whose episodes are collected per iteration."}
    )
    samples_per_item: int = field(
        default=2, metadata={"help": "Episodes per item, i.e. turn-1 samples in an item's group."}
    )
    best_of: int = field(
        default=4,
        metadata={
            "help": "Responses per turn after a failed turn, the episode's own included; the "
            "best is the target (self-distillation; the official code uses 16). 1 disables."
        },
    )
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of the on-policy rollouts."}
    )
    best_of_temperature: float | None = field(
        default=None,
        metadata={
            "help": "Sampling temperature of the fresh best-of-N responses after a failed turn "
            "(None: --temperature). A lower one yields more correct targets from a small model."
        },
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(
        default=512,
        metadata={
            "help": "Token limit of a response (at 256, Qwen2.5-Coder-1.5B solved 1 of 32 "
            "preset problems greedily, at 512 18 of 100)."
        },
    )
    retry_max_new_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Token limit of a response after a failed turn: the rollouts' retries, the "
            "fresh best-of-N samples and the evaluations' retries (default: --max-new-tokens; "
            "in evaluation, --eval-max-new-tokens)."
        },
    )
    batch_size: int = field(default=16, metadata={"help": "Conversations per generate call."})
    # -- advantages and weights ------------------------------------------------------------
    weighting: str = field(
        default="baseline",
        metadata={
            "help": "Advantage of a target: 'baseline' = reward - mean reward of its group; "
            "'official' = reward (the official code's exp(reward / 0.4) with beta 0.4)."
        },
    )
    beta: float = field(default=0.4, metadata={"help": "Temperature of weights exp(A / beta)."})
    max_weight: float = field(default=20.0, metadata={"help": "Weights are clipped to this."})
    train_on_failures: bool = field(
        default=False,
        metadata={
            "help": "Also train on targets of groups with no correct response (the official "
            "code's default 'all' criterion). Off by default: imitating failures sampled at "
            "temperature 1 made Qwen2.5-Coder-0.5B worse (benchmarks/results/rrr_vs_rise/"
            "countdown-n2-easy__qwen2.5-coder-0.5b/findings.md)."
        },
    )
    # -- update ----------------------------------------------------------------------------
    learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "AdamW learning rate. Default: 1e-4 for LoRA adapters, 1e-5 for all weights."
        },
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    update_epochs: int = field(default=1, metadata={"help": "Passes over each iteration's data."})
    minibatch_size: int = field(default=16, metadata={"help": "Targets per optimizer step."})
    micro_batch_size: int = field(
        default=4, metadata={"help": "Targets per forward pass (gradient accumulation)."}
    )
    max_length: int = field(
        default=2048, metadata={"help": "Longer history + target sequences are skipped."}
    )
    # -- evaluation ------------------------------------------------------------------------
    eval_split: str | None = field(
        default="test",
        metadata={
            "help": "Held-out split: test (every env has it), or validation where the env has "
            "one (rrr/Countdown-v1 and its presets) for development."
        },
    )
    eval_n: int = field(
        default=0,
        metadata={
            "help": "Held-out items (distinct problems) evaluated greedily before the first and "
            "after the last iteration; 0 (the default, for a short demo) disables. The default "
            "model takes about 15 minutes per 100 answers on 2 CPU cores (512 tokens)."
        },
    )
    eval_reflect: bool = field(
        default=True,
        metadata={"help": "Also measure RRR's 1st/2nd-try accuracy (reflect=True, 2 attempts)."},
    )
    eval_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Token limit in evaluation (default: --max-new-tokens)."}
    )

    def __post_init__(self) -> None:
        check_engine(self.engine)
        if self.learning_rate is None:
            self.learning_rate = LORA_LEARNING_RATE if self.use_peft else FULL_LEARNING_RATE
        if self.bf16 is None:
            self.bf16 = resolve_dtype("auto") == torch.bfloat16
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"--weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.report_to not in REPORT_TO:
            raise ValueError(f"--report-to must be one of {REPORT_TO}, got {self.report_to!r}")
        for name in ("dtype", "generation_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {DTYPES}")
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"--beta must be a positive number, got {self.beta}")
        if not self.max_weight >= 1:
            raise ValueError(
                f"--max-weight must be >= 1 (a weight of exp(0) = 1 must survive the clip), "
                f"got {self.max_weight}"
            )
        if self.max_attempts < 2:
            raise ValueError(
                f"--max-attempts must be >= 2: RISE trains turns that follow a failed turn, "
                f"got {self.max_attempts}"
            )
        positive = (
            "iterations",
            "items_per_iteration",
            "samples_per_item",
            "best_of",
            "max_new_tokens",
            "batch_size",
            "update_epochs",
            "minibatch_size",
            "micro_batch_size",
            "max_length",
            "save_every",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"--max-minutes must be > 0, got {self.max_minutes}")
        check_marks(self.snapshot_minutes, "--snapshot-minutes")
        if self.threads < 0:
            raise ValueError(f"--threads must be >= 0 (0: torch's default), got {self.threads}")
        if self.eval_n < 0:
            raise ValueError(f"--eval-n must be >= 0 (0 disables evaluation), got {self.eval_n}")
        if self.eval_max_new_tokens is not None and self.eval_max_new_tokens < 1:
            raise ValueError("--eval-max-new-tokens must be >= 1")
        if self.retry_max_new_tokens is not None and self.retry_max_new_tokens < 1:
            raise ValueError(
                f"--retry-max-new-tokens must be >= 1, got {self.retry_max_new_tokens}"
            )
        if self.temperature <= 0 and self.samples_per_item > 1:
            raise ValueError(
                "greedy decoding (--temperature 0) repeats one response, so --samples-per-item "
                "> 1 samples nothing new; set --temperature > 0"
            )
        if self.best_of_temperature is not None and not self.best_of_temperature >= 0:
            raise ValueError(f"--best-of-temperature must be >= 0, got {self.best_of_temperature}")
        if self.best_of > 1 and not self.best_of_sampling().temperature > 0:
            raise ValueError(
                "greedy best-of-N samples repeat one response, so --best-of > 1 samples nothing "
                "new; set --best-of-temperature (or --temperature) > 0"
            )
        if self.weighting == "baseline" and self.samples_per_item == 1 and self.best_of == 1:
            raise ValueError(
                "with --weighting baseline every group has one response, so every advantage "
                "is 0; raise --samples-per-item or --best-of, or use --weighting official"
            )
        if self.learning_rate <= 0 or self.max_grad_norm <= 0:
            raise ValueError("--learning-rate and --max-grad-norm must be > 0")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        kwargs = self.env_kwargs_dict()
        fixed = sorted(set(kwargs) & set(RISE_MODE_KEYS))
        if fixed:
            raise ValueError(
                f"--env-kwargs may not set {fixed}: RISE mode fixes reflect=False and "
                "feedback='binary'; use --max-attempts, --train-split and --eval-split"
            )

    def env_kwargs_dict(self) -> dict[str, Any]:
        """``--env-kwargs`` parsed; raises ``ValueError`` unless it is a JSON object."""
        return json_object(self.env_kwargs, "--env-kwargs")

    def env_options(self, split: str | None, *, reflect: bool = False) -> dict[str, Any]:
        """``gym.make`` options: RISE mode (or RRR mode for ``reflect=True``) on ``split``."""
        options: dict[str, Any] = {
            "max_attempts": 2 if reflect else self.max_attempts,
            "reflect": reflect,
            "feedback": "binary",
        }
        if split is not None:
            options["split"] = split
        return {**self.env_kwargs_dict(), **options}

    def sampling(self) -> PhaseSampling:
        """Sampling of training rollouts (retries: ``--retry-max-new-tokens`` tokens)."""
        answer = SamplingParams(self.max_new_tokens, self.temperature, self.top_p)
        retry = SamplingParams(
            self.retry_max_new_tokens or self.max_new_tokens, self.temperature, self.top_p
        )
        return PhaseSampling(attempt=answer, reflection=answer, retry=retry)

    def best_of_sampling(self) -> SamplingParams:
        """Sampling of the fresh best-of-N responses after a failed turn."""
        temperature = self.temperature
        if self.best_of_temperature is not None:
            temperature = self.best_of_temperature
        tokens = self.retry_max_new_tokens or self.max_new_tokens
        return SamplingParams(tokens, temperature, self.top_p)

    def eval_sampling(self) -> PhaseSampling:
        """Greedy decoding for evaluation (retries: ``--retry-max-new-tokens`` tokens)."""
        tokens = self.eval_max_new_tokens or self.max_new_tokens
        answer = SamplingParams(tokens, temperature=0.0)
        retry = SamplingParams(self.retry_max_new_tokens or tokens, temperature=0.0)
        return PhaseSampling(attempt=answer, reflection=answer, retry=retry)
