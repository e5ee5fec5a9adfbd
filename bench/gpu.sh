#!/bin/sh
# Every GPU figure of issue #6 in one command, from anywhere in the repository:
#     sh bench/gpu.sh
# bf16 (autocast for training; weights cast for generation), GPT-2 124M and Llama 3.2 1B shapes, each against
# HF transformers in the same run; train.py prints MFU against the GPU's datasheet bf16 peak.
# Needs a CUDA build of torch, and transformers. bench/discuss.py also needs the GPT-2 BPE files and, for its
# gsm8k rows, GSM8K: with no network, put copies in ./shared/tiktoken_cache and ./shared/data (git-ignored).
#
# Made for a lent machine's few minutes: the figures #6 targets come first (generation at batch 64, training
# MFU with --compile), each step is cut at $STEP_TIMEOUT seconds (default 240) and a failing step does not
# stop the next. Everything printed also goes to $OUT/gpu.log (./gpu.log without $OUT); the last lines list
# each step's exit status and seconds. Not yet run on a GPU: no GPU has been lent to this project so far.
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG=${OUT:-.}/gpu.log
export PYTHONUNBUFFERED=1 HF_HUB_DISABLE_PROGRESS_BARS=1  # keep the output tail for the figures
data=""
if [ -d shared/tiktoken_cache ]; then export TIKTOKEN_CACHE_DIR="$PWD/shared/tiktoken_cache"; fi
if [ -d shared/data ]; then data="--data-dir shared/data"; fi
gpu="--device cuda --dtype bfloat16"
summary=""
step() {  # run one benchmark, cut at $STEP_TIMEOUT; note its exit status (124: cut) and seconds
    echo "+ $*"
    start=$(date +%s)
    timeout "${STEP_TIMEOUT:-240}" $PY "$@"
    rc=$?
    summary="$summary
rc $rc, $(($(date +%s) - start)) s: $*"
}
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
    step bench/generate.py $gpu
    step bench/train.py $gpu --compile
    step bench/generate.py $gpu --shape llama3.2-1b
    step bench/train.py $gpu --compile --shape llama3.2-1b
    step bench/generate.py $gpu --compile
    step bench/train.py $gpu
    step bench/discuss.py $gpu --shapes 124M 1B $data
    echo "# steps$summary"
} 2>&1 | tee "$LOG"
