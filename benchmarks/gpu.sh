#!/usr/bin/env bash
# The engine benchmark on CUDA with MedGemma-4B's full shapes (random weights, bf16).
# Writes benchmarks/results/<date>-<gpu>.json and .txt (engine) and <date>-<gpu>-analysis.json and .txt
# (on-demand analysis per token). Budget: under 8 minutes on one H200-class GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu.sh: no CUDA device visible to torch" >&2; exit 2
fi
"$PY" -m pip install --quiet -e . >/dev/null 2>&1 || "$PY" -m pip install --quiet --no-deps -e .
gpu=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))")
stamp=$(date -u +%Y-%m-%d)
out="benchmarks/results/${stamp}-${gpu}"
mkdir -p benchmarks/results
timeout 360 "$PY" benchmarks/engine_bench.py --model random:medgemma-4b --tokens ${TOKENS:-64} --rounds 2 \
  --contexts 256,512,1024,2048,4096 --json "$out.json" | tee "$out.txt"
timeout 110 "$PY" benchmarks/analysis_bench.py --model random:medgemma-4b --tokens 8 \
  --json "$out-analysis.json" | tee "$out-analysis.txt"
