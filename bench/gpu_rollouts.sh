#!/usr/bin/env bash
# vLLM vs. the hf engine on one CUDA GPU, same prompts and sampling, after the engine-contract and
# pre-flight tests on vLLM. Prepared without a GPU (see bench/RESULTS.md): its first run is its test.
#
#   OUT=/tmp/gpu bash bench/gpu_rollouts.sh
#
# Writes $OUT/results.md (the table), bench.txt, pytest.txt, pip.txt, nvidia-smi.txt.
# Needs Python 3.11/3.12 and PyPI (vllm 0.31 pulls the CUDA torch 2.13 build), unless .venv-gpu
# already has vLLM. The model is built here (a random-init ~30M Qwen2-VL, bfloat16): no hub access.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/gpu_out}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
PY=.venv-gpu/bin/python

nvidia-smi >"$OUT/nvidia-smi.txt"
if ! "$PY" -c "import vllm" 2>/dev/null; then
    "${PYTHON:-python3}" -m venv .venv-gpu
    "$PY" -m pip install --quiet -e '.[vllm,dev]' 2>&1 | tee "$OUT/pip.txt"
fi
"$PY" -m pip check >>"$OUT/pip.txt" 2>&1 || true

# The same contract and pre-flight tests the CPU runs with hf, now also with vllm (a failure still lets the bench run).
# test_tiny_model builds the stock processor with this torchvision; test_engine_lifecycle has vLLM's arguments.
"$PY" -m pytest -q -p no:cacheprovider vlm_rl_assets_tests/test_engine.py vlm_rl_assets_tests/test_preflight.py \
    vlm_rl_assets_tests/test_tiny_model.py vlm_rl_assets_tests/test_engine_lifecycle.py 2>&1 | tee "$OUT/pytest.txt" || true

# hf: batched transformers generate on the GPU; vllm: offline LLM with half the GPU (hf holds its model too) and a
# 4 GiB KV cache: the small model's 8 KiB a token (8 layers x 4 KV heads x 64 x K and V x bf16) makes ~520k tokens,
# more than the 2,048 sequences need; unbounded it would be all the half leaves after the weights.
"$PY" bench/rollouts.py --engines hf,vllm --device cuda --model random --size small --bf16 \
    --prompts 256 --samples 8 --max-new-tokens 64 --batch-size 1024 --reps 3 --vllm-memory 0.5 --vllm-kv-cache-gib 4 \
    --write "$OUT/results.md" 2>&1 | tee "$OUT/bench.txt"
