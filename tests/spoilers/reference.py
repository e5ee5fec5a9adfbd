"""SPOILERS: reference solutions of the seven exercises (docs/exercises.md), one section each.

plugin.py puts each function into its exercise module (exercises/<name>.py) as if written there: names
it uses resolve in that module first (so own_turn_sequences calls the module's `verified`)."""
import itertools
import json
from pathlib import Path

import torch

import data
import discuss
import model as M
import saie
from model import GPT

# -----------------------------------------------------------------------------
# 1. min_p


def min_p_filter(logits, min_p):
    probs = logits.float().softmax(-1)
    keep = probs >= min_p * probs.max(-1, keepdim=True).values
    return logits.masked_fill(~keep, float("-inf"))

# -----------------------------------------------------------------------------
# 2. own_turns


def verified(task, ex, text):
    steps = data.STEP.findall(text)
    return (bool(task.is_correct(text, ex)) and bool(steps)
            and all(data._apply(op, int(a), int(b)) == int(r) for a, op, b, r in steps))


def own_turn_sequences(tok, task, transcripts, examples):
    seqs = []
    for tr, ex in zip(transcripts, examples):
        text = next(t.text for t in tr.turns if t.speaker == "learner")
        if verified(task, ex, text):
            seqs.append(discuss.learner_sequence(tok, discuss.Transcript(ex.question, ex.answer), text))
    return seqs

# -----------------------------------------------------------------------------
# 3. every_round


def round_sequences(tok, tr, target):
    return [discuss.learner_sequence(tok, discuss.Transcript(tr.question, tr.gold, tr.stance, tr.id,
                                                             tr.turns[: 2 * k]), target)
            for k in range(len(tr.turns) // 2 + 1)]

# -----------------------------------------------------------------------------
# 4. question_stance


def question_remark(learner_text, rng):
    steps = [m.group(0) for m in data.STEP.finditer(learner_text)]
    return f"Is {rng.choice(steps)} right ?" if steps else "How did you get that ?"


def remark_sequences(tok, task, examples, rng):
    seqs = []
    for ex in examples:
        right = rng.random() < 0.5
        answer = task.target(ex) if right else task.wrong_target(ex, rng)
        stance = rng.choice(discuss.STANCES)
        if stance == "question":
            remark = question_remark(answer, rng)
        elif stance == "support":
            remark = answer
        else:
            remark = task.wrong_target(ex, rng) if right else task.target(ex)
        tr = discuss.Transcript(ex.question, ex.answer, stance, ex.id, [discuss.Turn("learner", answer)])
        seqs.append([(s, False) for s in discuss.render(tok, tr, "partner")] + discuss.turn_segments(tok, remark))
    return seqs


def stance_alignment(transcripts):
    hits = n = 0
    for tr in transcripts:
        for prev, t in zip(tr.turns, tr.turns[1:]):
            if t.speaker == "partner" and prev.speaker == "learner":
                n += 1
                if t.stance == "question":
                    hits += "####" not in t.text and t.text.strip().endswith("?")
                else:
                    same = t.answer is not None and t.answer == prev.answer
                    hits += same if t.stance == "support" else (t.answer is not None and not same)
    return hits / max(n, 1)

# -----------------------------------------------------------------------------
# 5. cheap_schedule


def cheap_batches(learner, partner, tok, task, examples, args, rank, world, start, transcripts_path, every):
    for i in itertools.count(start):
        if i % every == 0:
            batches = saie.saie_batches(learner, partner, tok, task, examples, args, rank, world, i,
                                        transcripts_path)
        else:
            batches = saie.sft_batches(tok, task, examples, args, rank, world, i, False)
        yield next(batches)

# -----------------------------------------------------------------------------
# 6. ema_partner


@torch.no_grad()
def ema_update(partner, learner, decay):
    for p, q in zip(partner.parameters(), learner.parameters()):  # parameters(): a tied tensor once
        p.mul_(decay).add_(q, alpha=1 - decay)

# -----------------------------------------------------------------------------
# 7. qwen2


def load_qwen2(path, dtype=torch.float32):
    path = Path(path)
    c = json.loads((path / "config.json").read_text())
    if c.get("model_type") != "qwen2":
        raise ValueError(f"{path / 'config.json'}: model_type {c.get('model_type')!r}, not qwen2")
    config = M._hf_config({**c, "model_type": "llama"})  # Llama's architecture, and biases on q, k, v
    model = GPT(config)
    for block in model.h:
        block.attn.c_attn.bias = torch.nn.Parameter(torch.zeros(block.attn.c_attn.out_features))
    sd = {k.removeprefix("model."): v for k, v in M.load_safetensors(path / "model.safetensors").items()}
    state = M._to_ours(sd, config, "hf")  # the biases pass through under their own names
    for i in range(config.n_layer):
        state[f"h.{i}.attn.c_attn.bias"] = torch.cat([state.pop(f"layers.{i}.self_attn.{x}_proj.bias") for x in "qkv"])
    model.load_state_dict(state)
    model.tokenizer_spec = str(path)
    return model.to(dtype)
