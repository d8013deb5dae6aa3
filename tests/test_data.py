"""rrr_env.data: the bundled files, the one data= reader, and hub access that fails fast."""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import gymnasium as gym
import pytest

import rrr_env
from rrr_env import data

gym.register_envs(rrr_env)

REPO = Path(__file__).resolve().parents[1]


# -- the bundled files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "rows", "keys"),
    [
        (data.GSM8K_TRAIN, 7473, {"question", "answer"}),
        (data.GSM8K_TEST, 1319, {"question", "answer"}),
        (data.COUNTDOWN_TINYZERO_TEST, 2001, {"nums", "target"}),
    ],
)
def test_bundled_files_match_their_pinned_checksum_and_row_count(path, rows, keys):
    name = path.relative_to(data.ROOT).as_posix()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == data.SHA256[name]
    records = list(data.read_file(path))
    assert len(records) == rows
    assert all(set(row) == keys for _, row in records)
    assert records[0][0] == f"{path}:1"
    assert (path.parent / "LICENSE").is_file()


def test_every_bundled_file_is_package_data():
    # A wheel built from pyproject.toml must carry the data, its licences and its README.
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["rrr_env"]
    package = REPO / "rrr_env"
    shipped = [
        p.relative_to(package).as_posix()
        for p in (package / "data").rglob("*")
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    ]
    assert shipped and set(data.SHA256) <= {s.removeprefix("data/") for s in shipped}
    for name in shipped:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_a_corrupted_bundled_file_is_refused(tmp_path, monkeypatch):
    name = "countdown/tinyzero_test.jsonl.gz"
    copy = tmp_path / name
    copy.parent.mkdir()
    raw = bytearray(gzip.decompress(data.COUNTDOWN_TINYZERO_TEST.read_bytes()))
    raw[10:12] = b"99"  # still valid JSON lines, but other numbers
    copy.write_bytes(gzip.compress(bytes(raw), mtime=0))
    monkeypatch.setattr(data, "ROOT", tmp_path)
    with pytest.raises(ValueError, match="corrupted.*reinstall"):
        list(data.read_file(copy))


def test_no_code_reads_data_outside_the_repository():
    # Regression: tests and a benchmark read the data folder beside the clone, which users lack.
    pattern = re.compile(r"\.\./shared|parents\[2\]\s*/\s*[\"']shared|/work/share[d]")
    try:
        listed = subprocess.run(
            ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
        files = [REPO / name for name in listed]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        files = [p for p in REPO.rglob("*") if ".git" not in p.parts]
    checked = [
        f for f in files if f.is_file() and (f.suffix in (".py", ".sh") or f.parent.name == ".ci")
    ]
    assert checked
    offenders = [
        str(f.relative_to(REPO))
        for f in checked
        if pattern.search(f.read_text(encoding="utf-8", errors="replace"))
    ]
    assert offenders == []


# -- the reader behind data= -----------------------------------------------------------------


def test_reader_takes_jsonl_json_lists_gzip_and_iterables_alike(tmp_path):
    rows = [{"a": 1}, {"a": 2}]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    as_list = tmp_path / "rows.json"
    as_list.write_text("\n\n" + json.dumps(rows, indent=2), encoding="utf-8")
    gz = tmp_path / "rows.json.gz"
    gz.write_bytes(gzip.compress(as_list.read_bytes()))
    assert [w for w, _ in data.records(str(jsonl))] == [f"{jsonl}:1", f"{jsonl}:2"]
    assert [w for w, _ in data.records(as_list)] == [f"{as_list}[0]", f"{as_list}[1]"]
    for source in (jsonl, as_list, gz, rows, iter(rows)):
        assert [r for _, r in data.records(source)] == rows


def test_reader_names_file_and_line_of_a_line_that_is_not_json(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n\n{"a": \n'))
    with pytest.raises(ValueError, match=r"rows.jsonl.gz:3: not JSON"):
        list(data.records(path))


@pytest.mark.parametrize(
    ("value", "path_like"),
    [
        ("openai/gsm8k", False),
        ("Salesforce/xlam-function-calling-60k", False),
        ("mine/items.jsonl", True),  # a data-file suffix: a path even if missing
        ("items.jsonl", True),
        ("/abs/owner/name", True),
        (Path("openai/gsm8k"), True),  # a Path is always a path
    ],
)
def test_hub_ids_and_paths_are_told_apart(value, path_like):
    assert data.is_path_like(value) is path_like


def test_reader_refuses_a_single_dict_or_a_number():
    for bad in ({"a": 1}, 42, b"rows"):
        with pytest.raises(TypeError, match="iterable of dicts"):
            data.records(bad)


# -- hub access fails fast with the offline alternatives ----------------------------------------


@pytest.mark.parametrize(
    ("env_id", "hub_id"),
    [
        ("rrr/GSM8K-v0", "openai/gsm8k"),
        ("rrr/Countdown-v0", "Jiayi-Pan/Countdown-Tasks-3to4"),
        ("rrr/FunctionCalling-v0", "Salesforce/xlam-function-calling-60k"),
    ],
)
def test_unreachable_hub_fails_at_once_naming_the_offline_alternatives(env_id, hub_id, monkeypatch):
    # Regression: ~24 s of datasets' retries, then a raw ConnectionError without a hint.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    datasets = pytest.importorskip("datasets")

    def no_retries(*args, **kwargs):
        raise AssertionError("datasets.load_dataset must not be reached: the probe failed")

    monkeypatch.setattr(datasets, "load_dataset", no_retries)
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:9 is unreachable.*data=") as caught:
        gym.make(env_id, data=hub_id)
    assert str(caught.value).count("Offline") == 1


def test_unreachable_hub_fails_fast_in_a_fresh_process(tmp_path):
    # The same in a clean interpreter, as a user's script meets it (nothing patched).
    script = (
        "import gymnasium as gym, rrr_env\n"
        "try:\n"
        "    gym.make('rrr/GSM8K-v0', data='openai/gsm8k')\n"
        "except ConnectionError as error:\n"
        "    print('ConnectionError:', error)\n"
    )
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=True,
    )
    assert "ConnectionError: cannot load 'openai/gsm8k'" in result.stdout
    assert "bundled copy (data=None" in result.stdout


def test_a_reachable_hub_is_read_through_datasets_for_every_env(monkeypatch):
    calls = []
    rows = {
        "openai/gsm8k": [{"question": "1 + 1?", "answer": "#### 2"}],
        "Jiayi-Pan/Countdown-Tasks-3to4": [{"nums": [3, 8], "target": 11}],
        "Salesforce/xlam-function-calling-60k": [
            {
                "id": 7,
                "query": "q",
                "tools": '[{"name": "f"}]',
                "answers": '[{"name": "f", "arguments": {}}]',
            }
        ],
    }

    class FakeDatasets:
        @staticmethod
        def load_dataset(*args, **kwargs):
            calls.append((args, kwargs))
            return rows[args[0]]

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # CI sets them; this is online
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(data, "hub_reachable", lambda timeout=0: True)
    monkeypatch.setitem(sys.modules, "datasets", FakeDatasets)
    gsm8k = gym.make("rrr/GSM8K-v0", data="openai/gsm8k", split="test").unwrapped.task
    countdown = gym.make("rrr/Countdown-v0", data="Jiayi-Pan/Countdown-Tasks-3to4").unwrapped.task
    xlam = gym.make("rrr/FunctionCalling-v0", data="Salesforce/xlam-function-calling-60k")
    assert calls == [
        (("openai/gsm8k", "main"), {"split": "test"}),
        (("Jiayi-Pan/Countdown-Tasks-3to4",), {"split": "train"}),
        (("Salesforce/xlam-function-calling-60k",), {"split": "train"}),
    ]
    assert gsm8k[0].gold == "2" and countdown[0].numbers == (3, 8)
    assert countdown[0].id == "hub-0" and xlam.unwrapped.task[0].id == "xlam-7"


def test_offline_mode_without_a_cached_copy_fails_before_importing_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("HF_DATASETS_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "datasets", None)  # importing it would raise ImportError
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE is set.*hold no copy.*data=None"):
        gym.make("rrr/GSM8K-v0", data="openai/gsm8k")
    (tmp_path / "hub" / "datasets--openai--gsm8k").mkdir(parents=True)
    assert data.cached_locally("openai/gsm8k") and data.cached_locally("OpenAI/GSM8K")
    assert not data.cached_locally("openai/other")
    with pytest.raises(ImportError, match="pip install datasets"):  # now it goes to datasets
        gym.make("rrr/GSM8K-v0", data="openai/gsm8k")
