"""
Why SAIE does what it does on arith, measured on one finished SAIE run of the study:

    python experiments/mechanism.py [RUN]     # default experiments/runs/test/1337/saie

1. the partner in training: how often its remark carries the gold answer, by stance; how often the
   learner's own first turn is right, early and late in training;
2. copyable targets: the share of discussion rows whose target (the gold turn) already stands word
   for word in the context, and the trained model's per-token loss on those, on the rest, and on
   plain question -> gold pairs (the last 20 batches' questions);
3. interference at the start: at the warm-up, the gradient of the discussion rows against the
   plain rows' (norms, cosine), and the discussion gradient's cosine across two sets of questions.
Writes experiments/results/mechanism-<run>.json (e.g. mechanism-test-1337-saie.json).
"""

import json
import random
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import data  # noqa: E402
import discuss  # noqa: E402
import eval as evaluation  # noqa: E402
from model import load_model  # noqa: E402


def load_transcripts(path):
    """[(micro-batch, Transcript)] of a run's transcripts.jsonl."""
    lines = [line for line in path.read_text().splitlines() if line]
    return [(json.loads(line)["step"], discuss.Transcript.from_json(line)) for line in lines]


def rows_of(tok, task, trs, by_question):
    """(discussion rows, their copyable flags, plain rows) as discussion_sequences builds them."""
    disc, copyable, plain = [], [], []
    for tr in trs:
        ex = by_question[tr.question]
        target = task.target(ex)
        context = "\n".join(t.text for t in tr.turns)
        disc.append(discuss.learner_sequence(tok, tr, target))
        copyable.append(target in context)
        plain.append(discuss.answer_sequence(tok, task, ex))
    return disc, copyable, plain


def loss_of(model, tok, seqs):
    """Per-token mean loss over the rows' supervised tokens."""
    if not seqs:
        return None
    with torch.no_grad():
        total = n = 0.0
        for i in range(0, len(seqs), 64):
            idx, targets = data.make_batch(tok, seqs[i:i + 64], model.config.block_size)
            k = (targets != -100).sum().item()
            total, n = total + model(idx, targets)[1].item() * k, n + k
    return total / n


def gradient(model, tok, seqs):
    model.zero_grad(set_to_none=True)
    idx, targets = data.make_batch(tok, seqs, model.config.block_size)
    model(idx, targets)[1].backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def cosine(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


def main(run=None):
    run = Path(run or ROOT / "experiments" / "runs" / "test" / "1337" / "saie").resolve()
    args = json.loads((run / "results.json").read_text())["args"]
    task, seed = data.get_task(args["task"]), args["seed"]
    by_question = {ex.question: ex for ex in data.load_splits(task)["train"]}
    transcripts = load_transcripts(run / "saie" / "transcripts.jsonl")
    last = max(step for step, _ in transcripts)
    out = {"run": str(run.relative_to(ROOT)), "seed": seed}

    # 1. The partner and the learner in training.
    partner = {}
    for stance in discuss.STANCES:
        trs = [tr for _, tr in transcripts if tr.stance == stance]
        partner[stance] = sum(tr.turns[1].answer == tr.gold for tr in trs) / max(1, len(trs))
    out["partner_right"] = partner
    early = [tr for step, tr in transcripts if step < 50]
    late = [tr for step, tr in transcripts if step > last - 50]
    out["learner_right_first_50_steps"] = sum(tr.turns[0].answer == tr.gold for tr in early) / len(early)
    out["learner_right_last_50_steps"] = sum(tr.turns[0].answer == tr.gold for tr in late) / len(late)

    # 2. Copyable targets, and what the trained model learned on them.
    model, tok, _ = load_model(str(run / "saie" / "ckpt.pt"), "cpu")
    disc, copyable, plain = rows_of(tok, task, [tr for _, tr in transcripts], by_question)
    out["copyable_share"] = sum(copyable) / len(copyable)
    recent = [tr for step, tr in transcripts if step > last - 20]
    disc, copyable, plain = rows_of(tok, task, recent, by_question)
    out["final_loss"] = {
        "copyable discussion rows": loss_of(model, tok, [s for s, c in zip(disc, copyable) if c]),
        "other discussion rows": loss_of(model, tok, [s for s, c in zip(disc, copyable) if not c]),
        "plain pairs": loss_of(model, tok, plain)}

    # 3. At the warm-up: the discussion rows' gradient against the plain rows'.
    warm, tok, _ = load_model(args["init"], "cpu")
    warm.train()
    first = [tr for step, tr in transcripts if step < 2]
    random.Random(0).shuffle(first)
    half = len(first) // 2
    (d1, _, p1), (d2, _, _) = (rows_of(tok, task, first[:half], by_question),
                               rows_of(tok, task, first[half:], by_question))
    g_disc, g_plain, g_disc2 = gradient(warm, tok, d1), gradient(warm, tok, p1), gradient(warm, tok, d2)
    out["warmup_gradient"] = {
        "discussion_norm": g_disc.norm().item(), "plain_norm": g_plain.norm().item(),
        "norm_ratio": (g_disc.norm() / g_plain.norm()).item(), "cosine_discussion_plain": cosine(g_disc, g_plain),
        "cosine_discussion_across_questions": cosine(g_disc, g_disc2),
        "questions": half}
    name = "-".join(run.relative_to(ROOT / "experiments" / "runs").parts)
    path = ROOT / "experiments" / "results" / f"mechanism-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:2])
