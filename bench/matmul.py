"""Why decoding on CPU stays far from its roofline: the GPT-2 124M linear layers at decode sizes.

For a few rows x (rows, in) and a weight W (out, in), three ways to compute x @ W^T on CPU fp32:
  linear  F.linear, what model.py (and HF) run;
  W x^T   the same product as (W @ x^T)^T, which MKL runs with a different kernel;
  packed  MKL's prepacked weights (torch.ops.mkl), the kernel torch.compile's CPU freezing uses; it needs a
          second, packed copy of every weight matrix, which this project does not want.
Prints ms per call and each variant's speed relative to F.linear (> 1: faster).

    python bench/matmul.py
    python bench/matmul.py --rows 16 --threads 1
"""
import argparse
import time

import torch
import torch.nn.functional as F

SHAPES = {"c_attn": (2304, 768), "attn.c_proj": (768, 768), "c_fc": (3072, 768), "mlp.c_proj": (768, 3072),
          "lm_head": (50257, 768)}


def ms(fn, budget=0.3):
    fn(), fn()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < budget:
        fn()
        n += 1
    return (time.perf_counter() - t) / n * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1,2,4,8,16,32,64", help="comma-separated row counts (the batch when decoding)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads; ms per call (speed vs F.linear)")
    print(f"{'rows':>4} {'layer':>12} {'linear':>8} {'W x^T':>15} {'packed':>15}")
    torch.manual_seed(0)
    for rows in [int(r) for r in args.rows.split(",")]:
        for name, (out, inp) in SHAPES.items():
            w, b, x = torch.randn(out, inp) * 0.02, torch.zeros(out), torch.randn(rows, inp)
            base = ms(lambda: F.linear(x, w, b))
            wxt = ms(lambda: torch.addmm(b[:, None], w, x.T).T)
            try:
                packed_w = torch.ops.mkl._mkl_reorder_linear_weight(w, rows)
                packed = ms(lambda: torch.ops.mkl._mkl_linear(x, packed_w, w, b, rows))
                packed_s = f"{packed:7.3f} ({base / packed:4.2f}x)"
            except (RuntimeError, AttributeError):  # a torch built without MKL
                packed_s = "n/a"
            print(f"{rows:4d} {name:>12} {base:8.3f} {wxt:7.3f} ({base / wxt:4.2f}x) {packed_s:>15}", flush=True)


if __name__ == "__main__":
    main()
