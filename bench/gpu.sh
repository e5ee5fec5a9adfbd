#!/bin/sh
# Every GPU figure of issue #6 in one command, from anywhere in the repository:
#     sh bench/gpu.sh
# bf16 (autocast for training; weights cast for generation), GPT-2 124M and Llama 3.2 1B shapes, each against
# HF transformers in the same run; train.py prints MFU against the GPU's datasheet bf16 peak.
# Needs a CUDA build of torch, and transformers. bench/discuss.py also needs the GPT-2 BPE files and, for its
# gsm8k rows, GSM8K: with no network, put copies in ./shared/tiktoken_cache and ./shared/data (git-ignored).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
data=""
if [ -d shared/tiktoken_cache ]; then export TIKTOKEN_CACHE_DIR="$PWD/shared/tiktoken_cache"; fi
if [ -d shared/data ]; then data="--data-dir shared/data"; fi
gpu="--device cuda --dtype bfloat16"
set -x
$PY bench/generate.py $gpu
$PY bench/generate.py $gpu --compile
$PY bench/generate.py $gpu --shape llama3.2-1b
$PY bench/train.py $gpu
$PY bench/train.py $gpu --compile
$PY bench/train.py $gpu --compile --shape llama3.2-1b
$PY bench/discuss.py $gpu --shapes 124M 1B $data
