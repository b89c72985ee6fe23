#!/usr/bin/env bash
# The GPU run: the GPU tests, the engine and analysis benchmarks and the bf16 fidelity check on CUDA with
# MedGemma-4B's full shapes (random weights, bf16, the real Gemma 3 tokenizer). Writes, under benchmarks/results/,
# <date>-<gpu>-tests.txt, <date>-<gpu>-ops.json/.txt (operations per decode step), <date>-<gpu>.json/.txt
# (engine, eager and compiled), <date>-<gpu>-finisher.json/.txt (where each step's maps are computed: inline, a
# thread, the maps process), <date>-<gpu>-analysis.json/.txt, <date>-<gpu>-bf16.json/.txt (bf16 vs fp32) and
# <date>-<gpu>-bf16-eager.json/.txt (the bf16 maps vs the formulas on one eager bf16 forward, at full size).
# Budget: under 10 minutes on one H200-class GPU (the device tool's limit per command).
#
# The GPU machine reaches no package registry, so the real tokenizer travels with the working tree: run
# `benchmarks/prepare_carry.sh` here first and pass carry [".carry"] to the device tool. Without it,
# random:medgemma-4b falls back to the stand-in tokenizer and says so in one line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu.sh: no CUDA device visible to torch" >&2; exit 2
fi
if [ -z "${MEDVIZ_GEMMA3_TOKENIZER:-}" ] && [ -f .carry/gemma3-tokenizer/tokenizer.json ]; then
  export MEDVIZ_GEMMA3_TOKENIZER="$PWD/.carry/gemma3-tokenizer"
fi
"$PY" -m pip install --quiet -e . >/dev/null 2>&1 || "$PY" -m pip install --quiet --no-deps -e . >/dev/null 2>&1 || true
gpu=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))")
stamp=$(date -u +%Y-%m-%d)
out="benchmarks/results/${stamp}-${gpu}"
mkdir -p benchmarks/results
{ "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  timeout 120 "$PY" -m pytest -q -p no:cacheprovider tests/engine/test_gpu.py tests/models/test_medgemma_standin.py || true
} 2>&1 | tee "$out-tests.txt"
timeout 45 "$PY" benchmarks/ops_per_step.py --model "random:medgemma-4b?layers=34" \
  --json "$out-ops.json" | tee "$out-ops.txt" || true
timeout 270 "$PY" benchmarks/engine_bench.py --model random:medgemma-4b --tokens ${TOKENS:-64} --rounds 2 --compile \
  --contexts 256,1024,4096 --json "$out.json" | tee "$out.txt"
timeout 60 "$PY" benchmarks/finisher_bench.py --model random:medgemma-4b --tokens 24 --rounds 2 \
  --json "$out-finisher.json" | tee "$out-finisher.txt" || true
timeout 45 "$PY" benchmarks/analysis_bench.py --model random:medgemma-4b --tokens 8 \
  --json "$out-analysis.json" | tee "$out-analysis.txt"
timeout 45 "$PY" benchmarks/bf16_fidelity.py --layers 34 --tokens 16 --device cuda \
  --json "$out-bf16.json" | tee "$out-bf16.txt"
timeout 60 "$PY" benchmarks/bf16_fidelity.py --against eager --layers 34 --tokens 16 --device cuda \
  --json "$out-bf16-eager.json" | tee "$out-bf16-eager.txt" || true
