"""Why decoding on CPU stays far from its roofline, and why generation calls oneDNN (model.cpu_decoding):
the GPT-2 124M linear layers at decode sizes and at training sizes, fp32.

For a few rows x (rows, in) and a weight W (out, in), ways to compute x @ W^T on CPU:
  linear  F.linear, torch's default kernel (MKL), what HF runs and our training runs;
  W x^T   the same product as (W @ x^T)^T, which MKL runs with a different kernel;
  onednn  oneDNN's kernel on the same weight tensor, what our generate runs for big weights;
  packed  MKL's prepacked weights (torch.ops.mkl), the kernel torch.compile's CPU freezing uses; it needs a
          second, packed copy of every weight matrix, which this project does not want.
Prints ms per call and each variant's speed relative to F.linear (> 1: faster). One layer's weights stay in
cache between calls, which a decode step never allows: the second table runs a whole step's matmuls the way
generate does (12 layers' own weights, then lm_head: 500 MB streamed per step) and sets the rate the weights
are read at against a plain read (a sum) of 1 GiB; its last column stores each layer's weight (in, out), as
HF's GPT-2 Conv1D does, which oneDNN reads as a transposed view (lm_head stays (vocab, width): it is the
embedding too). The third times a training step's products (forward, the input's and the weight's
gradients) at 2048 rows, MKL against oneDNN.

    python bench/matmul.py
    python bench/matmul.py --rows 16 --threads 1
    python bench/matmul.py --layers arith --rows 8,64     # the arith model's small layers (first table only)
"""
import argparse
import time

import torch
import torch.nn.functional as F

from common import machine_name
from model import ONEDNN_LINEAR
from data import cli

SHAPES = {"c_attn": (2304, 768), "attn.c_proj": (768, 768), "c_fc": (3072, 768), "mlp.c_proj": (768, 3072),
          "lm_head": (50257, 768)}
ARITH_SHAPES = {"c_attn": (384, 128), "attn.c_proj": (128, 128), "c_fc": (512, 128), "mlp.c_proj": (128, 512),
                "lm_head": (40, 128)}  # saie.py's 1M-parameter scratch model: below model.ONEDNN_MIN_WEIGHT


def ms(fn, budget=0.3):
    fn(), fn()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < budget:
        fn()
        n += 1
    return (time.perf_counter() - t) / n * 1e3


def vs(base, t):
    return f"{t:7.3f} ({base / t:4.2f}x)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1,2,4,8,16,32,64", help="comma-separated row counts (the batch when decoding)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--layers", default="gpt2", choices=["gpt2", "arith"],
                    help="whose layer shapes: GPT-2 124M's (all three tables) or the arith model's (the first)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if ONEDNN_LINEAR is None:
        raise SystemExit("this torch build has no usable oneDNN linear kernel (torch.ops.mkldnn._linear_pointwise)")
    rows_list = [int(r) for r in args.rows.split(",")]
    print(f"# {machine_name(torch.device('cpu'))}, torch {torch.__version__}, {torch.get_num_threads()} threads;"
          f" ms per call (speed vs F.linear)")
    print(f"{'rows':>4} {'layer':>12} {'linear':>8} {'W x^T':>15} {'onednn':>15} {'packed':>15}")
    torch.manual_seed(0)
    for rows in rows_list:
        for name, (out, inp) in (SHAPES if args.layers == "gpt2" else ARITH_SHAPES).items():
            w, b, x = torch.randn(out, inp) * 0.02, torch.zeros(out), torch.randn(rows, inp)
            base = ms(lambda: F.linear(x, w, b))
            wxt = ms(lambda: torch.addmm(b[:, None], w, x.T).T)
            dnn = ms(lambda: ONEDNN_LINEAR(x, w, b))
            try:
                packed_w = torch.ops.mkl._mkl_reorder_linear_weight(w, rows)
                packed_s = vs(base, ms(lambda: torch.ops.mkl._mkl_linear(x, packed_w, w, b, rows)))
            except (RuntimeError, AttributeError):  # a torch built without MKL
                packed_s = "n/a"
            print(f"{rows:4d} {name:>12} {base:8.3f} {vs(base, wxt)} {vs(base, dnn)} {packed_s:>15}", flush=True)
    if args.layers == "arith":
        return

    big = torch.ones(2**28)  # 1 GiB
    read = 4 * big.numel() / ms(lambda: big.sum(), budget=1.0) / 1e6
    layers = [[(torch.randn(out, inp) * 0.02, torch.zeros(out)) for out, inp in list(SHAPES.values())[:4]]
              for _ in range(12)]
    head = torch.randn(50257, 768) * 0.02
    step_bytes = 4 * (sum(w.numel() for layer in layers for w, _ in layer) + head.numel())
    print(f"# one decode step's matmuls, {step_bytes / 1e6:.0f} MB of weights; a plain read of 1 GiB runs at"
          f" {read:.1f} GB/s")
    print(f"{'rows':>4} {'linear ms':>10} {'GB/s':>6} {'GFLOP/s':>8} {'W x^T ms':>9} {'onednn ms':>10} {'GB/s':>6}"
          f" {'GFLOP/s':>8} {'(in, out) ms':>13}")
    stored_in_out = [[(w.T.contiguous().T, b) for w, b in layer] for layer in layers]
    for rows in rows_list:
        x, x4 = torch.randn(rows, 768), torch.randn(rows, 3072)

        def step(linear, layers=layers):
            for layer in layers:
                for w, b in layer:
                    linear(x4 if w.size(1) == 3072 else x, w, b)
            linear(x, head, None)
        base = ms(lambda: step(F.linear), budget=1.0)
        wxt = ms(lambda: step(lambda x, w, b: (w @ x.T if b is None else torch.addmm(b[:, None], w, x.T)).T), 1.0)
        dnn = ms(lambda: step(ONEDNN_LINEAR), budget=1.0)
        dnn_in_out = ms(lambda: step(ONEDNN_LINEAR, stored_in_out), budget=1.0)
        rate = [f"{t:10.1f} {step_bytes / t / 1e6:6.1f} {rows * step_bytes / 2 / t / 1e6:8.1f}" for t in (base, dnn)]
        print(f"{rows:4d} {rate[0]} {wxt:9.1f} {rate[1]} {dnn_in_out:13.1f}", flush=True)

    M = 2048  # a training micro-batch: 8 sequences of 256 tokens
    print(f"# a training step's products at {M} rows, ms (forward y = x W^T, input gradient g W, weight gradient g^T x)")
    print(f"{'layer':>12} {'MKL fwd':>8} {'dx':>6} {'dW':>6} {'oneDNN fwd':>11} {'dx':>6} {'dW':>6}")
    totals = [0.0, 0.0]
    for name, (out, inp) in list(SHAPES.items())[:4]:
        w, x, g = torch.randn(out, inp), torch.randn(M, inp), torch.randn(M, out)
        mkl = [ms(lambda: F.linear(x, w)), ms(lambda: g @ w), ms(lambda: g.T @ x)]
        dnn = [ms(lambda: ONEDNN_LINEAR(x, w)), ms(lambda: ONEDNN_LINEAR(g, w.T)),
               ms(lambda: ONEDNN_LINEAR(g.T, x.T))]
        totals = [totals[0] + sum(mkl), totals[1] + sum(dnn)]
        print(f"{name:>12} {mkl[0]:8.1f} {mkl[1]:6.1f} {mkl[2]:6.1f} {dnn[0]:11.1f} {dnn[1]:6.1f} {dnn[2]:6.1f}",
              flush=True)
    print(f"# one layer's training products: MKL {totals[0]:.0f} ms, oneDNN {totals[1]:.0f} ms"
          f" ({totals[0] / totals[1]:.2f}x)")


if __name__ == "__main__":
    cli(main, "bench/matmul.py")
