"""Benchmark scripts: each writes raw JSONL and a markdown table under benchmarks/results/."""
