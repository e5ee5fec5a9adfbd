"""
What a SAIE step costs next to an SFT step on the same batch.

One SAIE step = the learner's turns (one batched generate call) + the partner's remarks
(another) + one AdamW update on the discussion and plain sequences. One SFT step = the
update on the plain sequences alone. Random weights never emit their end-of-turn token,
so every turn runs to --turn-tokens: the worst case. Each part counts as its best over --steps timed steps.

    python bench/discuss.py                      # tiny (the arith default) and GPT-2 124M shapes, CPU;
                                                 # 124M on arith and on GSM8K (the task that shape trains on)
    python bench/discuss.py --shapes tiny --steps 5
    python bench/discuss.py --device cuda --dtype bfloat16 --shapes 124M 1B

The 1B shape is Llama 3.2 1B's layers with GPT-2's vocabulary: Llama's tokenizer file cannot be had offline,
and a 128k-row head would sample ids the GPT-2 tokenizer cannot decode.

The 124M and 1B shapes need the GPT-2 BPE files, which tiktoken fetches into its own cache (TIKTOKEN_CACHE_DIR
when set); GSM8K comes from --data-dir, else from ~/.cache/saie/data (downloaded once; $SAIE_CACHE moves it).
"""
import argparse
import dataclasses
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch

import data
import discuss
from model import GPT, GPTConfig
from data import cli
from saie import micro_step

from common import machine_name, our_config  # noqa: E402

SHAPES = {  # name: (tokenizer, model config)
    "tiny": ("arith", GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=256)),  # saie.py's scratch model
    "124M": ("gpt2", our_config("gpt2")),
    "1B": ("gpt2", our_config("llama3.2-1b")),
}


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def update(model, opt, tok, seqs, weights, device, autocast):
    """train()'s update without its gradient clipping: micro_step (length groups, loss on supervised tokens), AdamW."""
    idx, targets = data.make_batch(tok, seqs, model.config.block_size)
    micro_step(model, idx, targets, torch.tensor(weights), device, autocast=autocast)
    opt.step()
    opt.zero_grad(set_to_none=True)


def bench(shape, task_name, args):
    tok_name, cfg = SHAPES[shape]
    tok, task = data.get_tokenizer(tok_name), data.get_task(task_name)
    cfg = dataclasses.replace(cfg, vocab_size=tok.n_vocab)
    torch.manual_seed(0)
    learner = GPT(cfg).to(args.device)
    partner = GPT(cfg).to(args.device)
    partner.requires_grad_(False).eval()
    opt = torch.optim.AdamW(learner.parameters(), lr=1e-4)
    autocast = (torch.autocast("cuda", dtype=getattr(torch, args.dtype)) if args.device.startswith("cuda")
                and args.dtype != "float32" else nullcontext())
    examples = task.load("train", args.data_dir)[: args.batch_size]
    lspk = discuss.Speaker(learner, tok, args.turn_tokens, temperature=0.7)
    pspk = discuss.Speaker(partner, tok, args.turn_tokens)
    stances = discuss.stances_for(len(examples), "both", random.Random(0))
    plain = [discuss.answer_sequence(tok, task, ex) for ex in examples]

    times = []  # (generation, SAIE update, SFT step) of each timed step
    for step in range(args.steps + 1):  # the first step warms up and is not counted
        sync(args.device); t0 = time.perf_counter()
        trs = discuss.discuss(lspk, pspk, task, examples, stances, rounds=1, seed=step)
        sync(args.device); t1 = time.perf_counter()
        seqs = [discuss.learner_sequence(tok, tr, task.target(ex)) for tr, ex in zip(trs, examples)] + plain
        update(learner, opt, tok, seqs, [1.0] * len(seqs), args.device, autocast)
        sync(args.device); t2 = time.perf_counter()
        update(learner, opt, tok, plain, [1.0] * len(plain), args.device, autocast)
        sync(args.device); t3 = time.perf_counter()
        if step:
            times.append((t1 - t0, t2 - t1, t3 - t2))
    t_gen, t_saie_update, t_sft = (min(column) for column in zip(*times))  # best of the steps: a busy host adds, never removes
    saie = t_gen + t_saie_update
    print(f"{shape:>5} | {task_name:>5} | {learner.num_params() / 1e6:7.2f}M | batch {args.batch_size} | turns {args.turn_tokens} tok"
          f" | SFT step {t_sft * 1e3:8.1f} ms | SAIE step {saie * 1e3:8.1f} ms"
          f" (generation {t_gen / saie:.0%}, update {t_saie_update / saie:.0%})"
          f" | overhead SAIE/SFT {saie / t_sft:.1f}x", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["tiny", "124M"], choices=SHAPES)
    p.add_argument("--tasks", nargs="+", default=["arith", "gsm8k"], choices=["arith", "gsm8k"],
                   help="gsm8k runs at the GPT-2-vocabulary shapes only (124M, 1B), from --data-dir or the download cache")
    p.add_argument("--data-dir", help="local copy of GSM8K's files (default: its download cache)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--turn-tokens", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}"
          f" ({machine_name(torch.device(args.device))}), {args.dtype}")
    for shape in args.shapes:
        for task in args.tasks:
            if task == "arith" or shape != "tiny":
                bench(shape, task, args)


if __name__ == "__main__":
    cli(main, "bench/discuss.py")
