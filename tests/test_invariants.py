"""The method's invariants, checked where they matter: the rows the optimizer gets (SAIE trains the gold
turn, SFT the plain pairs), the weights each arm starts from, and every prompt either model is asked to
continue (neither ever sees the gold answer). Each test fails if the method is broken in that place."""
import random
import re
from types import SimpleNamespace

import pytest
import torch

import data
import discuss
import eval as ev
import saie
from model import GPT, load_checkpoint
from tests.test_discuss import ChatTok  # a character-level stand-in for the Llama 3 tokenizer
from tests.test_saie import TINY

TASK = data.get_task("arith")
TOK = data.get_tokenizer("arith")
EXS = TASK.load("train")[:12]
# Scripted turns: numbers above every arith answer (<= 997), so a gold answer in a prompt cannot hide in them.
LEARNER_TEXT = "1001 + 1 = 1002\n#### 1002"
PARTNER_TEXT = "1100 - 1 = 1099\n#### 1099"


class Scripted:
    """A stand-in model: the learner's turn and the partner's remark are fixed texts (told apart by the
    partner's forced opener), and every prompt it is asked to continue is kept, decoded."""

    def __init__(self, tok):
        self.tok, self.prompts = tok, []
        self.config = SimpleNamespace(block_size=100_000)

    def generate(self, prompts, max_new_tokens, **kwargs):
        texts = [self.tok.decode(p) for p in prompts]
        self.prompts += texts
        return [self.tok.encode(PARTNER_TEXT if t.endswith(tuple(discuss.OPENER.values())) else LEARNER_TEXT)
                for t in texts]


def rows(tok, seqs):
    """Each training row as (context, supervised text): what the model reads, what it is trained to say."""
    idx, targets = data.make_batch(tok, seqs, 100_000)
    out = []
    for r in range(len(seqs)):
        first = (targets[r] != -100).nonzero()[0].item()
        out.append((tok.decode(idx[r, : first + 1].tolist()),
                    tok.decode([t for t in targets[r].tolist() if t != -100])))
    return out


def gold_turn(ex):
    return " " + TASK.target(ex) + "<|endoftext|>"


# -----------------------------------------------------------------------------
# 1. What SAIE and SFT train on


@pytest.mark.parametrize("rounds", [1, 2])
def test_saie_rows_target_the_gold_turn_and_plain_pairs_carry_plain_weight(rounds):
    model = Scripted(TOK)
    learner, partner = discuss.Speaker(model, TOK, 12, temperature=0.7), discuss.Speaker(model, TOK, 12)
    args = SimpleNamespace(batch_size=4, seed=3, stance="both", rounds=rounds, plain_weight=0.3)
    saie_stream = saie.saie_batches(learner, partner, TOK, TASK, EXS, args, 0, 1, 0, None)
    sft_stream = saie.sft_batches(TOK, TASK, EXS, args, 0, 1, 0, False)
    by_question = {ex.question: ex for ex in EXS}
    for _ in range(2):
        seqs, weights, _ = next(saie_stream)
        assert len(seqs) == len(weights) == 2 * args.batch_size  # a discussion and a plain pair per question
        discussed, plain = [], []
        for (context, supervised), w in zip(rows(TOK, seqs), weights):
            ex = by_question[re.match(r"Question: (.*?)\n", context)[1]]
            assert supervised == gold_turn(ex), "every SAIE row's only target is the gold turn"
            if context == f"Question: {ex.question}\nAnswer:":
                assert w == args.plain_weight, "a plain pair in a SAIE batch carries --plain-weight"
                plain.append(ex.question)
            else:   # the whole discussion as context, the learner's next turn to come
                assert w == 1.0 and context.endswith("Answer:")
                assert context.count(LEARNER_TEXT) == rounds and context.count(PARTNER_TEXT) == rounds
                discussed.append(ex.question)
        assert sorted(discussed) == sorted(plain) and len(set(plain)) == args.batch_size
        # SFT: the plain pairs of the same questions, in the same order, at weight 1.
        sft_seqs, sft_weights, _ = next(sft_stream)
        sft_ex = [by_question[re.match(r"Question: (.*?)\n", c)[1]] for c, _ in rows(TOK, sft_seqs)]
        assert [e.question for e in sft_ex] == plain and sft_weights == [1.0] * len(sft_seqs)
        assert sft_seqs == [discuss.answer_sequence(TOK, TASK, e) for e in sft_ex]
        assert [s for _, s in rows(TOK, sft_seqs)] == [gold_turn(e) for e in sft_ex]


def test_the_format_control_trains_scripted_discussions_and_speaks_no_turn(tmp_path, monkeypatch):
    """--method scripted: per question one pre-written discussion (a gold or slipped answer, then a remark
    that carries its stance) and the plain pair at --plain-weight, the gold turn the only target; and no
    model generates a turn while it trains."""
    seen, generated = [], []
    forward, generate = GPT.forward, GPT.generate

    def spy_forward(self, idx, targets=None, weights=None):
        if targets is not None and self.training:
            seen.extend((idx[r].tolist(), targets[r].tolist(), weights[r].item()) for r in range(len(idx)))
        return forward(self, idx, targets, weights)

    def spy_generate(self, *a, **k):
        generated.append(len(a[0]))
        return generate(self, *a, **k)

    monkeypatch.setattr(GPT, "forward", spy_forward)
    monkeypatch.setattr(GPT, "generate", spy_generate)
    saie.main(TINY + ["--method", "scripted", "--warmup-steps", "0", "--steps", "3", "--plain-weight", "0.3",
                      "--eval-limit", "2", "--discussions", "--out", str(tmp_path)])
    golds = {ex.question: gold_turn(ex) for ex in TASK.load("train")}
    kinds = []
    for idx, targets, w in seen:
        first = next(i for i, t in enumerate(targets) if t != -100)
        context, target = TOK.decode(idx[: first + 1]), TOK.decode([t for t in targets if t != -100])
        question = re.match(r"Question: (.*?)\n", context)[1]
        assert target == golds[question]
        if context == f"Question: {question}\nAnswer:":
            kinds.append(("plain", w))
            continue
        kinds.append(("discussion", w))
        turns = re.fullmatch(r"Question: .*?\nAnswer: (.*?)<\|endoftext\|>\nPartner: (I agree\.|I disagree\.) "
                             r"(.*?)<\|endoftext\|>\nAnswer:", context, re.S)
        answer, opener, remark = turns[1], turns[2], turns[3]
        assert (TASK.extract(answer) == TASK.extract(remark)) == (opener == "I agree.")
    assert sorted(kinds) == [("discussion", 1.0)] * 12 + [("plain", pytest.approx(0.3))] * 12
    assert generated == [2, 2]  # the evaluation alone (warm-up, then scripted) generated anything


def test_what_the_optimizer_gets_and_where_each_arm_starts(tmp_path, monkeypatch):
    """One compare run, spied on: every training forward's rows (by phase), the weights each phase starts
    and ends with, and the weights each evaluated row was computed from."""
    phase, seen, starts, ends, evaluated = [None], [], {}, {}, []
    train, forward, evaluate = saie.train, GPT.forward, ev.evaluate

    def snapshot(model):
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def spy_train(name, model, *a, **k):
        phase[0], starts[name] = name, snapshot(model)
        out = train(name, model, *a, **k)
        ends[name] = snapshot(out)
        return out

    def spy_forward(self, idx, targets=None, weights=None):
        if targets is not None:
            for r in range(len(idx)):
                seen.append((phase[0], idx[r].tolist(), targets[r].tolist(),
                             1.0 if weights is None else weights[r].item()))
        return forward(self, idx, targets, weights)

    def spy_evaluate(learner, *a, **k):
        r = evaluate(learner, *a, **k)
        evaluated.append((r, snapshot(learner.model)))  # r["method"] is set by the caller afterwards
        return r

    monkeypatch.setattr(saie, "train", spy_train)
    monkeypatch.setattr(GPT, "forward", spy_forward)
    monkeypatch.setattr(ev, "evaluate", spy_evaluate)
    saie.main(TINY + ["--steps", "2", "--rounds", "2", "--plain-weight", "0.3", "--out", str(tmp_path)])

    # What each phase trained on: SFT the plain pairs; SAIE each question's discussion and its plain pair
    # at --plain-weight, the gold turn as the only target of every row.
    targets_of = {}
    for ex in TASK.load("train"):
        targets_of.setdefault(ex.question, set()).add(gold_turn(ex))
    kinds = {"sft": [], "saie": []}
    for name, idx, targets, w in seen:
        if name not in kinds:
            continue
        first = next(i for i, t in enumerate(targets) if t != -100)
        context = TOK.decode(idx[: first + 1])
        question = re.match(r"Question: (.*?)\n", context)[1]
        assert TOK.decode([t for t in targets if t != -100]) in targets_of[question], (name, context)
        kind = "plain" if context == f"Question: {question}\nAnswer:" else "discussion"
        kinds[name].append((kind, w, question))
    sft, saie_rows = kinds["sft"], kinds["saie"]
    assert len(sft) == 2 * 4 and {(k, w) for k, w, _ in sft} == {("plain", 1.0)}
    assert sorted((k, w) for k, w, _ in saie_rows) == \
        [("discussion", 1.0)] * 8 + [("plain", pytest.approx(0.3))] * 8
    questions = sorted(q for *_, q in sft)   # the same questions for both arms, each discussed once
    assert questions == sorted(q for k, _, q in saie_rows if k == "plain") == \
        sorted(q for k, _, q in saie_rows if k == "discussion")

    # Both arms start from the warm-up, bit for bit; the evaluated rows are the states they name.
    def same(a, b):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert set(starts) == {"warmup", "sft", "saie"}
    assert same(starts["sft"], ends["warmup"]) and same(starts["saie"], ends["warmup"])
    assert not same(ends["sft"], ends["warmup"]) and not same(ends["saie"], ends["sft"])
    assert same(load_checkpoint(tmp_path / "warmup" / "ckpt.pt")["model"], ends["warmup"])
    rows = [(r, state) for r, state in evaluated if "method" in r]   # the report's rows, by method
    assert {r["method"] for r, _ in rows} == {"warmup", "sft", "saie"}
    assert {r["mode"] for r, _ in rows} >= {"single", "self"}
    for r, state in rows:
        assert same(state, ends[r["method"]]), f"the {r['method']} row was evaluated from other weights"


# -----------------------------------------------------------------------------
# 3. Neither model ever sees the gold answer


def _no_gold_in(prompts, examples):
    """Every prompt belongs to one question, and neither its gold answer nor a step of its gold
    derivation appears anywhere in it but in the question itself and the fixed system prompts (the
    partner's shows a remark's form with numbers of its own, the same for every question)."""
    for prompt in prompts:
        mine = [ex for ex in examples if ex.question in prompt]
        assert len(mine) == 1, prompt
        ex, rest = mine[0], prompt.replace(mine[0].question, "")
        for fixed in discuss.PARTNER_SYSTEM.values():
            rest = rest.replace(fixed, "")
        assert not re.search(rf"(?<!\d){ex.answer}(?!\d)", rest), f"gold answer {ex.answer} shown: {prompt!r}"
        for step in re.findall(r".+ = .+", ex.rationale):
            assert step not in rest, f"gold step {step!r} shown: {prompt!r}"


def _drive(entry, tok, exs, rounds):
    """Run one of the three callers of the discussion on scripted models; return the models used."""
    learner_model, partner_model = Scripted(tok), Scripted(tok)
    learner = discuss.Speaker(learner_model, tok, 12, temperature=0.7)
    partner = discuss.Speaker(partner_model, tok, 12, temperature=1.0)
    if entry == "discuss":
        stances = discuss.stances_for(len(exs), "both", random.Random(0))
        discuss.discuss(learner, partner, TASK, exs, stances, rounds, final_answer=True, seed=1)
        return [learner_model, partner_model], 2 * rounds + 1
    if entry == "saie_batches":
        args = SimpleNamespace(batch_size=len(exs), seed=3, stance="both", rounds=rounds, plain_weight=1.0)
        next(saie.saie_batches(learner, partner, tok, TASK, exs, args, 0, 1, 0, None))
        return [learner_model, partner_model], 2 * rounds
    ev.evaluate(discuss.Speaker(learner_model, tok, 12), TASK, exs,
                discuss.Speaker(partner_model, tok, 12, remarks=True), "both", rounds)
    return [learner_model, partner_model], 2 * rounds + 1


@pytest.mark.parametrize("entry", ["discuss", "saie_batches", "evaluate"])
@pytest.mark.parametrize("fmt", ["plain", "chat"])
def test_no_prompt_shows_the_gold_answer(entry, fmt):
    tok = TOK if fmt == "plain" else ChatTok()
    exs = [ex for ex in TASK.load("train")[:40]
           if not re.search(rf"(?<!\d){ex.answer}(?!\d)", ex.question)][:6]
    rounds = 3
    models, calls = _drive(entry, tok, exs, rounds)
    prompts = [p for m in models for p in m.prompts]
    assert len(prompts) == calls * len(exs), "every turn of every round was generated from a prompt"
    assert sum(PARTNER_TEXT in p for p in prompts) >= len(exs) * (rounds - 1), "later rounds were seen"
    _no_gold_in(prompts, exs)
