#!/usr/bin/env bash
# Put what benchmarks/gpu.sh needs beyond the GPU machine's packages into .carry/ (ignored by git):
# the real Gemma 3 tokenizer folder (about 33 MB), converted once from the demo extra.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
folder=$("$PY" -c "from medviz_core.models.gemma3_tokenizer import gemma3_tokenizer_folder; print(gemma3_tokenizer_folder())")
mkdir -p .carry
rm -rf .carry/gemma3-tokenizer
cp -r "$folder" .carry/gemma3-tokenizer
du -sh .carry/gemma3-tokenizer
