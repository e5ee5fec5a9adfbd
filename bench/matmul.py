"""Why decoding on CPU stays far from its roofline: the GPT-2 124M linear layers at decode sizes.

For a few rows x (rows, in) and a weight W (out, in), three ways to compute x @ W^T on CPU fp32:
  linear  F.linear, what model.py (and HF) run;
  W x^T   the same product as (W @ x^T)^T, which MKL runs with a different kernel;
  packed  MKL's prepacked weights (torch.ops.mkl), the kernel torch.compile's CPU freezing uses; it needs a
          second, packed copy of every weight matrix, which this project does not want.
Prints ms per call and each variant's speed relative to F.linear (> 1: faster). One layer's weights stay in
cache between calls, which a decode step never allows: the last table runs a whole step's matmuls the way
generate does (12 layers' own weights, then lm_head: 500 MB streamed per step) with F.linear and W x^T, and
sets the rate the weights are read at against a plain read (a sum) of 1 GiB.

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

    big = torch.ones(2**28)  # 1 GiB
    read = 4 * big.numel() / ms(lambda: big.sum(), budget=1.0) / 1e6
    layers = [[(torch.randn(out, inp) * 0.02, torch.zeros(out)) for out, inp in list(SHAPES.values())[:4]]
              for _ in range(12)]
    head = torch.randn(50257, 768) * 0.02
    step_bytes = 4 * (sum(w.numel() for layer in layers for w, _ in layer) + head.numel())
    print(f"# one decode step's matmuls, {step_bytes / 1e6:.0f} MB of weights; a plain read of 1 GiB runs at"
          f" {read:.1f} GB/s")
    print(f"{'rows':>4} {'linear ms':>10} {'GB/s':>6} {'GFLOP/s':>8} {'W x^T ms':>9}")
    for rows in [int(r) for r in args.rows.split(",")]:
        x, x4 = torch.randn(rows, 768), torch.randn(rows, 3072)

        def step(linear):
            for layer in layers:
                for w, b in layer:
                    linear(x4 if w.size(1) == 3072 else x, w, b)
            linear(x, head, None)
        base = ms(lambda: step(F.linear), budget=1.0)
        wxt = ms(lambda: step(lambda x, w, b: (w @ x.T if b is None else torch.addmm(b[:, None], w, x.T)).T), 1.0)
        print(f"{rows:4d} {base:10.1f} {step_bytes / base / 1e6:6.1f} {rows * step_bytes / 2 / base / 1e6:8.1f}"
              f" {wxt:9.1f}", flush=True)


if __name__ == "__main__":
    main()
