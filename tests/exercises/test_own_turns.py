"""Exercise 2 (own_turns): only right answers with true steps become targets, masked like answer_sequence."""
import data
import discuss
from discuss import Transcript, Turn
from exercises.own_turns import own_turn_sequences, verified

TASK = data.get_task("arith")
TOK = data.get_tokenizer("arith")
EX = TASK.load("test")[14]  # A box has 7 cookies . 3 are taken out . 13 more are put in . ... -> 17

CASES = {  # learner text -> verified?
    "7 - 3 = 4\n4 + 13 = 17\n#### 17": True,         # the gold derivation
    "7 - 3 = 5\n5 + 13 = 17\n#### 17": False,        # right answer, false steps (a real warm-up answer)
    "7 - 3 = 4\n4 + 13 = 18\n#### 18": False,        # wrong answer
    "7 + 10 = 17\n#### 17": True,                    # true steps, right answer, another route
    "#### 17": False,                                # no steps at all
    "I think it is 17": False,                       # no steps, no '####'
    "7 - 3 = 4\n4 + 13 = 17\n17 * 1 = 17\n#### 17": True,
    "7 - 3 = 4\n4 + 12 = 16\n#### 16": False,       # true steps, wrong answer
    "7 - 3 = 4\n4 * 4 = 17\n#### 17": False,        # right answer, the last step false
    "7 - 3 = 5\n5 + 12 = 17\n#### 17": False,       # right answer, the first step false
}


def test_verified(attempt):
    for text, expected in CASES.items():
        assert attempt(verified, TASK, EX, text) == expected, text


def test_own_turn_sequences_are_masked_like_answer_sequence(attempt):
    trs = [Transcript(EX.question, EX.answer, "oppose", EX.id, [Turn("learner", text, TASK.extract(text)),
                                                                Turn("partner", "I disagree. 7 - 3 = 2\n#### 2", "2", "oppose")])
           for text in CASES]
    seqs = attempt(own_turn_sequences, TOK, TASK, trs, [EX] * len(trs))
    assert attempt(own_turn_sequences, TOK, TASK, trs[1:3], [EX] * 2) == []
    chosen = [text for text, ok in CASES.items() if ok]
    assert len(seqs) == len(chosen)
    idx, targets = data.make_batch(TOK, seqs, 256)
    for r, text in enumerate(chosen):
        supervised = [t for t in targets[r].tolist() if t != -100]
        assert TOK.decode(supervised) == " " + text + "<|endoftext|>", "the target is the learner's own turn"
        n = len(supervised)
        context = idx[r, : (targets[r] != -100).nonzero()[0].item() + 1].tolist()
        assert TOK.decode(context) == f"Question: {EX.question}\nAnswer:", "the context is the question alone"
        assert n == (targets[r] != -100).sum()
    gold = discuss.answer_sequence(TOK, TASK, EX)
    assert seqs[0] == gold, "for the gold text it is exactly discuss.answer_sequence"
