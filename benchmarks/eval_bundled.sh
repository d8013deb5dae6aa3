#!/usr/bin/env bash
# First real numbers: agents.evaluate of the bundled models on Countdown and BFCL (test splits).
# Each run appends episodes as it goes and resumes if rerun. Results: benchmarks/results/eval/.
# Token limits are below the paper's so that the runs fit a 2-core CPU: 384 per answer, 192 per
# reflection for Countdown; 256 / 192 for BFCL (tool calls are short). Countdown: the first 200
# test items (TinyZero's distribution); BFCL: the test split of simple_python + multiple (135
# items). MODELS="smollm2-135m" N=32 bash benchmarks/eval_bundled.sh runs a subset. Committed so
# far: Countdown 64 items (Qwen2.5-Coder-0.5B, ~7 s per item) and 32 (SmolLM2-135M), BFCL the
# whole 135; rerunning this script resumes and extends Countdown to 200.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/eval
models=${MODELS:-"qwen2.5-coder-0.5b smollm2-135m"}
n=${N:-200}
for model in $models; do
  python -m agents.evaluate --env rrr/Countdown-v0 --model "$model" --split test --n "$n" \
    --max-new-tokens 384 --reflection-max-new-tokens 192 --batch-size 32 \
    --output-dir "$out/countdown__$model"
  python -m agents.evaluate --env rrr/BFCL-v0 --model "$model" --split test --n "$n" \
    --env-kwargs '{"category": ["simple_python", "multiple"]}' \
    --max-new-tokens 256 --reflection-max-new-tokens 192 --batch-size 32 \
    --output-dir "$out/bfcl_simple_multiple__$model"
done
