"""OpenVINO GenAI as a CPU generation engine that serves a torch policy's current weights.

The policy's weights go to the engine as an F16 GGUF (:mod:`agents.engines.gguf_export`) that
OpenVINO GenAI's ``ContinuousBatchingPipeline`` reads directly: no export toolchain (optimum)
is needed, so installing the engine does not touch the project's torch or transformers. The
pipeline computes in bf16 where the CPU has bf16 instructions and keeps its KV cache in bf16
(``kv_cache_precision``; OpenVINO's CPU default, u8, is a quantization that changes outputs).

:meth:`OpenVINOEngine.sync` exports the policy's weights (LoRA deltas merged on the fly, the
policy untouched) and rebuilds the pipeline; it is a no-op while the weights are unchanged.

Install: ``pip install -e '.[cpu-engine]'`` (``openvino-genai``). See
``benchmarks/results/engines.md`` for speed and fidelity against torch on each CPU kind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from agents.engines.gguf_export import export_gguf

logger = logging.getLogger(__name__)

__all__ = [
    "KV_CACHE_PRECISIONS",
    "WORKDIR_PREFIX",
    "EngineSlot",
    "OpenVINOEngine",
    "new_workdir",
    "weights_fingerprint",
]

#: KV-cache precisions accepted by :class:`OpenVINOEngine` (``u8`` is quantized).
KV_CACHE_PRECISIONS = ("bf16", "f16", "f32", "u8")


def weights_fingerprint(model: Any) -> str:
    """A cheap fingerprint of what the model would generate with (adapter deltas included).

    Hashes a strided sample of every trainable parameter (all parameters if none is
    trainable) plus whether PEFT adapters are switched off: an optimizer step changes it.
    """
    digest = hashlib.sha1()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        params = list(model.named_parameters())
    for name, param in params:
        flat = param.detach().reshape(-1)
        step = max(1, flat.numel() // 256)
        digest.update(name.encode())
        digest.update(flat[::step].float().cpu().numpy().tobytes())
    disabled = any(getattr(m, "disable_adapters", False) for m in model.modules())
    digest.update(b"off" if disabled else b"on")
    return digest.hexdigest()


#: Temporary engine folders are named ``<prefix><pid>-<random>``: the owner's process id.
WORKDIR_PREFIX = "rrr-openvino-"


def new_workdir() -> Path:
    """A temporary folder for an engine's exports, after removing those of dead processes.

    A killed process (SIGKILL, SIGTERM, an out-of-memory kill) runs no finalizer, so its
    folder (a 1.5B model's GGUF is 3.4 GB) would stay in the temporary directory forever.
    """
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{WORKDIR_PREFIX}*-*"):
        pid = folder.name[len(WORKDIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and folder.is_dir() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            logger.info("removed %s, left by dead process %s", folder, pid)
    return Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class EngineSlot:
    """Room for one engine's pipeline at a time, for engines that do not fit in memory together.

    Under adapter scope ``reflection`` two engines serve one policy: the adapted one writes the
    reflections, the frozen base the attempts and retries. An OpenVINO pipeline holds about
    three copies of its 16-bit weights (~9.3 GB for Qwen2.5-Coder-1.5B), so on a 24 GB machine
    the two do not fit beside a training policy. Engines sharing a slot take turns: the one
    about to generate drops the other's pipeline, then loads its own from the GGUF it exported
    last (kept on disk while its weights are unchanged: no second export). Outputs are the
    same as with two live engines; each turn costs a load (20-40 s at 1.5B on 2 cores),
    counted in the engines' ``sync_seconds``.
    """

    def __init__(self) -> None:
        self.holder: OpenVINOEngine | None = None
        self.swaps = 0

    def take(self, engine: OpenVINOEngine) -> None:
        """Give the slot to ``engine``, releasing the pipeline of the engine that held it."""
        if self.holder is not None and self.holder is not engine:
            self.holder.release()
            self.swaps += 1
        self.holder = engine


class OpenVINOEngine:
    """An OpenVINO GenAI continuous-batching pipeline serving ``model``'s current weights.

    Args:
        model: The torch policy (a Qwen2/Llama causal LM, or a PEFT model of one).
        eos_ids: Token ids that end a response.
        workdir: Folder for the exported GGUF (default: a temporary folder, removed by
            :meth:`close`).
        kv_cache_precision: One of :data:`KV_CACHE_PRECISIONS`.
        weight_type: ``"f16"`` (faithful) or ``"q8_0"`` (quantized: a different policy).
        max_num_seqs: Most sequences decoded at once.
        threads: CPU threads (0: OpenVINO's choice, all cores).
        slot: An :class:`EngineSlot` shared with other engines (one pipeline alive at a time),
            or None (this engine's pipeline stays loaded).

    Raises:
        ImportError: ``openvino_genai`` is not installed (``pip install -e '.[cpu-engine]'``).
        agents.engines.gguf_export.UnsupportedModelError: The model cannot be exported.
    """

    def __init__(
        self,
        model: Any,
        eos_ids: Sequence[int],
        *,
        workdir: str | Path | None = None,
        kv_cache_precision: str = "bf16",
        weight_type: str = "f16",
        max_num_seqs: int = 64,
        threads: int = 0,
        slot: EngineSlot | None = None,
    ) -> None:
        import openvino_genai  # noqa: F401  (fail here, before any export, if missing)

        if kv_cache_precision not in KV_CACHE_PRECISIONS:
            raise ValueError(
                f"kv_cache_precision must be one of {KV_CACHE_PRECISIONS}, "
                f"got {kv_cache_precision!r}"
            )
        if max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {max_num_seqs}")
        self.model = model
        self.eos_ids = sorted(set(eos_ids))
        self.kv_cache_precision = kv_cache_precision
        self.weight_type = weight_type
        self.max_num_seqs = max_num_seqs
        self.threads = threads
        self.slot = slot
        self._exported: tuple[str, Path] | None = None  # kept under a slot, for the next turn
        self._own_dir = workdir is None
        self.workdir = new_workdir() if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pipeline: Any = None
        self._fingerprint: str | None = None
        self._version = 0
        self.syncs = 0
        self.sync_seconds = 0.0
        self.last_sync: dict[str, float] = {}
        self.last_logprob_sums: list[float] | None = None

    # -- weights -------------------------------------------------------------------------------

    def sync(self, force: bool = False) -> bool:
        """Serve the model's current weights; returns whether the pipeline was rebuilt."""
        fingerprint = weights_fingerprint(self.model)
        if not force and self._pipeline is not None and fingerprint == self._fingerprint:
            return False
        import openvino_genai as ov_genai

        start = time.perf_counter()
        if self.slot is not None:
            self.slot.take(self)
        self._pipeline = None  # free the old one first: two copies of the weights otherwise
        if self._exported is not None and self._exported[0] == fingerprint:
            path = self._exported[1]  # this engine's turn again, same weights: no export
        else:
            self._version += 1
            path = self.workdir / f"policy-{self._version}.gguf"
            with torch.no_grad():
                export_gguf(self.model, path, weight_type=self.weight_type)
        exported = time.perf_counter()
        scheduler = ov_genai.SchedulerConfig()
        scheduler.max_num_seqs = self.max_num_seqs
        scheduler.max_num_batched_tokens = max(scheduler.max_num_batched_tokens, 1024)
        properties: dict[str, Any] = {"KV_CACHE_PRECISION": self.kv_cache_precision}
        if self.threads:
            properties["INFERENCE_NUM_THREADS"] = self.threads
        self._pipeline = ov_genai.ContinuousBatchingPipeline(
            str(path), scheduler, "CPU", properties
        )
        for old in self.workdir.glob("policy-*.gguf"):
            if old != path:
                old.unlink(missing_ok=True)
        if self.slot is None:
            path.unlink(missing_ok=True)  # the pipeline holds what it needs
        else:
            self._exported = (fingerprint, path)  # for this engine's next turn
        done = time.perf_counter()
        self._fingerprint = fingerprint
        self.syncs += 1
        self.sync_seconds += done - start
        self.last_sync = {"export_s": exported - start, "load_s": done - exported}
        logger.info(
            "OpenVINO engine: weights v%d served (export %.1f s, load %.1f s)",
            self._version,
            exported - start,
            done - exported,
        )
        return True

    def release(self) -> None:
        """Drop the pipeline (its memory); the next generation loads it again."""
        self._pipeline = None

    @property
    def served(self) -> str | None:
        """:func:`weights_fingerprint` of the weights the pipeline serves (None before a sync)."""
        return self._fingerprint

    # -- generation ----------------------------------------------------------------------------

    def generate_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        top_k: int = 0,
        seeds: Sequence[int] | None = None,
        min_new_tokens: int = 0,
        logprobs: bool = False,
    ) -> tuple[list[list[int]], list[bool]]:
        """Completions (ending with an EOS id when they stopped) and whether each stopped.

        Args:
            prompt_ids: Rendered prompts.
            max_new_tokens: Most tokens per completion.
            temperature: 0 for greedy decoding.
            top_p: Nucleus mass.
            top_k: Keep the k most likely tokens; 0 disables.
            seeds: One sampling seed per prompt (sampling only).
            min_new_tokens: Suppress EOS before this many tokens (benchmarks).
            logprobs: Record each completion's summed log-probability, as the engine sampled
                it, in :attr:`last_logprob_sums` (the engine gives no per-token values).
        """
        import numpy as np
        import openvino as ov
        import openvino_genai as ov_genai

        if not prompt_ids:
            return [], []
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("every prompt needs at least one token")
        self.sync()
        configs = []
        for i in range(len(prompt_ids)):
            config = ov_genai.GenerationConfig()
            config.max_new_tokens = max_new_tokens
            config.min_new_tokens = min_new_tokens
            config.stop_token_ids = set(self.eos_ids)
            config.eos_token_id = self.eos_ids[0]
            if logprobs:
                config.logprobs = 1
            if temperature > 0:
                config.do_sample = True
                config.temperature = float(temperature)
                config.top_p = float(top_p)
                if top_k > 0:
                    config.top_k = int(top_k)
                if seeds is not None:
                    config.rng_seed = int(seeds[i]) % (2**32)
            else:
                config.do_sample = False
            configs.append(config)
        tensors = [ov.Tensor(np.asarray([list(p)], dtype=np.int64)) for p in prompt_ids]
        results = self._pipeline.generate(tensors, configs)
        eos = set(self.eos_ids)
        self.last_logprob_sums = [float(r.m_scores[0]) for r in results] if logprobs else None
        completions, stopped = [], []
        for result in results:
            ids = [int(t) for t in result.m_generation_ids[0]]
            stop = next((j for j, token in enumerate(ids) if token in eos), None)
            completions.append(ids if stop is None else ids[: stop + 1])
            stopped.append(stop is not None)
        return completions, stopped

    def close(self) -> None:
        """Drop the pipeline and remove the temporary folder (if the engine made it)."""
        self._pipeline = None
        self._fingerprint = None
        self._exported = None
        if self.slot is not None and self.slot.holder is self:
            self.slot.holder = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __del__(self) -> None:  # best effort: temporary GGUFs are large
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()
