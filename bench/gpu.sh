#!/bin/sh
# Every GPU benchmark figure in one command, from anywhere in the repository:
#     sh bench/gpu.sh
# and the full study on one GPU (GSM8K, pretrained instruct models, their partners prompted):
#     sh bench/gpu.sh study
# bf16 (autocast for training; weights cast for generation), GPT-2 124M and Llama 3.2 1B shapes, each against
# HF transformers in the same run; train.py prints MFU against the GPU's datasheet bf16 peak.
# Needs a CUDA build of torch, and transformers. bench/discuss.py also needs the GPT-2 BPE files and, for its
# gsm8k rows, GSM8K: with no network, put copies in ./shared/tiktoken_cache and ./shared/data (git-ignored).
#
# Made for a lent machine's few minutes: the headline figures come first (generation at batch 64, training
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
if [ "${1:-}" = study ]; then
    # SAIE against SFT from pretrained instruct models on GSM8K (7,473 training questions, 1 in 20 held
    # out for validation; test 1,319 once), the partner the same model frozen and prompted with its
    # stance, the best step on 200 validation questions every 100 steps. Estimated times on one H100
    # (not yet measured on a GPU: from the CPU step costs in docs/results.md, "A pretrained instruct
    # model", and bench/generate.py's decode rates; a SAIE step is dominated by two batched 256-token
    # turns): SmolLM2-360M about 2 h, SmolLM2-1.7B about 5 h, Llama 3.2 1B (gated: HF_TOKEN) about 4 h.
    for init in HuggingFaceTB/SmolLM2-360M-Instruct HuggingFaceTB/SmolLM2-1.7B-Instruct \
                meta-llama/Llama-3.2-1B-Instruct; do
        for seed in 1337 1 2; do
            $PY saie.py --task gsm8k --init "$init" $data $gpu --seed "$seed" --batch-size 8 \
                --grad-accum 2 --warmup-steps 200 --steps 1000 --eval-every 100 --select-best \
                --curve-limit 200 --out "out/study/$(basename "$init")-$seed" --resume
        done
    done 2>&1 | tee "${OUT:-.}/study.log"
    exit
fi
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
