"""CPU generation engines side by side: speed, memory, weight sync and fidelity against torch.

    python -m benchmarks.bench_engines                      # 0.5B and 1.5B, every path
    python -m benchmarks.bench_engines --quick              # SmolLM2-135M smoke run, to /tmp
    python -m benchmarks.bench_engines --render-only        # rewrite engines.md from the JSONL

Paths (each measured in its own process, so that its peak RSS is its own):

- ``torch-bf16``: transformers ``generate`` on a bf16 copy of the weights, what the project's
  torch backends run on CPUs with bf16 instructions: the baseline;
- ``openvino-bf16``: OpenVINO GenAI's ``ContinuousBatchingPipeline`` on an F16 GGUF export of
  the same weights, bf16 compute and a bf16 KV cache (:mod:`agents.engines.openvino`): the
  faithful engine;
- ``openvino-u8kv``: the same with OpenVINO's CPU default KV cache, u8 (quantized);
- ``openvino-q8``: Q8_0 weights (quantized), bf16 KV cache;
- ``ctranslate2-int8``: CTranslate2's ``Generator`` on an int8 conversion (quantized: its only
  CPU types are float32 and int8; no LoRA, so a weight sync merges, saves and converts).

For every model and path: tokens/s of ``--new-tokens`` greedy tokens (EOS suppressed, so every
path decodes the same number) at each batch size, sampling at temperature 1 at batch 32, time
to the first token of a batch (a 1-token call), peak RSS of the process (for engines: the torch
model they serve plus the engine), the time to push new LoRA weights (r 16 on every
projection) into the engine, and fidelity on ``--fidelity-prompts`` prompts x 64 tokens:
greedy outputs identical to torch's at batch 1 (torch's own batch-16 agreement with its batch
1 is the bar), the share of the engine's greedy tokens that are torch's top-1 given the same
prefix, and the log-probability gap between what the engine sampled and what torch (batch 1)
assigns to the same tokens. The engine reports one summed log-probability per completion, so
the gap is per token averaged within a completion: |sum_engine - sum_torch| / tokens, mean and
99th percentile over completions (torch's own batched-vs-batch-1 gap the same way beside it).

``limits`` rows estimate the machine's ceilings: bf16 matrix-multiply throughput (decode-shaped
and square) and memory bandwidth (a large copy); the report turns them into a roofline for each
model and batch (compute: 2 FLOPs per weight per token; bandwidth: every weight read once per
decoding step).

Prompts: first attempts of ``rrr/Countdown3-NoFixedForms-v1`` (validation split). Rows go to
``benchmarks/results/engines.jsonl`` as each path finishes (a rerun skips finished ones).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    add_output_arguments,
    command_line,
    machine_info,
    machine_line,
    read_rows,
    resolve_out_dir,
    write_row,
)

MEASURED_CODE = (
    "agents/engines/__init__.py",
    "agents/engines/openvino.py",
    "agents/engines/gguf_export.py",
    "benchmarks/bench_engines.py",
)
PACKAGES = ("torch", "transformers", "openvino", "openvino-genai", "ctranslate2")
PATHS = ("torch-bf16", "openvino-bf16", "openvino-u8kv", "openvino-q8", "ctranslate2-int8")
BASELINE = "torch-bf16"
QUANTIZED = ("openvino-u8kv", "openvino-q8", "ctranslate2-int8")
MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
ENV_ID = "rrr/Countdown3-NoFixedForms-v1"
FIDELITY_TOKENS = 64
KINDS = ("speed", "fidelity", "sync")


# -- worker ----------------------------------------------------------------------------------


def _prompts(tokenizer: Any, count: int) -> list[list[int]]:
    import gymnasium as gym

    import rrr_env
    from agents.backends import render_prompts

    gym.register_envs(rrr_env)
    env = gym.make(ENV_ID, split="validation")
    conversations = [env.reset(options={"index": i})[0] for i in range(count)]
    return render_prompts(tokenizer, conversations, None)


class _TorchGen:
    """Greedy / sampled ``generate`` of the bf16 model, left-padded, as the backends run it."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.pad = model, tokenizer.pad_token_id
        from agents.backends import eos_token_ids

        self.eos = sorted(eos_token_ids(model, tokenizer))

    def __call__(
        self,
        prompts: Sequence[list[int]],
        new_tokens: int,
        temperature: float,
        *,
        forced: bool = True,
        seed: int = 0,
        scores: bool = False,
    ) -> tuple[list[list[int]], list[float] | None]:
        import torch

        from agents.models import contiguous_head_inputs
        from agents.sampling import sampling_kwargs

        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, row in enumerate(prompts):
            ids[r, width - len(row) :] = torch.tensor(row)
            mask[r, width - len(row) :] = 1
        torch.manual_seed(seed)
        with torch.no_grad(), contiguous_head_inputs(self.model):
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens if forced else 0,
                pad_token_id=self.pad,
                eos_token_id=self.eos,
                output_logits=scores,
                return_dict_in_generate=True,
                **sampling_kwargs(temperature),
            )
        seqs = out.sequences[:, width:].tolist()
        sums = None
        if scores:
            logps = torch.stack([s.float().log_softmax(-1) for s in out.logits], 1)  # T = 1: raw
            chosen = out.sequences[:, width:].unsqueeze(-1)
            sums = logps.gather(-1, chosen).squeeze(-1).sum(-1).tolist()
        return seqs, sums


def _teacher_forced(model: Any, prompt: list[int], completion: list[int]) -> Any:
    """Per-token log-softmax rows of torch at batch 1 over ``completion`` after ``prompt``."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0]
    return logits[len(prompt) - 1 : -1].float().log_softmax(-1)


class _CT2:
    """CTranslate2's ``Generator`` on an int8 conversion (its CPU types: float32, int8).

    CTranslate2 takes no LoRA adapter: new weights are merged, saved and converted again.
    """

    def __init__(self, model: Any, tokenizer: Any, eos: Sequence[int], workdir: Path) -> None:
        self.tokenizer, self.eos, self.workdir = tokenizer, list(eos), workdir
        self.generator: Any = None
        self.load(model)

    def load(self, model: Any) -> dict[str, float]:
        import shutil

        import ctranslate2

        started = time.perf_counter()
        src, out = self.workdir / "hf", self.workdir / "ct2"
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
        merged.save_pretrained(src)
        self.tokenizer.save_pretrained(src)
        saved = time.perf_counter()
        ctranslate2.converters.TransformersConverter(str(src)).convert(
            str(out), quantization="int8", force=True
        )
        converted = time.perf_counter()
        self.generator = None
        self.generator = ctranslate2.Generator(str(out), device="cpu", compute_type="int8")
        shutil.rmtree(src, ignore_errors=True)
        done = time.perf_counter()
        return {"export_s": saved - started + converted - saved, "load_s": done - converted}

    def generate(
        self, batch: Sequence[list[int]], new_tokens: int, temperature: float, **kw: Any
    ) -> tuple[list[list[int]], list[float] | None]:
        import ctranslate2

        ctranslate2.set_random_seed(kw.get("seed", 0))
        starts = [self.tokenizer.convert_ids_to_tokens(p) for p in batch]
        results = self.generator.generate_batch(
            starts,
            max_length=new_tokens,
            min_length=new_tokens if kw.get("forced", True) else 0,
            sampling_topk=1 if temperature == 0 else 0,
            sampling_temperature=temperature or 1.0,
            end_token=self.eos,
            return_end_token=True,
            include_prompt_in_result=False,
            return_scores=kw.get("scores", False),
            length_penalty=0,  # scores are summed log-probabilities
        )
        ids = [list(r.sequences_ids[0]) for r in results]
        sums = [float(r.scores[0]) for r in results] if kw.get("scores", False) else None
        return ids, sums


def _openvino(path: str, model: Any, eos: Sequence[int], max_num_seqs: int) -> Any:
    """The OpenVINO engine of ``path`` on ``model``'s weights, started (exported and loaded)."""
    from agents.engines.openvino import OpenVINOEngine

    engine = OpenVINOEngine(
        model,
        eos,
        kv_cache_precision="u8" if path == "openvino-u8kv" else "bf16",
        weight_type="q8_0" if path == "openvino-q8" else "f16",
        max_num_seqs=max_num_seqs,
    )
    engine.sync()
    return engine


def _peft(model: Any, seed: int) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=16,
        lora_alpha=32,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    )
    peft = get_peft_model(model, config)
    _perturb(peft, seed)
    return peft


def _perturb(model: Any, seed: int) -> None:
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 1e-3)


def worker(model_name: str, path: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every row of one model and path (run in a process of its own)."""

    from agents.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_name, dtype="bfloat16")
    prompts = _prompts(tokenizer, max(max(args.batches), args.fidelity_prompts))
    torch_gen = _TorchGen(model, tokenizer)
    engine = None
    start_s = None
    if path == "ctranslate2-int8":
        import tempfile

        started = time.perf_counter()
        engine = _CT2(model, tokenizer, torch_gen.eos, Path(tempfile.mkdtemp(prefix="rrr-ct2-")))
        start_s = time.perf_counter() - started
    elif path != BASELINE:
        started = time.perf_counter()
        engine = _openvino(path, model, torch_gen.eos, max(args.batches))
        start_s = time.perf_counter() - started

    def generate(batch: Sequence[list[int]], new_tokens: int, temperature: float, **kw: Any):
        if engine is None:
            return torch_gen(batch, new_tokens, temperature, **kw)
        if isinstance(engine, _CT2):
            return engine.generate(batch, new_tokens, temperature, **kw)
        seeds = [kw.get("seed", 0) + i for i in range(len(batch))]
        ids, _ = engine.generate_ids(
            batch,
            max_new_tokens=new_tokens,
            temperature=temperature,
            seeds=seeds,
            min_new_tokens=new_tokens if kw.get("forced", True) else 0,
            logprobs=kw.get("scores", False),
        )
        return ids, engine.last_logprob_sums

    generate(prompts[:2], 4, 0.0)  # warm-up
    rows: list[dict[str, Any]] = []
    runs = [(b, 0.0) for b in args.batches] + [(args.sample_batch, 1.0)]
    for batch_size, temperature in runs if "speed" in args.kinds else []:
        batch = prompts[:batch_size]
        started = time.perf_counter()
        generate(batch, 1, temperature)
        ttft = time.perf_counter() - started
        started = time.perf_counter()
        generate(batch, args.new_tokens, temperature, seed=1)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "kind": "speed",
                "batch_size": batch_size,
                "temperature": temperature,
                "new_tokens": args.new_tokens,
                "seconds": round(seconds, 2),
                "tokens_per_second": round(batch_size * args.new_tokens / seconds, 1),
                "ttft_s": round(ttft, 3),
            }
        )
        print(
            f"  {path} batch {batch_size} T={temperature}: {rows[-1]['tokens_per_second']} tok/s",
            flush=True,
        )

    if "fidelity" in args.kinds:
        rows.append(_fidelity(model, prompts[: args.fidelity_prompts], generate))
    # weight sync of a LoRA adapter (engines only)
    if "sync" not in args.kinds:
        if isinstance(engine, _CT2):
            import shutil

            shutil.rmtree(engine.workdir, ignore_errors=True)
        elif engine is not None:
            engine.close()
        engine = None
    if isinstance(engine, _CT2):
        peft = _peft(model, seed=3)
        timings = engine.load(peft)
        rows.append(
            {
                "kind": "sync",
                "rebuilt": True,
                "seconds": round(sum(timings.values()), 2),
                **{k: round(v, 2) for k, v in timings.items()},
                "first_start_s": round(start_s or 0.0, 2),
            }
        )
        import shutil

        shutil.rmtree(engine.workdir, ignore_errors=True)
        engine = None
    if engine is not None:
        engine.close()
        peft = _peft(model, seed=3)
        engine = _openvino(path, peft, torch_gen.eos, max(args.batches))
        _perturb(peft, seed=4)  # an optimizer step
        started = time.perf_counter()
        rebuilt = engine.sync()
        rows.append(
            {
                "kind": "sync",
                "rebuilt": rebuilt,
                "seconds": round(time.perf_counter() - started, 2),
                **{k: round(v, 2) for k, v in engine.last_sync.items()},
                "first_start_s": round(start_s or 0.0, 2),
            }
        )
        engine.close()
    matmul = _matmul_params(model.get_base_model() if hasattr(model, "get_base_model") else model)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    for row in rows:
        row.update({"model": model_name, "path": path, "peak_rss_gib": round(peak, 2)})
        row["matmul_params"] = matmul
    return rows


def _fidelity(model: Any, fid: Sequence[list[int]], generate: Any) -> dict[str, Any]:
    """Greedy agreement, top-1 share and log-probability gap of ``generate`` against torch."""
    import torch

    greedy_batch, _ = generate(fid, FIDELITY_TOKENS, 0.0, forced=False)
    greedy_one = [generate([p], FIDELITY_TOKENS, 0.0, forced=False)[0][0] for p in fid]
    top1, gaps_top = 0, []
    tokens = 0
    for p, c in zip(fid, greedy_batch, strict=True):
        if not c:
            continue
        rows_lp = _teacher_forced(model, p, c)
        best = rows_lp.max(-1)
        chosen = rows_lp[torch.arange(len(c)), torch.tensor(c)]
        top1 += int((best.indices == torch.tensor(c)).sum())
        gaps_top += (best.values - chosen).tolist()
        tokens += len(c)
    sampled, sums = generate(fid, FIDELITY_TOKENS, 1.0, forced=False, seed=11, scores=True)
    seq_gaps = []
    for p, c, s in zip(fid, sampled, sums or [None] * len(fid), strict=True):
        if not c or s is None:
            continue
        rows_lp = _teacher_forced(model, p, c)
        torch_sum = float(rows_lp[torch.arange(len(c)), torch.tensor(c)].sum())
        seq_gaps.append(abs(s - torch_sum) / len(c))
    return {
        "kind": "fidelity",
        "prompts": len(fid),
        "tokens": FIDELITY_TOKENS,
        "greedy_batch": greedy_batch,
        "greedy_one": greedy_one,
        "top1_share": round(top1 / max(tokens, 1), 4),
        "top1_gap_p99": _round(_p99(gaps_top), 4),
        "logprob_gap_mean": _round(sum(seq_gaps) / len(seq_gaps) if seq_gaps else None, 5),
        "logprob_gap_p99": _round(_p99(seq_gaps), 5),
    }


def limits() -> dict[str, Any]:
    """bf16 matmul throughput (decode-shaped and square) and copy bandwidth of this machine."""
    import torch

    def flops(m: int, k: int, n: int, reps: int) -> float:
        a = torch.randn(m, k, dtype=torch.bfloat16)
        b = torch.randn(k, n, dtype=torch.bfloat16)
        torch.mm(a, b)
        started = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        return 2 * m * k * n * reps / (time.perf_counter() - started) / 1e9

    src = torch.empty(2**28, dtype=torch.float32).fill_(1.0)  # 1 GiB
    dst = torch.empty_like(src)
    dst.copy_(src)
    started = time.perf_counter()
    for _ in range(5):
        dst.copy_(src)
    bandwidth = 2 * src.numel() * 4 * 5 / (time.perf_counter() - started) / 1e9
    return {
        "kind": "limits",
        "gemm_bf16_gflops_decode64": round(flops(64, 1536, 8960, 20), 1),
        "gemm_bf16_gflops_square": round(flops(2048, 2048, 2048, 5), 1),
        "copy_gb_per_s": round(bandwidth, 1),
        "torch_threads": torch.get_num_threads(),
    }


# -- driver ----------------------------------------------------------------------------------


def run(args: argparse.Namespace, jsonl: Path, command: str) -> None:
    done = set()
    if jsonl.exists():
        done = {(r.get("model"), r.get("path"), r["kind"]) for r in read_rows(jsonl)}
    machine = machine_info(MEASURED_CODE, PACKAGES)
    with jsonl.open("a", encoding="utf-8") as handle:
        if (None, None, "limits") not in done:
            write_row(handle, {**limits(), "command": command, "machine": machine})
        for model_name in args.models:
            for path in args.paths:
                if not args.redo and all((model_name, path, kind) in done for kind in args.kinds):
                    continue
                print(f"{model_name} {path} ...", flush=True)
                out = args.out_dir / f".worker-{model_name}-{path}.json"
                cmd = [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_engines",
                    "--worker",
                    model_name,
                    path,
                ]
                cmd += ["--batches", *map(str, args.batches), "--new-tokens", str(args.new_tokens)]
                cmd += ["--sample-batch", str(args.sample_batch), "--kinds", *args.kinds]
                cmd += ["--fidelity-prompts", str(args.fidelity_prompts), "--worker-out", str(out)]
                result = subprocess.run(cmd, check=False)
                if result.returncode != 0:
                    raise SystemExit(f"worker for {model_name} {path} failed ({result.returncode})")
                for row in json.loads(out.read_text()):
                    write_row(handle, {**row, "command": command, "machine": machine})
                out.unlink()


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _p99(values: Sequence[float]) -> float | None:
    """The 99th percentile (nearest rank: the largest value for fewer than 100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def _matmul_params(model: Any) -> int:
    """Weights multiplied per generated token: every linear layer, the output head included."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def _fmt(value: Any, digits: int = 2) -> str:
    return (
        "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    )


def _agree(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> str:
    same = sum(list(x) == list(y) for x, y in zip(a, b, strict=True))
    return f"{same}/{len(a)}"


def render(rows: list[dict[str, Any]]) -> str:
    """The markdown report of ``rows`` (of repeated measurements, the latest)."""
    latest: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = (row.get("model"), row.get("path"), row["kind"])
        latest[(*key, row.get("batch_size"), row.get("temperature"))] = row
    rows = list(latest.values())
    limit = next((r for r in rows if r["kind"] == "limits"), None)
    speed = [r for r in rows if r["kind"] == "speed"]
    head = rows[-1]
    lines = [
        "# CPU generation engines against torch: speed, memory, weight sync, fidelity",
        "",
        f"Command: `{head['command']}`  ",
        f"Machine: {machine_line(head['machine'])}",
        "",
        f"Prompts: first attempts of `{ENV_ID}` (validation). Speed: greedy unless T = 1, EOS "
        "suppressed so every path decodes the same tokens, one timed call after a warm-up. "
        "Peak RSS is the whole process (an engine's includes the torch model it serves). "
        "Quantized paths (u8 KV cache, Q8_0 weights) are a different policy: reported apart, "
        "not used for training without importance-sampling correction (which needs per-token "
        "log-probabilities OpenVINO GenAI does not return).",
        "",
    ]
    if limit:
        lines += [
            f"Machine limits: bf16 matmul {limit['gemm_bf16_gflops_decode64']} GFLOP/s "
            f"(64 x 1536 x 8960, a decoding step's shape), {limit['gemm_bf16_gflops_square']} "
            f"GFLOP/s (2048 cube); copy bandwidth {limit['copy_gb_per_s']} GB/s.",
            "",
        ]
    lines += [
        "| model | batch | T | path | tok/s | vs torch | time to 1st token (s) | peak RSS (GiB) "
        "| roofline tok/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in speed:
        base = next(
            (
                r
                for r in speed
                if r["path"] == BASELINE
                and r["model"] == row["model"]
                and r["batch_size"] == row["batch_size"]
                and r["temperature"] == row["temperature"]
            ),
            None,
        )
        ratio = f"{row['tokens_per_second'] / base['tokens_per_second']:.2f}x" if base else "-"
        roof = "-"
        n = row.get("matmul_params")
        if limit and n:
            compute = limit["gemm_bf16_gflops_decode64"] * 1e9 / (2 * n)
            bandwidth = limit["copy_gb_per_s"] * 1e9 / (2 * n) * row["batch_size"]
            bound = "compute" if compute < bandwidth else "bandwidth"
            roof = f"{min(compute, bandwidth):.0f} ({bound})"
        name = row["path"] + (" (quantized)" if row["path"] in QUANTIZED else "")
        lines.append(
            f"| {row['model']} | {row['batch_size']} | {row['temperature']:g} | {name} | "
            f"{row['tokens_per_second']} | {ratio} | {row['ttft_s']} | {row['peak_rss_gib']} | "
            f"{roof} |"
        )
    fidelity = [r for r in rows if r["kind"] == "fidelity"]
    if fidelity:
        lines += [
            "",
            f"Fidelity ({FIDELITY_TOKENS} tokens, greedy unless sampled at T = 1): identical = "
            "greedy completions equal to torch's at batch 1 (the path batched, then one at a "
            "time); top-1 = share of the path's greedy "
            "tokens that are torch's most likely token after the same prefix (batch 1); "
            "log-prob gap = |sum the path assigned - sum torch at batch 1 assigns| / tokens per "
            "sampled completion (mean, 99th percentile).",
            "",
            "| model | path | identical, batched | identical, batch 1 | top-1 | gap to top-1 p99 "
            "(nats) | log-prob gap mean | p99 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in fidelity:
            ref = next(
                (r for r in fidelity if r["path"] == BASELINE and r["model"] == row["model"]), None
            )
            same_b = _agree(row["greedy_batch"], ref["greedy_one"]) if ref else "-"
            same_1 = _agree(row["greedy_one"], ref["greedy_one"]) if ref else "-"
            lines.append(
                f"| {row['model']} | {row['path']} | {same_b} | {same_1} | "
                f"{row['top1_share']:.3f} | "
                f"{_fmt(row['top1_gap_p99'], 3)} | {_fmt(row['logprob_gap_mean'], 4)} | "
                f"{_fmt(row['logprob_gap_p99'], 4)} |"
            )
    syncs = [r for r in rows if r["kind"] == "sync"]
    if syncs:
        lines += [
            "",
            "Weight sync: a LoRA adapter (r 16, every projection) changed as by an optimizer step, "
            "then exported (merged on the fly) and loaded into a new pipeline.",
            "",
            "| model | path | sync (s) | export (s) | load (s) | first start (s) |",
            "|---|---|---|---|---|---|",
        ]
        for row in syncs:
            lines.append(
                f"| {row['model']} | {row['path']} | {row['seconds']} | "
                f"{row.get('export_s', '-')} | "
                f"{row.get('load_s', '-')} | {row['first_start_s']} |"
            )
    lines += [
        "",
        "Goal (issue 26): >= 2x torch bf16 tokens/s on Qwen2.5-Coder-1.5B at batch >= 32; mean "
        "log-prob gap <= 0.02 nats/token; greedy agreement with torch at least torch's own "
        "batch-16-vs-batch-1 agreement; weight sync <= 10% of a GRPO step.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--batches", nargs="+", type=int, default=[8, 32, 64])
    parser.add_argument("--sample-batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--fidelity-prompts", type=int, default=16)
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=list(KINDS),
        choices=KINDS,
        help="what to measure (default: all)",
    )
    parser.add_argument(
        "--redo",
        action="store_true",
        help="measure again what the JSONL already holds; the report shows the latest rows",
    )
    parser.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    add_output_arguments(parser, "SmolLM2-135M, batches 2 and 4, 8 tokens, to /tmp")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.batches, args.sample_batch = ["smollm2-135m"], [2, 4], 4
        args.new_tokens, args.fidelity_prompts = 8, 4
    for value in [*args.batches, args.sample_batch, args.new_tokens, args.fidelity_prompts]:
        if value < 1:
            parser.error("batch sizes, --new-tokens and --fidelity-prompts must be >= 1")
    from agents.models import BUNDLED_MODELS

    for name in args.models:
        if name not in BUNDLED_MODELS:
            parser.error(
                f"--models takes bundled models ({', '.join(BUNDLED_MODELS)}), got {name!r}"
            )
    if any(p != BASELINE for p in args.paths) and not args.render_only and args.worker is None:
        from agents.engines import engine_unavailable_reason

        reason = engine_unavailable_reason("openvino")
        if reason and any(p.startswith("openvino") for p in args.paths):
            parser.error(f"the openvino paths need the engine: {reason}")
        if "ctranslate2-int8" in args.paths and importlib.util.find_spec("ctranslate2") is None:
            parser.error("the ctranslate2-int8 path needs ctranslate2 (pip install ctranslate2)")
    resolve_out_dir(args)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.worker is not None:
        rows = worker(args.worker[0], args.worker[1], args)
        args.worker_out.write_text(json.dumps(rows))
        return
    args.out_dir.mkdir(parents=True, exist_ok=True)
    jsonl, markdown = args.out_dir / "engines.jsonl", args.out_dir / "engines.md"
    if not args.render_only:
        run(args, jsonl, command_line("benchmarks.bench_engines", argv))
    text = render(read_rows(jsonl))
    markdown.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
