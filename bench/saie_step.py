"""Where one SAIE step of the embedded default spends its time.

The default's shape exactly: the shipped warm-up (assets/arith-warmup.pt) as learner and frozen
partner, task arith, batch 64, turns of up to saie.py's --max-turn-tokens (24 on arith), saie.py's
own batches and update. Timed by
wrapping the model's steps, so the parts add up: per generate call the prefill, each decode step
(and how many rows were still live), sampling, and the rest (Python and tensor bookkeeping); then
the update's tokens, padding and time. The figures are means over --steps SAIE steps after an
untimed one.

    python bench/saie_step.py
    python bench/saie_step.py --steps 5 --threads 2
    python bench/saie_step.py --spin                    # idle OpenMP threads spin, as saie.py lets
    python bench/saie_step.py --passive                 # them on an idle machine, or sleep at once
    python bench/saie_step.py --max-turn-tokens 20      # any other flag goes to saie.py's parser
"""
import argparse
import copy
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Read when torch loads: without a flag, saie.py (imported first) chooses as it does for a run.
if "--spin" in sys.argv:
    os.environ["GOMP_SPINCOUNT"] = "300000"  # libgomp's default spin; it overrides PASSIVE
elif "--passive" in sys.argv:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
import saie  # noqa: E402 (before torch)

WAIT_POLICY = (f"GOMP_SPINCOUNT {os.environ['GOMP_SPINCOUNT']}" if "GOMP_SPINCOUNT" in os.environ
               else os.environ.get("OMP_WAIT_POLICY", "spin (OpenMP's default)"))

import torch  # noqa: E402

import data  # noqa: E402
import discuss  # noqa: E402
import model as model_module  # noqa: E402
from model import GPT  # noqa: E402


class Clock:
    """Seconds and calls per name, from wrapped functions; name() returning None skips a call."""

    def __init__(self):
        self.t, self.n = defaultdict(float), defaultdict(int)

    def wrap(self, obj, attr, name):
        fn = getattr(obj, attr)

        def timed(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            key = name(*a, **k)
            if key is not None:
                self.t[key] += time.perf_counter() - t0
                self.n[key] += 1
            return out
        setattr(obj, attr, timed)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3, help="timed SAIE steps (after one untimed)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--data-dir", help="local copy of the task's files (default: the task's own; arith is "
                   "generated in code)")
    p.add_argument("--spin", action="store_true", help="idle OpenMP threads spin a while before they "
                   "sleep (saie.py's choice on an idle machine)")
    p.add_argument("--passive", action="store_true", help="idle OpenMP threads sleep at once "
                   "(saie.py's choice on a busy machine)")
    a, rest = p.parse_known_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    args = saie.parse_args((["--data-dir", a.data_dir] if a.data_dir else []) + rest)
    torch.manual_seed(args.seed)
    task = data.get_task(args.task)
    train_set = task.load("train", args.data_dir)
    n_warm = int(len(train_set) * args.warmup_frac)
    main_set = random.Random(0).sample(train_set, len(train_set))[n_warm:]  # as saie.main splits it
    learner = GPT.from_pretrained(args.init)
    tok = data.get_tokenizer(learner.tokenizer_spec)
    partner = copy.deepcopy(learner).requires_grad_(False).eval()
    opt = saie.make_optimizer(learner, args, args.lr["saie"], args.device)
    lspk = discuss.Speaker(learner, tok, args.max_turn_tokens, temperature=args.temperature)
    pspk = discuss.Speaker(partner, tok, args.max_turn_tokens, temperature=args.partner_temperature)

    clock = Clock()
    live = defaultdict(int)  # decode steps by the number of rows still in the batch
    late = [0]  # decode steps past a turn's 20th token
    generating = []

    def step_kind(idx, pos, cache=None, start=0, *_, **__):
        if not generating:  # the update's forward
            return None
        if idx.size(1) > 1:
            generating.append(idx.size(1))  # the prompts' length: where decoding starts
            return "prefill"
        live[idx.size(0)] += 1
        if start - generating[-1] >= 20:  # this step feeds the 21st token of a turn or a later one
            late[0] += 1
        return "decode"

    for m in (learner, partner):
        clock.wrap(m, "hidden", step_kind)
        clock.wrap(m.lm_head, "forward", lambda *_, **__: "lm_head" if generating else None)
        clock.wrap(m, "generate", lambda *_, **__: generating.clear() or "generate")
        inner = m.generate
        m.generate = lambda *a, inner=inner, **kw: generating.append(True) or inner(*a, **kw)
    clock.wrap(model_module, "_sample", lambda *_, **__: "sampling")

    batches = saie.saie_batches(lspk, pspk, tok, task, main_set, args, 0, 1, 0, None)
    part = defaultdict(float)
    for step in range(a.steps + 1):
        if step == 1:  # the first step warms up: forget it
            clock.t.clear(), clock.n.clear(), live.clear(), part.clear()
            late[0] = 0
        t0 = time.perf_counter()
        seqs, weights, _ = next(batches)
        t1 = time.perf_counter()
        idx, targets = data.make_batch(tok, seqs, learner.config.block_size)
        t2 = time.perf_counter()
        _, n = saie.micro_step(learner, idx, targets, torch.tensor(weights), args.device)
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(learner.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        ends = [int(r.nonzero().max()) + 1 for r in targets != -100]  # as in data.length_groups
        for key, v in (("discussion", t1 - t0), ("make_batch", t2 - t1),
                       ("forward + backward", t3 - t2), ("clip + AdamW", t4 - t3),
                       ("total", t4 - t0), ("rows", len(seqs)), ("positions run", n),
                       ("positions needed", sum(ends)), ("one padded batch", idx.numel()),
                       ("supervised", int((targets != -100).sum()))):
            part[key] += v

    k, t, n = a.steps, clock.t, clock.n
    per = {key: v / k for key, v in part.items()}
    print(f"# one SAIE step of the embedded default: {args.task}, batch {args.batch_size}, turns "
          f"<= {args.max_turn_tokens} tokens; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads"
          f", idle threads: {WAIT_POLICY}; mean of {k} steps")
    print(f"{'part':<40} {'ms/step':>8} {'share':>6}  note")

    def row(name, sec, note=""):
        print(f"{name:<40} {sec / k * 1e3:8.1f} {sec / part['total']:6.0%}  {note}")

    n_dec = max(n["decode"], 1)
    rows = sum(r * c for r, c in live.items()) / n_dec
    rest = t["generate"] - t["prefill"] - t["decode"] - t["lm_head"] - t["sampling"]
    row("generation", t["generate"], f"{n['generate'] / k:.0f} generate calls")
    row("  prefill (model)", t["prefill"])
    row("  decode steps (model)", t["decode"], f"{n['decode'] / k:.0f} steps, "
        f"{t['decode'] / n_dec * 1e3:.2f} ms each, {rows:.1f} rows live on average")
    row("  lm_head (prefill and decode)", t["lm_head"])
    row("  sampling", t["sampling"])
    row("  rest of generate (Python, masks, rows)", rest,
        f"{rest / n_dec * 1e3:.2f} ms per decode step")
    row("rendering, text, scoring", part["discussion"] - t["generate"])
    row("make_batch", part["make_batch"])
    row("update: forward + backward", part["forward + backward"],
        f"{per['rows']:.0f} rows, {per['positions run']:.0f} positions run "
        f"({1 - per['positions needed'] / per['positions run']:.0%} padding; one padded batch: "
        f"{per['one padded batch']:.0f}), {per['supervised']:.0f} supervised")
    row("update: clip + AdamW", part["clip + AdamW"])
    row("total", part["total"])
    print(f"# decode steps past a turn's 20th token: {late[0] / k:.1f} per SAIE step")
    print("# decode steps per SAIE step by rows live: "
          + ", ".join(f"{r}: {c / k:.1f}" for r, c in sorted(live.items(), reverse=True)))


if __name__ == "__main__":
    main()
