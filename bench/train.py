"""One AdamW training step (forward + backward + step): ours vs Hugging Face GPT2LMHeadModel, GPT-2 124M shape.

    python bench/train.py                         # batch 8 x 256 tokens, fp32 CPU
    python bench/train.py --device cuda --dtype bfloat16 --compile

Each model runs in its own subprocess, so the peak RSS (ru_maxrss) of one does not hide the other's.
HF's dropout is set to 0 (ours has none); both use torch.optim.AdamW(lr=3e-4, weight_decay=0.1) defaults otherwise.
Reported: tokens/s as the best of --steps timed steps after one warm-up step, and the process's peak RSS.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def run_one(args):
    """In the subprocess: build one model, time its steps, print one JSON line."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    if args.impl == "ours":
        sys.path.insert(0, ROOT)
        from model import GPT, GPTConfig
        model = GPT(GPTConfig())
    else:
        from transformers import GPT2Config, GPT2LMHeadModel
        model = GPT2LMHeadModel(GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    model = model.to(device=device, dtype=dtype).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    fwd = torch.compile(model) if args.compile else model
    idx = torch.randint(0, 50257, (args.batch, args.seq + 1), device=device)

    def step():
        if args.impl == "ours":
            _, loss = fwd(idx[:, :-1], idx[:, 1:])
        else:  # HF shifts the labels itself
            loss = fwd(input_ids=idx[:, :-1], labels=idx[:, :-1]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: allocates the optimizer state (and compiles)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    print(json.dumps({"tok_s": args.batch * args.seq / min(times), "step_s": min(times), "rss_mib": peak,
                      "gpu_mib": gpu_peak}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (best is reported)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--impl", choices=["ours", "hf"], help=argparse.SUPPRESS)  # the subprocess's job
    args = ap.parse_args()
    if args.impl:
        return run_one(args)

    results = {}
    for impl in ("ours", "hf"):
        cmd = [sys.executable, __file__, "--impl", impl] + sys.argv[1:]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[impl] = json.loads(out.strip().splitlines()[-1])
    o, h = results["ours"], results["hf"]
    print(f"# GPT-2 124M shape, batch {args.batch} x {args.seq}, {args.dtype} on {args.device}, AdamW, "
          f"torch {torch.__version__}, best of {args.steps} steps")
    print(f"{'':5} {'tok/s':>8} {'step s':>7} {'peak RSS MiB':>13}")
    for name, r in (("ours", o), ("HF", h)):
        gpu = f"  (GPU peak {r['gpu_mib']:.0f} MiB)" if r["gpu_mib"] else ""
        print(f"{name:5} {r['tok_s']:8.1f} {r['step_s']:7.2f} {r['rss_mib']:13.0f}{gpu}")
    print(f"ratio {o['tok_s'] / h['tok_s']:.2f}x speed, {o['rss_mib'] / h['rss_mib']:.2f}x memory")


if __name__ == "__main__":
    main()
