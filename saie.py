"""
Train a learner with SAIE: a warm-up of plain fine-tuning, then discussions with a
frozen partner whose remarks support or oppose the learner's answers; the learner is
updated on the transcripts, the target of its next turn being the gold answer.
The baseline is plain fine-tuning (SFT) from the same warm-up, same data and steps.

The embedded default (CPU, a few minutes: task `arith`, a ~1M-parameter GPT whose
warm-up ships in assets/, then SFT and SAIE from that warm-up, then evaluation of both):
    python saie.py

Choose settings on validation, with learning curves; evaluate on test once, for the final table:
    python saie.py --eval-split validation --eval-every 50 --out out/lr-3e-4 --lr 3e-4

The same from scratch, warm-up included (about 15 minutes on 2 CPU cores); the last two
lines are how assets/arith-warmup.pt was made:
    python saie.py --init scratch
    python saie.py --init scratch --method warmup --out out/asset
    cp out/asset/warmup/model.pt assets/arith-warmup.pt

One GPU, GSM8K, GPT-2 as learner and partner:
    python saie.py --task gsm8k --init gpt2

Several GPUs (each rank discusses its own shard of every batch):
    torchrun --standalone --nproc_per_node=8 saie.py --task gsm8k --init gpt2
"""

import argparse
import copy
import itertools
import json
import math
import os
import random
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path


def choose_wait_policy():
    """Between two ops an idle OpenMP thread spins a while (OpenMP's default) or sleeps at once
    (PASSIVE). On an idle machine spinning is faster: a decode step is many short parallel ops, and
    the default run takes about a fifth less time. On a busy one a spinning thread holds the core
    its partner waits for (a SAIE step 1.5-3.4x slower beside one or two busy processes). So threads
    sleep unless the machine is idle as the run starts; a policy you set stands. Same threads, same
    work per thread: the same numbers either way."""
    if not hasattr(os, "getloadavg") or os.getloadavg()[0] >= 0.5:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


if __name__ == "__main__":  # the command only, and before torch loads (it reads the policy then)
    choose_wait_policy()

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

import data
import discuss
import eval as evaluation
from model import GPT, GPTConfig, load_checkpoint, load_model, save_checkpoint

SHIPPED_WARMUP = Path(__file__).resolve().parent / "assets" / "arith-warmup.pt"
# The discussions at evaluation: name -> (who the partner is, how it takes its stance); see eval.py.
DISCUSSIONS = {
    "honest": ("self", "honest"),       # a copy of the model answers on its own, then agrees or not
    "fixed": ("fixed", "honest"),       # the same, one partner for every learner: the same remarks
    "forced": ("self", "both"),         # a copy told to support or oppose, 50/50: a stress test
    "fixed-forced": ("fixed", "both"),  # the fixed partner told its stance (learned in warm-up)
}
# Defaults per kind of run; any flag given on the command line wins. scratch: arith's tiny model
# (from scratch or the shipped warm-up), each method with the learning rate (and SAIE the
# plain-pair weight) the study chose on validation (experiments/arith.py); 100 steps, not the
# study's 300, keep `python saie.py` within 3 minutes on 2 CPU cores; one of our checkpoints
# (.pt) counts as arith's tiny model. pretrained-arith: a pretrained model on arith, chosen with
# SmolLM2-135M-Instruct on validation (experiments/smollm2.py): the rate of 2e-5, 1e-4, 5e-4 whose
# warm-up scored best alone, the partner greedy (it carried its stance more often than at 1.0);
# 16 questions a step, what a 2-core CPU trains in seconds; turns of 64, which hold every gold turn
# (the longest is 42 tokens: its tokenizer spells digits one by one). pretrained: GSM8K and the
# other tasks on one GPU, the usual fine-tuning rate, not tuned here.
PRESETS = {
    "scratch": dict(batch_size=64, warmup_lr=3e-3, plain_weight=3.0, warmup_steps=1000, steps=100,
                    block_size=256, eval_limit=300, log_every=25, partner_temperature=1.0,
                    lr=dict(sft=5e-4, saie=1e-3, scripted=1e-3, oracle=1e-3)),
    "pretrained-arith": dict(batch_size=16, warmup_lr=1e-4, lr=1e-4, plain_weight=1.0,
                             warmup_steps=20, steps=40, max_turn_tokens=64, eval_limit=200,
                             log_every=5, partner_temperature=0.0),
    "pretrained": dict(batch_size=8, warmup_lr=2e-5, lr=2e-5, plain_weight=1.0,
                       warmup_steps=500, steps=1000, block_size=1024, eval_limit=500,
                       log_every=10, partner_temperature=1.0),
}


# -----------------------------------------------------------------------------
# Command line

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    one, zero = data.at_least(1), data.at_least(0)
    # task and models
    p.add_argument("--task", default="arith", choices=data.TASKS)
    p.add_argument("--data-dir", help="local copy of the task's files (else downloaded)")
    p.add_argument("--init", help="the learner's start: 'scratch', a hub name or directory, or one "
                   "of our checkpoints (default: arith from assets/arith-warmup.pt, others gpt2)")
    p.add_argument("--partner", help="partner model name/dir/checkpoint "
                   "(default: a frozen copy of the warm-up checkpoint)")
    p.add_argument("--n-layer", type=one, default=4, help="scratch model: layers")
    p.add_argument("--n-head", type=one, default=4, help="scratch model: attention heads")
    p.add_argument("--n-embd", type=one, default=128, help="scratch model: width")
    p.add_argument("--block-size", type=one, help="scratch model: context length")
    # method
    p.add_argument("--method", default="compare",
                   choices=["compare", "saie", "sft", "scripted", "oracle", "warmup"],
                   help="compare = SFT and SAIE from the same warm-up, then evaluate both; "
                   "scripted = gold-scripted discussions (both turns written from gold, no model "
                   "speaks); oracle = the learner's own first turn and a remark written from gold "
                   "(on-policy learner, oracle partner); warmup = the warm-up alone, exported as "
                   "a weights-only model.pt")
    p.add_argument("--stance", choices=["both", "support", "oppose"],
                   help="the partner's stance per question (default both: 50/50 with the seed)")
    p.add_argument("--rounds", type=one, help="discussion rounds per question (default 1)")
    p.add_argument("--temperature", type=float, default=0.7, help="learner sampling in discussions")
    p.add_argument("--partner-temperature", type=float, help="partner sampling in discussions "
                   "(default: the preset's: 1.0 for arith's tiny partner, whose greedy 'oppose' "
                   "remarks mostly restate a right answer; 0, greedy, for a pretrained model on "
                   "arith, SmolLM2's choice on validation)")
    p.add_argument("--plain-weight", type=float, help="loss weight of the plain question -> gold "
                   "pairs in a SAIE batch (arith: 3)")
    p.add_argument("--max-turn-tokens", type=one, help="longest turn in a discussion (default: "
                   "the preset's, else the task's: 24 on arith, else 256)")
    # data and warm-up
    p.add_argument("--warmup-frac", type=float, default=0.2,
                   help="share of the train split for warm-up")
    p.add_argument("--train-limit", type=one, help="the data-limited regime: SFT and SAIE see only "
                   "this many training questions (drawn with --seed from the main split), for as "
                   "many epochs as --steps takes")
    p.add_argument("--warmup-steps", type=zero, help="0 when --init is already warmed up")
    p.add_argument("--warmup-seed", type=int, help="seed of the warm-up's initial weights and data "
                   "order (default --seed), so seeds can vary the warm-up too")
    # optimization
    p.add_argument("--steps", type=one, help="optimizer steps of SFT and of SAIE")
    p.add_argument("--batch-size", type=one, help="questions per micro-batch per rank")
    p.add_argument("--grad-accum", type=one, default=1)
    p.add_argument("--lr", type=float, help="peak learning rate of every method "
                   "(arith: SFT 5e-4, the discussion methods 1e-3)")
    p.add_argument("--warmup-lr", type=float, help="peak learning rate of the warm-up")
    p.add_argument("--lr-ramp", type=float, default=0.05, help="linear LR ramp-up: share of steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    # evaluation
    p.add_argument("--eval-split", default="test", choices=["validation", "test"],
                   help="where the final evaluation is measured: choose every setting on "
                   "validation, and use test once, for the final table")
    p.add_argument("--eval-limit", type=one, help="questions evaluated at the end (arith: each a "
                   "distinct chain; validation holds 1,000, test 2,000)")
    p.add_argument("--eval-warmup", action=argparse.BooleanOptionalAction, default=True,
                   help="evaluate the warm-up too, where every method started (a study of many "
                   "runs from one warm-up needs it once)")
    p.add_argument("--eval-rounds", type=one, default=1, help="rounds per discussion at the end")
    p.add_argument("--discussions", nargs="*", default=["honest", "fixed"],
                   choices=list(DISCUSSIONS), help="discussions evaluated besides alone: honest (a "
                   "copy of the model answers on its own, then agrees or not), fixed (the same "
                   "with --eval-partner), forced (a copy told to support or oppose, 50/50: a "
                   "stress test), fixed-forced (--eval-partner, told its stance)")
    p.add_argument("--eval-partner", help="the fixed partner of every learner at evaluation "
                   "(name, dir or checkpoint; default: the warm-up model)")
    p.add_argument("--eval-every", type=zero, default=0, help="learning curves: every N optimizer "
                   "steps of each phase, accuracy alone and in honest self-discussion on "
                   "--curve-limit validation questions (metrics.jsonl, report.html; 0: never)")
    p.add_argument("--curve-limit", type=one, default=200, help="validation questions per point")
    p.add_argument("--select-best", action="store_true", help="keep each method's checkpoint with "
                   "the best validation accuracy alone among the --eval-every points, and evaluate "
                   "that one (its step goes to best.json and results.json; ckpt.pt is written at "
                   "every point, so a resumed run agrees with best.json)")
    # system
    p.add_argument("--out", default="out")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="autocast dtype (default bfloat16 on CUDA, float32 on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--log-every", type=one)
    p.add_argument("--ckpt-every", type=one, default=100)
    args = p.parse_args(argv)

    arith = args.task == "arith"
    shipped = args.init is None and arith and SHIPPED_WARMUP.exists()
    if args.init is None:
        args.init = str(SHIPPED_WARMUP) if shipped else "scratch" if arith else "gpt2"
    ours = args.init == "scratch" or args.init.endswith(".pt")  # a tiny arith model, or ours
    preset = "pretrained" if not arith else "scratch" if ours else "pretrained-arith"
    for k, v in PRESETS[preset].items():
        if getattr(args, k, None) is None:
            setattr(args, k, 0 if k == "warmup_steps" and shipped else v)
    args.max_turn_tokens = args.max_turn_tokens or data.get_task(args.task).turn_tokens
    if not isinstance(args.lr, dict):  # one --lr for every method
        args.lr = dict.fromkeys(("sft", "saie", "scripted", "oracle"), args.lr)
    for wrong, why in (
            (args.warmup_seed is not None and args.warmup_steps == 0, "--warmup-seed seeds a "
             "warm-up, and this run has none (--warmup-steps 0 or the shipped warm-up); pass "
             "--init scratch to warm up from scratch"),
            (args.method in ("sft", "scripted") and (args.stance or args.rounds or args.partner),
             f"--stance, --rounds and --partner belong to spoken discussions, not --method "
             f"{args.method} (its scripted rounds draw their own stances)"),
            (args.method == "warmup" and args.warmup_steps < 1,
             "--warmup-steps must be at least 1 for --method warmup"),
            (args.select_best and not args.eval_every,
             "--select-best picks among the --eval-every points: give --eval-every N"),
            (args.train_limit is not None and args.train_limit < args.batch_size,
             "--train-limit must fill at least one batch (--batch-size)"),
            (not 0 < args.warmup_frac < 1, "--warmup-frac must be between 0 and 1")):
        if wrong:
            p.error(why)
    args.warmup_seed = args.seed if args.warmup_seed is None else args.warmup_seed
    args.stance, args.rounds = args.stance or "both", args.rounds or 1
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    return args


def unwritable(path):
    """Why nothing can be written under path, or None: better said before hours of training."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write in {existing}"
    return None


# -----------------------------------------------------------------------------
# Distributed setup: torchrun sets RANK/WORLD_SIZE; NCCL on GPU, gloo on CPU.

def setup_distributed(args):
    if "RANK" not in os.environ:
        return 0, 1
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if args.device.startswith("cuda"):
        args.device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        torch.cuda.set_device(args.device)
    dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
    return rank, world


def log(rank, *msg):
    if rank == 0:
        print(*msg, flush=True)


# -----------------------------------------------------------------------------
# Batches: generators that yield (sequences, row weights, stats) for one micro-step.
# SAIE's batches are discussions generated with the *current* learner, so the teaching
# signal follows the learner's evolving answers.

def question_batches(examples, args, rank, world, start, seed=None):
    """(micro-batch number, this rank's questions), from micro-batch `start` on. The index stream is
    deterministic (seed: default --seed), so resuming skips what was consumed without generating."""
    seed = args.seed if seed is None else seed
    stream = data.iterate_batches(len(examples), args.batch_size, seed, rank, world)
    for i, idx in itertools.islice(enumerate(stream), start, None):
        yield i, [examples[j] for j in idx]


def sft_batches(tok, task, examples, args, rank, world, start, remarks, seed=None):
    """Plain fine-tuning: question -> gold. In warm-up a base partner also learns to remark."""
    seed = args.seed if seed is None else seed
    for i, exs in question_batches(examples, args, rank, world, start, seed):
        seqs = [discuss.answer_sequence(tok, task, ex) for ex in exs]
        if remarks:  # half as many remark rows as answers: that role needs less practice
            seqs += discuss.remark_sequences(tok, task, exs[: len(exs) // 2],
                                             random.Random(f"{seed}-remark-{i}"))
        yield seqs, [1.0] * len(seqs), {}


def discussion_sequences(tok, task, transcripts, examples, args):
    """What a SAIE batch trains on: each discussion with the gold turn as its target, then the plain
    question -> gold pair (row weight --plain-weight)."""
    seqs = [discuss.learner_sequence(tok, tr, task.target(ex))
            for tr, ex in zip(transcripts, examples)]
    seqs += [discuss.answer_sequence(tok, task, ex) for ex in examples]
    return seqs, [1.0] * len(examples) + [args.plain_weight] * len(examples)


def scripted_batches(tok, task, examples, args, rank, world, start):
    """Gold-scripted discussions (discuss.scripted_sequences) and the plain pairs, weighted as in
    SAIE: SFT on rounds nobody spoke, so it costs what SFT on twice the rows costs."""
    for i, exs in question_batches(examples, args, rank, world, start):
        rng = random.Random(hash_seed(args.seed, i, rank))
        seqs = discuss.scripted_sequences(tok, task, exs, rng)
        seqs += [discuss.answer_sequence(tok, task, ex) for ex in exs]
        yield seqs, [1.0] * len(exs) + [args.plain_weight] * len(exs), {}


def saie_batches(learner, partner, tok, task, examples, args, rank, world, start, transcripts_path,
                 sequences=discussion_sequences):
    """Discuss each question of the batch, then train the learner's next turn on the gold answer.
    `sequences` turns a batch's transcripts into training rows (the classroom exercises swap it)."""
    for i, exs in question_batches(examples, args, rank, world, start):
        seed = hash_seed(args.seed, i, rank)
        stances = discuss.stances_for(len(exs), args.stance, random.Random(seed))
        trs = discuss.discuss(learner, partner, task, exs, stances, args.rounds, seed=seed)
        if transcripts_path:
            with open(transcripts_path, "a") as f:
                f.writelines(tr.to_json(step=i) + "\n" for tr in trs)
        seqs, weights = sequences(tok, task, trs, exs, args)
        right = sum(task.is_correct(tr.turns[0].text, ex) for tr, ex in zip(trs, exs))
        stats = {"learner_acc": right / len(exs), "aligned": discuss.stance_alignment(trs)}
        yield seqs, weights, stats


def hash_seed(*parts):
    return random.Random("-".join(map(str, parts))).getrandbits(31)


# -----------------------------------------------------------------------------
# The optimization loop, nanoGPT-style: AdamW with decay on 2-D weights only,
# linear ramp-up then cosine LR, gradient accumulation, clipping, bf16 autocast.

def micro_step(fwd, idx, targets, weights, device, accum=1, autocast=nullcontext(), ddp=None,
               last=True, scaler=None):
    """Forward and backward one micro-batch; return its loss and the tokens processed. Rows go in
    length groups (data.length_groups), each loss scaled by its share of the supervised weight: the
    gradient is that of the weighted mean over the whole micro-batch. Under DDP, gradients sync on
    the step's last backward. A float16 scaler scales each loss before its backward."""
    # what each row adds to the mean's denominator
    row_weight = (weights[:, None] * (targets != -100)).sum(1)
    total_weight = row_weight.sum().clamp(min=1e-8)
    groups = data.length_groups(targets)
    loss_sum, tokens = 0.0, 0
    for g, (rows, T) in enumerate(groups):
        x, y, w = idx[rows, :T].to(device), targets[rows, :T].to(device), weights[rows].to(device)
        if ddp is not None:  # set before the forward
            ddp.require_backward_grad_sync = last and g == len(groups) - 1
        with autocast:
            _, loss = fwd(x, y, w)
        loss = loss * (row_weight[rows].sum() / total_weight).item()
        (loss / accum if scaler is None else scaler.scale(loss / accum)).backward()
        loss_sum, tokens = loss_sum + loss.item(), tokens + x.numel()
    return loss_sum, tokens


def make_optimizer(model, args, lr, device):
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": args.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=device.startswith("cuda"))


def lr_at(step, steps, lr, args):
    ramp = max(1, int(args.lr_ramp * steps))
    if step < ramp:
        return lr * (step + 1) / ramp
    progress = (step - ramp) / max(1, steps - ramp)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))  # down to lr / 10


def trim_jsonl(path, last_step):
    """On resume, drop lines written after the checkpoint we resume from (no duplicates)."""
    if not path.exists():
        return
    keep = [l for l in path.read_text().splitlines(True)
            if l.strip() and json.loads(l)["step"] < last_step]
    data.write_atomic(path, "".join(keep))


def train(phase, model, make_batches, steps, tok, args, rank, world, extra, curve=None):
    """Run one phase (the warm-up or a method) to `steps` optimizer steps; return the trained model.
    curve(model) -> {name: value}: learning-curve points every --eval-every steps and at the end."""
    out = Path(args.out) / phase
    ckpt_path, metrics_path = out / "ckpt.pt", out / "metrics.jsonl"
    lr = args.warmup_lr if phase == "warmup" else args.lr[phase]
    opt = make_optimizer(model, args, lr, args.device)
    # float16 gradients underflow: scale the loss up, unscale before clipping (as nanoGPT does)
    scaler = torch.amp.GradScaler(args.device.split(":")[0], enabled=args.dtype == "float16")
    start = 0
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        start = ck["step"]
        log(rank, f"{phase}: resuming at step {start}/{steps} from {ckpt_path}")
    best = Best(out, phase) if args.select_best and phase != "warmup" and rank == 0 else None
    if start >= steps:
        return best.load(model) if best else model
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        trim_jsonl(metrics_path, start)  # metrics count optimizer steps, transcripts micro-batches
        trim_jsonl(out / "transcripts.jsonl", start * args.grad_accum)
    cuda = args.device.startswith("cuda")
    net = DDP(model, device_ids=[args.device] if cuda else None) if world > 1 else model
    fwd = torch.compile(net) if args.compile else net
    autocast = (torch.autocast("cuda", dtype=getattr(torch, args.dtype))
                if cuda and args.dtype != "float32" else nullcontext())
    batches = make_batches(start * args.grad_accum)
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    t0, tokens = time.time(), 0
    try:
        for step in range(start, steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, steps, lr, args)
            # The step's micro-batches first: each counts by its share of the step's supervised
            # weight, so k accumulated micro-batches give the gradient of a batch k times the size.
            micro, total = [], 0.0
            for _ in range(args.grad_accum):
                seqs, weights, stats = next(batches)
                idx, targets = data.make_batch(tok, seqs, model.config.block_size)
                weights = torch.tensor(weights)
                w = (weights[:, None] * (targets != -100)).sum().item()
                micro.append((idx, targets, weights, w))
            step_weight = sum(m[-1] for m in micro)
            for i, (idx, targets, weights, w) in enumerate(micro):
                accum = step_weight / w if w else 1.0  # micro_step divides the loss by it; 1 alone
                loss, n = micro_step(fwd, idx, targets, weights, args.device, accum, autocast,
                                     net if world > 1 else None, i == args.grad_accum - 1, scaler)
                total, tokens = total + loss / accum, tokens + n * world
            if not math.isfinite(total):
                raise SystemExit(f"{phase}: loss is {total} at step {step}; stopping. "
                                 f"The last good checkpoint is {ckpt_path}. Try a lower --lr.")
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            scaler.step(opt)  # skipped, and the scale lowered, when a gradient overflowed
            scaler.update()
            opt.zero_grad(set_to_none=True)
            done = step + 1
            point = {}
            if curve and rank == 0 and (done % args.eval_every == 0 or done == steps):
                point = curve(model)
                log(rank, f"{phase} step {done:5d}/{steps} | validation: "
                          + " | ".join(f"{k} {v:.1%}" for k, v in point.items()))
                if best:
                    best.offer(model, done, point["val_alone"])
            if rank == 0:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps({"step": step, "loss": total,
                                        "lr": opt.param_groups[0]["lr"], **stats, **point}) + "\n")
            if done % args.log_every == 0 or done == steps:
                dt = time.time() - t0
                eta = dt / (done - start) * (steps - done)
                extras = "".join(f" | {k} {v:.2f}" for k, v in stats.items())
                log(rank, f"{phase} step {done:5d}/{steps} | loss {total:.4f} | "
                          f"lr {opt.param_groups[0]['lr']:.1e} | {tokens / dt:,.0f} tok/s{extras}"
                          f" | eta {eta:.0f}s")
            # A checkpoint at every point offered to best too: on resume, best.json never holds
            # a step the run has not reached.
            if rank == 0 and (done % args.ckpt_every == 0 or done == steps or interrupted
                              or (best and point)):
                save_checkpoint(ckpt_path, model, optimizer=opt.state_dict(), step=done,
                                scaler=scaler.state_dict(), args=vars(args), **extra)
            if interrupted:
                log(rank, f"{phase}: interrupted; checkpoint written at step {done}. "
                          f"Continue with --resume.")
                raise SystemExit(130)
    finally:
        signal.signal(signal.SIGINT, previous)
    if world > 1:  # DDP keeps replicas identical; check it rather than trust it
        checksum = torch.stack([p.detach().float().sum() for p in model.parameters()])
        checksum = checksum.sum().reshape(1)
        sums = [torch.zeros_like(checksum) for _ in range(world)]
        dist.all_gather(sums, checksum)
        log(rank, f"{phase}: ranks agree on weights: {all(torch.equal(s, sums[0]) for s in sums)}")
    return best.load(model) if best else model


class Best:
    """The checkpoint with the best validation accuracy alone so far (--select-best): its weights
    in best.pt, its step and accuracy in best.json, so a resumed run remembers it. A tie keeps the
    earlier step."""

    def __init__(self, out, phase):
        self.phase, self.pt, self.json = phase, out / "best.pt", out / "best.json"
        self.record = json.loads(self.json.read_text()) if self.json.exists() else None

    def offer(self, model, step, accuracy):
        if self.record is None or accuracy > self.record["val_alone"]:
            save_checkpoint(self.pt, model, step=step)
            self.record = {"step": step, "val_alone": accuracy}
            data.write_atomic(self.json, json.dumps(self.record) + "\n")

    def load(self, model):
        """The model with the best weights loaded; the last ones if no point was offered."""
        if self.record is not None:
            model.load_state_dict(load_checkpoint(self.pt)["model"])
            print(f"{self.phase}: keeping step {self.record['step']} (validation alone "
                  f"{self.record['val_alone']:.1%})", flush=True)
        return model


# -----------------------------------------------------------------------------
# The run: warm-up, then SFT and/or SAIE from the warm-up checkpoint, then evaluation.

def build_model(args):
    if args.init == "scratch":
        tok = data.get_tokenizer("arith" if args.task == "arith" else "gpt2")
        cfg = GPTConfig(family="gpt2", vocab_size=tok.n_vocab, block_size=args.block_size,
                        n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd)
        model = GPT(cfg)
        model.tokenizer_spec = tok.name
        return model
    return GPT.from_pretrained(args.init, dtype=torch.float32, device="cpu")


def validation_curve(tok, task, examples, args, seen=()):
    """A learning-curve point: accuracy on a validation slice alone and after an honest
    self-discussion (one evaluation: the learner's first, greedy answer is its answer alone), and
    alone on `seen`, training questions (the data-limited regime: how far it memorises)."""
    def point(model):
        learner = discuss.Speaker(model, tok, args.max_turn_tokens)
        itself = discuss.Speaker(model, tok, args.max_turn_tokens, evaluation.HONEST_TEMPERATURE)
        r = evaluation.evaluate(learner, task, examples, itself, "honest", args.eval_rounds,
                                seed=args.seed)
        p = {"val_alone": r["per_round"][0]["accuracy"], "val_honest": r["accuracy"]}
        if seen:
            p["train_alone"] = evaluation.evaluate(learner, task, seen, seed=args.seed)["accuracy"]
        return p
    return point


def warm_up(model, tok, task, examples, args, rank, world, curve=None):
    """The warm-up: plain fine-tuning (question -> gold) on its own subset of the training set, so
    that the learner answers in the task's format before it discusses. A model that cannot be told
    its stance (no chat template) also learns the partner's remark role here. Returns the model
    and whether it learned that role (stored as `remarks` in its checkpoints)."""
    remarks = not tok.chat
    batches = lambda s: sft_batches(tok, task, examples, args, rank, world, s, remarks,
                                    args.warmup_seed)
    model = train("warmup", model, batches, args.warmup_steps, tok, args, rank, world,
                  {"remarks": remarks}, curve)
    return model, remarks


def split_train(train_set, args):
    """The warm-up's questions and the main phase's. The partition does not move with --seed, so
    a shipped warm-up fits every seed; --train-limit then draws N main questions with the seed."""
    n_warm = int(len(train_set) * args.warmup_frac)
    shuffled = random.Random(0).sample(train_set, len(train_set))
    warm_set, main_set = shuffled[:n_warm], shuffled[n_warm:]
    if args.train_limit:  # few examples, many epochs: the paper's regime
        if args.train_limit > len(main_set):
            sys.exit(f"saie.py: error: --train-limit {args.train_limit}: the main split holds "
                     f"{len(main_set)} questions")
        main_set = random.Random(f"{args.seed}-subset").sample(main_set, args.train_limit)
    return warm_set, main_set


def main(argv=None):
    args = parse_args(argv)
    rank, world = setup_distributed(args)
    torch.manual_seed(args.warmup_seed)  # the warm-up's initial weights: the global RNG's only use
    random.seed(args.seed)
    out = Path(args.out)
    if rank == 0 and (why := unwritable(out)):
        sys.exit(f"saie.py: error: --out {out}: {why}")
    if rank == 0 and out.exists() and any(out.glob("*/ckpt.pt")) and not args.resume:
        sys.exit(f"saie.py: error: {out} already holds checkpoints; pass --resume to continue them "
                 f"or choose another --out")

    task = data.get_task(args.task)
    splits = data.load_splits(task, args.data_dir)
    warm_set, main_set = split_train(splits["train"], args)
    eval_set = splits[args.eval_split][: args.eval_limit]

    model = build_model(args)
    tok = data.get_tokenizer(model.tokenizer_spec)
    model.to(args.device)
    # With few training questions the curve also shows how far training accuracy runs ahead.
    seen = main_set[: args.curve_limit] if args.train_limit else []
    curve = (validation_curve(tok, task, splits["validation"][: args.curve_limit], args, seen)
             if args.eval_every else None)
    log(rank, f"{args.task}: {len(warm_set)} warm-up / {len(main_set)} main questions; evaluation "
              f"on {len(eval_set)} {args.eval_split} questions; learner "
              f"{model.num_params() / 1e6:.2f}M parameters on {args.device} x{world}")
    model, remarks = warm_up(model, tok, task, warm_set, args, rank, world, curve)
    warm_state = copy.deepcopy(model.state_dict())
    if args.method == "warmup":
        if rank == 0:  # weights only (no optimizer state): small enough to ship
            save_checkpoint(out / "warmup" / "model.pt", model, remarks=remarks,
                            step=args.warmup_steps)
            report(args, model, tok, task, eval_set, {"warmup": warm_state}, remarks,
                   warm_state)
        return

    # The partner: frozen; by default the warm-up checkpoint, which learned to remark.
    if args.partner:
        partner = GPT.from_pretrained(args.partner, device=args.device)
        ptok = data.get_tokenizer(partner.tokenizer_spec)
    else:
        partner, ptok = copy.deepcopy(model), tok
    partner.requires_grad_(False).eval()
    partner_speaker = discuss.Speaker(partner, ptok, args.max_turn_tokens,
                                      temperature=args.partner_temperature)

    methods = ["sft", "saie"] if args.method == "compare" else [args.method]
    trained = {"warmup": warm_state} if args.eval_warmup else {}  # where both methods started
    for method in methods:
        model.load_state_dict(warm_state)  # every method starts from the same warm-up
        extra = {"remarks": remarks, "method": method}
        if method == "sft":
            make = lambda s: sft_batches(tok, task, main_set, args, rank, world, s, False)
        elif method == "scripted":
            make = lambda s: scripted_batches(tok, task, main_set, args, rank, world, s)
        else:  # saie, or the oracle control: the same discussions with a partner that knows gold
            learner = discuss.Speaker(model, tok, args.max_turn_tokens,
                                      temperature=args.temperature)
            speaker = (discuss.OraclePartner(task, main_set) if method == "oracle"
                       else partner_speaker)
            path = out / method / "transcripts.jsonl" if rank == 0 else None
            make = lambda s: saie_batches(learner, speaker, tok, task, main_set, args, rank,
                                          world, s, path)
        train(method, model, make, args.steps, tok, args, rank, world, extra, curve)
        trained[method] = copy.deepcopy(model.state_dict())

    if rank == 0:
        report(args, model, tok, task, eval_set, trained, remarks, warm_state)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def fixed_partner(args, model, warm_state, remarks):
    """(model, tokenizer, remarks) of the fixed partner: --eval-partner, else a warm-up copy."""
    if args.eval_partner:
        try:
            return load_model(args.eval_partner, args.device)
        except data.DataError as e:  # WeightsError is one
            raise SystemExit(f"saie.py: error: --eval-partner: {e}") from None
    partner = copy.deepcopy(model)
    partner.load_state_dict(warm_state)
    return partner.eval(), data.get_tokenizer(partner.tokenizer_spec), remarks


def report(args, model, tok, task, examples, trained, remarks, warm_state):
    """Evaluate each trained learner alone and in the --discussions, on the same questions; compare
    the learners pairwise (McNemar); print a table, write results.json and report.html."""
    out, results = Path(args.out), []
    fixed = fixed_partner(args, model, warm_state, remarks) if any(
        DISCUSSIONS[d][0] == "fixed" for d in args.discussions) else None
    for method, state in trained.items():
        model.load_state_dict(state)
        # The learner's answer alone opens every discussion: generated once, then reused.
        learner = evaluation.CachedSpeaker(model, tok, args.max_turn_tokens, cache={})
        runs = {"alone": (None, "honest")}
        for name in args.discussions:
            who, stance = DISCUSSIONS[name]
            m, t, r = fixed if who == "fixed" else (model, tok, remarks)
            heat = evaluation.partner_temperature(stance)
            runs[name] = (discuss.Speaker(m, t, args.max_turn_tokens, heat, remarks=r), stance)
        for name, (partner, stance) in runs.items():
            t0 = time.time()
            r = evaluation.evaluate(learner, task, examples, partner, stance, args.eval_rounds,
                                    seed=args.seed)
            r.update(method=method, discussion=name)
            print(f"eval {method} {name}: {len(examples)}/{len(examples)} questions | accuracy "
                  f"{r['accuracy']:.1%} | {time.time() - t0:.0f}s", flush=True)
            fixed_by = (args.eval_partner or "warm-up") if r["mode"] == "multi" else None
            r["config"].update(split=args.eval_split, partner=fixed_by)
            evaluation.save(r, out / "eval" / f"{method}-{name}")
            results.append(r)
    find = {(r["method"], r["discussion"]): r for r in results}
    shown = ["alone"] + [d for d in ("honest", "fixed") if d in args.discussions]
    heads = {"alone": "alone (95% CI)",
             "honest": "honest self-discussion: alone → after (kept, fixed)",
             "fixed": f"fixed partner, {args.eval_partner or 'the warm-up'}: alone → after "
                      f"(kept, fixed)"}

    def cell(r):
        pct = evaluation.pct
        if r["mode"] == "single":
            return f"{pct(r['accuracy'])}% ({pct(r['ci95'][0])}–{pct(r['ci95'][1])})"
        return (f"{pct(r['per_round'][0]['accuracy'])} → {pct(r['accuracy'])} "
                f"({pct(r['kept'])}, {pct(r['fixed'])})")
    print(f"\n{len(examples)} {args.eval_split} questions, greedy; {args.eval_rounds} round(s)")
    print(evaluation.markdown(["method", *(heads[d] for d in shown)],
                              [[m, *(cell(find[m, d]) for d in shown)] for m in trained]))

    # Paired: each later learner against each earlier one, in every evaluation, same questions.
    names = ["alone", *args.discussions]
    pairs = [(find[b, d], find[a, d]) for d in names for a, b in itertools.combinations(trained, 2)]
    paired = [dict(a=a["method"], b=b["method"], discussion=a["discussion"],
                   **evaluation.paired(a, b)) for a, b in pairs]
    if len(trained) > 1:
        print("\npaired on the same questions: A − B in points (McNemar's exact p)")
        print(evaluation.markdown(["A − B", *names], [
            [f"{b} − {a}", *(f"{100 * p['diff']:+.1f} (p {evaluation.p_value(p['p'])})"
                             for p in paired if (p["a"], p["b"]) == (b, a))]  # names' order
            for a, b in itertools.combinations(trained, 2)]))
    for note in evaluation.caveats(results):
        print(f"note: {note}")
    best = {m: json.loads((out / m / "best.json").read_text()) for m in trained
            if args.select_best and (out / m / "best.json").exists()}  # the step each kept
    evaluation.write_json(out / "results.json", {"args": vars(args), "selected": best,
                                                  "paired": paired, "results": [
        {k: v for k, v in r.items() if k != "predictions"} for r in results]})
    evaluation.write_report(results, out / "report.html", pairs=pairs,
                            curves=learning_curves(out, trained))
    print(f"\nwrote {out / 'results.json'}, {out / 'report.html'}, {out}/eval/*/predictions.jsonl, "
          f"checkpoints {out}/*/ckpt.pt")


def learning_curves(out, phases):
    """{'<phase> alone' / '<phase> honest': [(step, accuracy)]} from the phases' metrics.jsonl."""
    curves = {}
    for phase in phases:
        path = out / phase / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        rows = [json.loads(line) for line in lines if line]
        for key, name in (("val_alone", "alone"), ("val_honest", "honest")):
            points = [(row["step"] + 1, row[key]) for row in rows if key in row]
            if points:
                curves[f"{phase} {name}"] = points
    return curves


if __name__ == "__main__":
    data.cli(main)
