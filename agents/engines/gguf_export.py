"""Write a policy's current weights as a 16-bit GGUF file, for CPU inference engines.

Engines such as OpenVINO GenAI and llama.cpp read GGUF. The bundled models arrive as
Q4_K_M / Q4_1 GGUF files and are de-quantized once into the transformers folder the trainers
use (:mod:`agents.models`); the engine must serve *those* weights (plus whatever training has
done to them since), not the original quantized file, which some engines cannot read anyway
(OpenVINO GenAI 2026.4 rejects Q5_0 tensors). So the export goes the other way: from the
torch model (a PEFT model's LoRA deltas merged on the fly, the model itself untouched) to an
F16 GGUF, with the tokenizer, chat template and architecture metadata copied from a reference
GGUF of the same base model (the bundled file :func:`reference_gguf` finds).

Supported architectures: ``qwen2`` and ``llama`` (the bundled models); anything else raises
:class:`UnsupportedModelError`, which engine front ends turn into a fallback message.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "WEIGHT_TYPES",
    "UnsupportedModelError",
    "export_gguf",
    "gguf_tensor_name",
    "merged_weights",
    "reference_gguf",
]

#: GGUF architectures this exporter writes (``general.architecture``).
SUPPORTED_ARCHITECTURES = ("qwen2", "llama")
#: Weight encodings :func:`export_gguf` writes.
WEIGHT_TYPES = ("f16", "q8_0")

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


class UnsupportedModelError(ValueError):
    """The model cannot be exported for an engine (architecture, missing reference GGUF)."""


def gguf_tensor_name(name: str) -> str:
    """The GGUF (llama.cpp) name of a transformers parameter of a Qwen2/Llama model.

    >>> gguf_tensor_name("model.layers.3.self_attn.q_proj.weight")
    'blk.3.attn_q.weight'

    Raises:
        UnsupportedModelError: A parameter this exporter does not know.
    """
    if name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[name]
    match = _LAYER.match(name)
    if match and match.group(2) in _LAYER_NAMES:
        return f"blk.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    raise UnsupportedModelError(f"no GGUF name for parameter {name!r}")


def _plain_name(name: str) -> str:
    """A PEFT parameter name as the base model names it."""
    name = name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".")


def merged_weights(model: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, weight)`` of ``model`` as one plain model, LoRA deltas of a PEFT model added.

    The model is not changed (no ``merge_and_unload``): each adapted layer yields
    ``base + delta`` of its active adapters, computed in float32 when it is reached (one
    layer's copy in memory at a time). Adapter parameters themselves are not yielded. A PEFT
    model whose adapters are switched off (inside ``disable_adapter()``) yields its base
    weights.
    """
    lora_layers = {
        f"{name}.base_layer.weight": module
        for name, module in model.named_modules()
        if getattr(module, "get_delta_weight", None) is not None
        and getattr(module, "base_layer", None) is not None
    }
    seen: set[str] = set()
    for name, tensor in model.state_dict().items():
        if "lora_" in name or "modules_to_save" in name:
            continue
        plain = _plain_name(name)
        if plain in seen:
            continue
        seen.add(plain)
        module = lora_layers.get(name)
        if module is None or getattr(module, "merged", False):
            yield plain, tensor.detach()
        elif getattr(module, "disable_adapters", False):
            yield plain, module.base_layer.weight.detach()
        else:
            weight = module.base_layer.weight.detach().float()
            for adapter in getattr(module, "active_adapters", []):
                if adapter in getattr(module, "lora_A", {}):
                    weight = weight + module.get_delta_weight(adapter).detach().float()
            yield plain, weight


def _weight_shapes(model: Any) -> Iterator[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of what :func:`merged_weights` yields, without computing anything."""
    seen: set[str] = set()
    for name, tensor in model.state_dict().items():
        plain = _plain_name(name)
        if "lora_" in name or "modules_to_save" in name or plain in seen:
            continue
        seen.add(plain)
        yield plain, tuple(tensor.shape)


@functools.lru_cache(maxsize=4)
def _reference_metadata(
    path: str, size: int, mtime_ns: int
) -> tuple[list[tuple[str, Any, Any, Any]], dict[str, tuple[int, ...]]]:
    """A reference GGUF's metadata fields and tensor shapes, read once per file version.

    Reading the tokenizer's ~150,000 entries is most of an export's fixed cost; a GRPO run
    exports after every optimizer step.
    """
    import gguf

    del size, mtime_ns  # cache key only
    reader = gguf.GGUFReader(path)
    fields = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub_type = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        fields.append((key, field.contents(), vtype, sub_type))
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape.tolist())) for t in reader.tensors}
    return fields, shapes


def _hf_config(model: Any) -> Any:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config


def reference_gguf(model: Any, cache_dir: str | Path | None = None) -> Path:
    """The bundled GGUF file ``model`` was converted from (its tokenizer and metadata).

    Follows the model's ``name_or_path`` (the base model's, for a PEFT model) to the converted
    folder of a bundled model (``rrr_bundle.json``) or a ``.gguf`` file beside it.

    Raises:
        UnsupportedModelError: The model has no bundled or local GGUF to take metadata from.
    """
    from agents.models import BUNDLED_MODELS, fetch_gguf

    config = _hf_config(model)
    origin = Path(str(getattr(config, "_name_or_path", "") or ""))
    marker = origin / "rrr_bundle.json"
    if marker.is_file():
        name = json.loads(marker.read_text()).get("name")
        if name in BUNDLED_MODELS:
            return fetch_gguf(name, cache_dir=cache_dir)
    if origin.is_dir():
        found = sorted(origin.glob("*.gguf"))
        if found:
            return found[0]
    raise UnsupportedModelError(
        f"no GGUF to take the tokenizer from for a model loaded from {str(origin)!r}: the "
        "engine needs a bundled model (agents.models.BUNDLED_MODELS) or a folder holding a .gguf"
    )


def _permute_for_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """Llama q/k rows in llama.cpp's rotary layout (the inverse of transformers' loader)."""
    dim = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, dim, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def export_gguf(
    model: Any,
    out: str | Path,
    *,
    reference: str | Path | None = None,
    cache_dir: str | Path | None = None,
    weight_type: str = "f16",
) -> Path:
    """Write ``model``'s current weights to ``out`` as an F16 GGUF (1-D tensors in F32).

    The file is written beside ``out`` and renamed into place, so a reader never sees half of
    it. Metadata (architecture hyper-parameters, tokenizer, chat template) comes from
    ``reference`` (default: :func:`reference_gguf`); the model's config must agree with it.

    Args:
        model: A transformers Qwen2/Llama causal LM, or a PEFT model of one.
        out: Path of the GGUF file to write.
        reference: A GGUF of the same base model to copy metadata from.
        cache_dir: Cache root for bundled models.
        weight_type: ``"f16"`` (faithful: every bf16 weight is exact in F16) or ``"q8_0"``
            (2-D weights quantized to 8 bits in blocks of 32: a *different* policy, for
            quantized engines that must correct for it with importance sampling).

    Returns:
        ``out`` as a :class:`Path`.

    Raises:
        UnsupportedModelError: Unknown architecture or parameter, or a reference GGUF whose
            shapes do not match the model.
    """
    import gguf

    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"weight_type must be one of {WEIGHT_TYPES}, got {weight_type!r}")
    reference = Path(reference) if reference is not None else reference_gguf(model, cache_dir)
    stat = reference.stat()
    fields, expected = _reference_metadata(str(reference), stat.st_size, stat.st_mtime_ns)
    arch = dict((key, value) for key, value, _, _ in fields)["general.architecture"]
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"GGUF architecture {arch!r} is not supported (supported: {SUPPORTED_ARCHITECTURES})"
        )
    config = _hf_config(model)
    file_type = gguf.LlamaFileType.MOSTLY_F16
    if weight_type == "q8_0":
        file_type = gguf.LlamaFileType.MOSTLY_Q8_0
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is for secrets; this is a model file
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        for key, value, vtype, sub_type in fields:
            if key == "general.architecture":
                continue
            if key == "general.file_type":
                writer.add_uint32(key, int(file_type))
                continue
            writer.add_key_value(key, value, vtype, sub_type=sub_type)
        # Two passes, so that one tensor at a time is in memory: shapes and types first (the
        # header needs them), then each tensor's data.
        tied = "output.weight" not in expected  # the reference has no head: tied embeddings
        plan = []
        for name, shape in _weight_shapes(model):
            target = gguf_tensor_name(name)
            if target == "output.weight" and tied:
                continue
            if expected.get(target) != shape:
                raise UnsupportedModelError(
                    f"{name} has shape {shape}, but {reference.name} has "
                    f"{expected.get(target)} for {target}: not the same base model"
                )
            plan.append((name, target, shape))
        missing = sorted(set(expected) - {target for _, target, _ in plan})
        if missing:
            raise UnsupportedModelError(f"the model has no weights for {missing[:4]}")
        q8 = gguf.GGMLQuantizationType.Q8_0
        for _, target, shape in plan:
            if len(shape) == 1:
                writer.add_tensor_info(target, shape, np.dtype(np.float32), 4 * shape[0])
            elif weight_type == "q8_0":
                block, size = gguf.GGML_QUANT_SIZES[q8]
                byte_shape = (*shape[:-1], shape[-1] // block * size)  # what uint8 data means
                nbytes = int(np.prod(byte_shape))
                writer.add_tensor_info(target, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=q8)
            else:
                writer.add_tensor_info(target, shape, np.dtype(np.float16), 2 * int(np.prod(shape)))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        targets = {name: target for name, target, _ in plan}
        for name, tensor in merged_weights(model):
            target = targets.get(name)
            if target is None:
                continue
            array = tensor.float().cpu().numpy()
            if arch == "llama" and target.endswith(("attn_q.weight", "attn_k.weight")):
                heads = config.num_attention_heads
                if ".attn_k." in target:
                    heads = config.num_key_value_heads
                array = _permute_for_rope(array, heads)
            if array.ndim == 1:
                writer.write_tensor_data(array.astype(np.float32))
            elif weight_type == "q8_0":
                writer.write_tensor_data(gguf.quants.quantize(array, q8))
            else:
                writer.write_tensor_data(array.astype(np.float16))
            del array
        writer.close()
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
