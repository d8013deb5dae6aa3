"""The engine benchmark's report: ratios against torch of the same batch, latest rows, labels."""

from __future__ import annotations

import pytest

from benchmarks.bench_engines import MEASURED_CODE, PACKAGES, _p99, parse_args, render
from benchmarks.common import machine_info

MACHINE = machine_info(MEASURED_CODE, PACKAGES)


def speed(path: str, batch: int, tok_s: float, **extra) -> dict:
    return {
        "kind": "speed",
        "model": "qwen2.5-coder-1.5b",
        "path": path,
        "batch_size": batch,
        "temperature": 0.0,
        "new_tokens": 128,
        "tokens_per_second": tok_s,
        "ttft_s": 1.0,
        "peak_rss_gib": 4.0,
        "matmul_params": 1_500_000_000,
        "command": "python -m benchmarks.bench_engines",
        "machine": MACHINE,
        **extra,
    }


def table_row(text: str, *cells: str) -> str:
    return next(line for line in text.splitlines() if all(f"| {c} |" in line for c in cells))


def test_speed_ups_are_against_torch_at_the_same_batch_and_rerun_rows_replace_old_ones():
    limits = {"kind": "limits", "gemm_bf16_gflops_decode64": 600.0, "copy_gb_per_s": 60.0}
    limits.update(gemm_bf16_gflops_square=800.0, command="c", machine=MACHINE)
    rows = [
        limits,
        speed("torch-bf16", 32, 100.0),
        speed("torch-bf16", 64, 120.0),
        speed("openvino-bf16", 32, 150.0),
        speed("openvino-bf16", 64, 999.0),  # an older measurement ...
        speed("openvino-bf16", 64, 180.0),  # ... replaced by the rerun
        speed("openvino-q8", 32, 160.0),
    ]
    text = render(rows)
    assert "| 1.50x |" in table_row(text, "32", "openvino-bf16")
    assert "| 1.50x |" in table_row(text, "64", "openvino-bf16")  # 180 / 120, not 999
    assert "999" not in text
    assert "openvino-q8 (quantized)" in table_row(text, "32", "openvino-q8 (quantized)")
    # roofline: 600 GFLOP/s / (2 x 1.5e9) = 200 tok/s, below bandwidth 60e9 / 3e9 x 32 = 640
    assert "| 200 (compute) |" in table_row(text, "32", "openvino-bf16")


def test_p99_is_the_largest_value_of_a_small_sample():
    assert _p99([0.1, 0.5, 0.2]) == 0.5
    assert _p99(list(range(1000))) == 989
    assert _p99([]) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batches", "0"], "must be >= 1"),
        (["--models", "gpt-2"], "bundled models"),
    ],
)
def test_bad_options_fail_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
