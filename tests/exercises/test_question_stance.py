"""Exercise 4 (question_stance): a third stance that renders, trains masked, and is measured."""
import random
import re
from collections import Counter

import data
import discuss
from discuss import Transcript, Turn
from exercises.question_stance import OPENER, question_remark, registered, remark_sequences, stance_alignment

TASK = data.get_task("arith")
TOK = data.get_tokenizer("arith")
EXS = TASK.load("test")[:90]
LEARNER = "12 / 2 = 6\n6 + 20 = 30\n#### 30"


def _is_question(text):
    return text.strip().endswith("?") and "####" not in text


def test_question_remark_quotes_a_step(attempt):
    seen = set()
    for seed in range(20):
        rng = random.Random(seed)
        before = rng.getstate()
        q = attempt(question_remark, LEARNER, rng)
        assert _is_question(q), q
        quoted = [s for s in ("12 / 2 = 6", "6 + 20 = 30") if s in q]
        assert len(quoted) == 1, f"{q!r} should quote exactly one of the learner's steps"
        assert rng.getstate() != before, "the quoted step is picked with the rng given, not another"
        seen.update(quoted)
    assert len(seen) == 2, "over seeds, the rng picks each step"
    q = attempt(question_remark, "I think 30", random.Random(0))
    assert _is_question(q) and not data.STEP.search(q)
    assert question_remark(LEARNER, random.Random(3)) == question_remark(LEARNER, random.Random(3))


def test_registered_stance_renders_with_its_opener():
    with registered():
        assert "question" in discuss.STANCES
        tr = Transcript("Q ?", "1", "question", turns=[Turn("learner", LEARNER, "30")])
        text = TOK.decode(discuss.encode(TOK, discuss.render(TOK, tr, "partner")))
        assert text.endswith(f"#### 30<|endoftext|>\nPartner: {OPENER}")
        counts = Counter(discuss.stances_for(900, "both", random.Random(0)))
        assert set(counts) == {"support", "oppose", "question"} and min(counts.values()) > 250
    assert discuss.STANCES == ("support", "oppose") and "question" not in discuss.OPENER


def test_three_stance_remark_sequences_are_masked(attempt):
    with registered():
        seqs = attempt(remark_sequences, TOK, TASK, EXS, random.Random(0))
    assert len(seqs) == len(EXS)
    idx, targets = data.make_batch(TOK, seqs, 256)
    stances = Counter()
    for r, ex in enumerate(EXS):
        first = (targets[r] != -100).nonzero()[0].item()
        context = TOK.decode(idx[r, : first + 1].tolist())
        remark = TOK.decode([t for t in targets[r].tolist() if t != -100])
        assert remark.startswith(" ") and remark.endswith("<|endoftext|>"), "target: the remark and its end of turn"
        remark = remark[1:].removesuffix("<|endoftext|>")
        assert not remark.startswith(("I agree.", "I disagree.", OPENER)), "the opener is context, not target"
        m = re.fullmatch(r"Question: (.*)\nAnswer: (.*)<\|endoftext\|>\nPartner: (I agree\.|I disagree\.|I have a question\.)",
                         context, re.S)
        assert m and m[1] == ex.question, f"context is the partner's view ending with the opener: {context!r}"
        learner = m[2]
        stance = {"I agree.": "support", "I disagree.": "oppose", OPENER: "question"}[m[3]]
        stances[stance] += 1
        if stance == "question":
            assert _is_question(remark)
            assert any(f"{a} {op} {b} = {c}" in remark for a, op, b, c in data.STEP.findall(learner)), (learner, remark)
        elif stance == "support":
            assert TASK.extract(remark) == TASK.extract(learner)
        else:
            assert TASK.extract(remark) != TASK.extract(learner)
    assert min(stances[s] for s in ("support", "oppose", "question")) >= 15, stances


def test_alignment_with_three_stances(attempt):
    def tr(stance, remark):
        return Transcript("Q ?", "30", stance, turns=[Turn("learner", LEARNER, "30"),
                                                      Turn("partner", remark, TASK.extract(remark), stance)])
    trs = [tr("support", "I agree. 12 / 2 = 6\n6 + 20 = 30\n#### 30"),        # aligned
           tr("oppose", "I disagree. 12 / 2 = 6\n6 + 20 = 30\n#### 30"),      # not: same answer
           tr("oppose", "I disagree. 12 / 2 = 5\n5 + 20 = 25\n#### 25"),      # aligned
           tr("question", "I have a question. Is 12 / 2 = 6 right ?"),        # aligned
           tr("question", "I have a question. 12 / 2 = 6\n#### 6"),           # not: it answers
           tr("question", "I have a question. Is it 12 / 2 = 6")]             # not: no question mark
    with registered():
        assert attempt(stance_alignment, trs) == 3 / 6
        assert stance_alignment(trs[3:4]) == 1.0
        assert stance_alignment(trs[:3]) == discuss.stance_alignment(trs[:3])
