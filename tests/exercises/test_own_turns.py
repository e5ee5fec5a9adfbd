"""Exercise 2 (own_turns): only right answers with true steps become targets, masked like answer_sequence."""
import data
import discuss
from discuss import Transcript, Turn
from exercises.own_turns import own_turn_sequences, verified

TASK = data.get_task("arith")
TOK = data.get_tokenizer("arith")
EX = data.Example(question="A box has 7 cookies . 3 are taken out . 13 more are put in . "
                           "How many cookies are in the box now ?",
                  rationale="7 - 3 = 4\n4 + 13 = 17", answer="17", id="test-1159")  # the walkthrough's test-1159

CASES = {  # learner text -> (verified?, why)
    "7 - 3 = 4\n4 + 13 = 17\n#### 17": (True, "the gold derivation"),
    "7 - 3 = 5\n5 + 13 = 17\n#### 17": (False, "right answer, false steps (a real warm-up answer)"),
    "7 - 3 = 4\n4 + 13 = 18\n#### 18": (False, "wrong answer, the last step false"),
    "13 - 3 = 10\n10 + 7 = 17\n#### 17": (True, "another route: true steps, every number from the question "
                                                "or an earlier step, right answer"),
    "#### 17": (False, "no steps at all"),
    "I think it is 17": (False, "no steps, no '####'"),
    "7 - 3 = 4\n4 + 12 = 16\n#### 16": (False, "true steps, wrong answer"),
    "7 - 3 = 4\n4 * 4 = 17\n#### 17": (False, "right answer, the last step false"),
    "7 - 3 = 5\n5 + 12 = 17\n#### 17": (False, "right answer, the first step false"),
}
EITHER = [  # true steps and the right answer, but a number that is neither in the question nor an earlier
    "7 + 10 = 17\n#### 17",  # result: the exercise's verifier may accept them, a grounded one rejects them
    "7 - 3 = 4\n4 + 13 = 17\n17 * 1 = 17\n#### 17",
]


def test_verified(attempt):
    for text, (expected, why) in CASES.items():
        got = attempt(verified, TASK, EX, text)
        assert got == expected, f"verified(task, ex, {text!r}) is {got}, should be {expected}: {why}"
    for text in EITHER:  # both readings pass; they must still be answered with a bool
        assert attempt(verified, TASK, EX, text) in (True, False), f"verified must return a bool for {text!r}"


def test_own_turn_sequences_are_masked_like_answer_sequence(attempt):
    remark = Turn("partner", "I disagree. 7 - 3 = 2\n#### 2", "2", "oppose")
    trs = [Transcript(EX.question, EX.answer, "oppose", EX.id, [Turn("learner", text, TASK.extract(text)), remark])
           for text in CASES]
    seqs = attempt(own_turn_sequences, TOK, TASK, trs, [EX] * len(trs))
    assert attempt(own_turn_sequences, TOK, TASK, trs[1:3], [EX] * 2) == [], "no verified turn: no sequence"
    chosen = [text for text, (ok, _) in CASES.items() if ok]
    assert len(seqs) == len(chosen), f"{len(seqs)} sequences for {len(chosen)} verified first turns"
    idx, targets = data.make_batch(TOK, seqs, 256)
    for r, text in enumerate(chosen):
        supervised = [t for t in targets[r].tolist() if t != -100]
        assert TOK.decode(supervised) == " " + text + "<|endoftext|>", \
            f"sequence {r}: the only target is the learner's own turn {text!r} and its end of turn"
        context = idx[r, : (targets[r] != -100).nonzero()[0].item() + 1].tolist()
        assert TOK.decode(context) == f"Question: {EX.question}\nAnswer:", \
            f"sequence {r}: the context is the question alone (the remark is not in it)"
    assert seqs[0] == discuss.answer_sequence(TOK, TASK, EX), \
        "for the gold text the sequence is exactly discuss.answer_sequence's"
