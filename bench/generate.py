"""Batched greedy generation: ours vs Hugging Face `generate` on identical weights (random init).

    python bench/generate.py                      # GPT-2 124M shape, batches 1, 16, 64; fp32 CPU
    python bench/generate.py --batch 1,16 --new 32
    python bench/generate.py --device cuda --dtype bfloat16 --compile
    python bench/generate.py --shape llama3.2-1b --device cuda --dtype bfloat16

Prompts have mixed lengths (96..128 tokens): ours left-pads them itself, HF gets left padding + attention_mask.
Both generate exactly --new tokens per row (no stop token); best of --repeat alternating runs. Reported: new tokens / wall time (prefill included),
and decode-only rates (prefill timed separately with a 1-token run and subtracted). The roofline is the
decode step's time bound max(bytes / bandwidth, flops / peak) for weights + KV cache, from the measured (or
--bandwidth / --peak-gflops given) figures of this machine.
"""
import argparse
import time

import torch

from common import SHAPES, hf_model, machine_name, matmul_params, measure_machine, ours_from, timed
from data import cli


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="gpt2", choices=SHAPES)
    ap.add_argument("--batch", default="1,16,64", help="comma-separated batch sizes")
    ap.add_argument("--new", type=int, default=64, help="new tokens per row")
    ap.add_argument("--prompt", type=int, default=128, help="longest prompt; others are 75-100%% of it")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--compile", action="store_true", help="torch.compile our model (GPU)")
    ap.add_argument("--bandwidth", type=float, help="GB/s for the roofline (default: measured)")
    ap.add_argument("--peak-gflops", type=float, help="GFLOP/s for the roofline (default: measured)")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs of each; the best counts")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also print where our time goes (torch.profiler over one generate call)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    hf = hf_model(args.shape)
    ours = ours_from(hf, dtype, device)
    hf = hf.to(device=device, dtype=dtype)
    hf.generation_config.pad_token_id = 0
    if args.compile:
        ours.hidden = torch.compile(ours.hidden, dynamic=True)

    bw, peak = measure_machine(device, dtype)
    bw_src = "given" if args.bandwidth else "measured"
    bw, peak = args.bandwidth or bw, args.peak_gflops or peak
    cfg, elt = ours.config, ours.wte.weight.element_size()
    weight_bytes = matmul_params(ours) * elt  # read once per decode step (embedding lookups are a few rows)
    print(f"# {args.shape} shape, {args.dtype} on {device} ({machine_name(device)}), torch {torch.__version__}, {torch.get_num_threads()} threads;"
          f" {bw:.1f} GB/s and {peak:.0f} GFLOP/s ({bw_src}); weights {weight_bytes / 1e6:.1f} MB")
    print(f"{'batch':>5} {'ours tok/s':>11} {'HF tok/s':>9} {'ratio':>6} | {'decode ours':>11} {'decode HF':>9}"
          f" {'ratio':>6} | {'roofline':>8} {'ours/roof':>9}")

    for B in [int(b) for b in args.batch.split(",")]:
        g = torch.Generator().manual_seed(B)
        lens = torch.randint(args.prompt * 3 // 4, args.prompt + 1, (B,), generator=g).tolist()
        lens[0] = args.prompt
        prompts = [torch.randint(1, cfg.vocab_size, (n,), generator=g).tolist() for n in lens]

        def run_ours(n):
            return ours.generate(prompts, n)

        ids = torch.zeros(B, args.prompt, dtype=torch.long)
        mask = torch.zeros(B, args.prompt, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, args.prompt - len(p):] = torch.tensor(p)
            mask[i, args.prompt - len(p):] = 1
        ids, mask = ids.to(device), mask.to(device)

        def run_hf(n):
            with torch.inference_mode():
                return hf.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False)

        run_ours(args.new), run_ours(1)  # warm up (and compile every step shape the timed runs use)
        if not args.skip_hf:
            run_hf(2)
        t_ours = t_ours1 = t_hf = t_hf1 = float("inf")
        for _ in range(args.repeat):  # alternate the two, keep each one's best: fair under a noisy machine
            t_ours = min(t_ours, timed(lambda: run_ours(args.new), device))
            t_ours1 = min(t_ours1, timed(lambda: run_ours(1), device))
            if not args.skip_hf:
                t_hf = min(t_hf, timed(lambda: run_hf(args.new), device))
                t_hf1 = min(t_hf1, timed(lambda: run_hf(1), device))
        out = run_ours(args.new)
        assert all(len(r) == args.new for r in out)
        same = 0
        if not args.skip_hf:
            hf_out = run_hf(args.new).cpu()
            assert hf_out.shape[1] == args.prompt + args.new
            same = sum(r == h[args.prompt:].tolist() for r, h in zip(out, hf_out))

        # Decode roofline at the average cache length: weights + KV cache read once per step.
        S = args.prompt + args.new // 2
        kv_bytes = B * S * cfg.n_layer * 2 * cfg.n_kv_head * (cfg.n_embd // cfg.n_head) * elt
        flops = 2 * B * matmul_params(ours) + 4 * B * S * cfg.n_embd * cfg.n_layer
        roof = B / max((weight_bytes + kv_bytes) / (bw * 1e9), flops / (peak * 1e9))
        n = B * args.new
        dec_ours, dec_hf = B * (args.new - 1) / (t_ours - t_ours1), B * (args.new - 1) / (t_hf - t_hf1)
        print(f"{B:5d} {n / t_ours:11.1f} {n / t_hf:9.1f} {t_hf / t_ours:5.2f}x | {dec_ours:11.1f} {dec_hf:9.1f}"
              f" {dec_ours / dec_hf:5.2f}x | {roof:8.0f} {dec_ours / roof:8.0%}   (same greedy rows as HF: {same}/{B})",
              flush=True)
        if args.profile:
            from torch.profiler import profile
            with profile() as prof:
                run_ours(args.new)
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8)
            print(f"# our generate call, batch {B}: self time of the top ops (prefill included; per decode step"
                  f" ~ total / {args.new - 1})\n{table}")


if __name__ == "__main__":
    cli(main, "bench/generate.py")
