"""One AdamW training step (forward + backward + step): ours vs Hugging Face, on the same model shape.

    python bench/train.py                         # GPT-2 124M shape, batch 8 x 256 tokens, fp32 CPU
    python bench/train.py --device cuda --dtype bfloat16 --compile
    python bench/train.py --shape llama3.2-1b --device cuda --dtype bfloat16 --compile

Each model runs in its own subprocess, so the peak memory of one does not hide the other's. Weights and
AdamW state stay fp32; --dtype bfloat16 trains under bf16 autocast, as saie.py does. Both sides get the same
optimizer (torch AdamW, lr 3e-4, weight decay 0.1; fused on CUDA) and --compile alike; HF's dropout is 0
(ours has none). Reported: tokens/s as the best of --steps timed steps after one warm-up step, peak memory
(process RSS; on CUDA also the GPU's), and MFU: model FLOPs per token (6 per matmul weight + 12 x layers x
width x sequence for attention, as nanoGPT counts them) x tokens/s over the peak: the datasheet's dense bf16
figure for a known GPU, otherwise this machine's measured matmul rate in --dtype.
"""
import argparse
import json
import resource
import subprocess
import sys
import time
from contextlib import nullcontext

import torch

from common import SHAPES, hf_model, machine_name, matmul_params, measure_machine, our_model, sync
from data import cli

DATASHEET_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16 tensor-core peaks


def run_one(args):
    """In the subprocess: build one model, time its steps, print one JSON line."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = (our_model(args.shape) if args.impl == "ours" else hf_model(args.shape)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=device.type == "cuda")
    fwd = torch.compile(model) if args.compile else model
    autocast = (torch.autocast(device.type, dtype=getattr(torch, args.dtype)) if args.dtype != "float32"
                else nullcontext())
    idx = torch.randint(0, model.config.vocab_size, (args.batch, args.seq + 1), device=device)

    def step():
        with autocast:
            if args.impl == "ours":
                _, loss = fwd(idx[:, :-1], idx[:, 1:])
            else:  # HF shifts the labels itself
                loss = fwd(input_ids=idx[:, :-1], labels=idx[:, :-1]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)

    step()  # warm-up: allocates the optimizer state (and compiles)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    out = {"tok_s": args.batch * args.seq / min(times), "step_s": min(times), "rss_mib": peak, "gpu_mib": gpu_peak}
    if args.impl == "ours":  # both sides have this shape; our modules say what it costs
        c = model.config
        out["flops_per_token"] = 6 * matmul_params(model) + 12 * c.n_layer * c.n_embd * args.seq
        out["params"] = model.num_params()
    print(json.dumps(out))


def peak_flops(args):
    """(FLOP/s, where the figure comes from) for the MFU column."""
    device = torch.device(args.device)
    if device.type == "cuda" and args.dtype == "bfloat16":
        name = torch.cuda.get_device_name(device)
        for key, tflops in DATASHEET_TFLOPS.items():
            if key in name:
                return tflops * 1e12, f"{name} datasheet dense bf16 {tflops:.0f} TFLOP/s"
    gflops = measure_machine(device, getattr(torch, args.dtype))[1]
    return gflops * 1e9, f"measured {args.dtype} matmul {gflops:.0f} GFLOP/s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="gpt2", choices=SHAPES)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (best is reported)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="autocast dtype")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--impl", choices=["ours", "hf"], help=argparse.SUPPRESS)  # the subprocess's job
    args = ap.parse_args()
    if args.impl:
        return run_one(args)

    results = {}
    for impl in ("ours", "hf"):
        cmd = [sys.executable, __file__, "--impl", impl] + sys.argv[1:]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:  # the child's own words: one line for our errors, a traceback for a bug
            sys.stderr.write(proc.stderr)
            sys.exit(proc.returncode)
        results[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
    o, h = results["ours"], results["hf"]
    peak, source = peak_flops(args)
    print(f"# {args.shape} shape ({o['params'] / 1e6:.1f}M), batch {args.batch} x {args.seq}, {args.dtype} on"
          f" {args.device} ({machine_name(torch.device(args.device))}){', compiled' if args.compile else ''}, AdamW, torch {torch.__version__}, best of"
          f" {args.steps} steps; MFU against {source}")
    print(f"{'':5} {'tok/s':>8} {'step s':>7} {'MFU':>5} {'peak RSS MiB':>13}")
    for name, r in (("ours", o), ("HF", h)):
        gpu = f"  (GPU peak {r['gpu_mib']:.0f} MiB)" if r["gpu_mib"] else ""
        mfu = r["tok_s"] * o["flops_per_token"] / peak
        print(f"{name:5} {r['tok_s']:8.1f} {r['step_s']:7.2f} {mfu:5.0%} {r['rss_mib']:13.0f}{gpu}")
    print(f"ratio {o['tok_s'] / h['tok_s']:.2f}x speed, {o['rss_mib'] / h['rss_mib']:.2f}x memory")


if __name__ == "__main__":
    cli(main, "bench/train.py")
