"""Exercise 3 (every_round): one sequence per round, each with the gold answer as its only target."""
import data
import discuss
from discuss import Transcript, Turn
from exercises.every_round import round_sequences

TASK = data.get_task("arith")
TOK = data.get_tokenizer("arith")
EX = TASK.load("test")[7]  # Leo has 12 cards . He keeps only one in 2 . He buys 20 more . ... -> 26
GOLD = TASK.target(EX)
TURNS = [Turn("learner", "12 / 2 = 6\n6 + 20 = 30\n#### 30", "30"),
         Turn("partner", "I disagree. 12 / 2 = 5\n5 + 20 = 27\n#### 27", "27", "oppose"),
         Turn("learner", "12 / 2 = 6\n6 + 20 = 27\n#### 27", "27"),
         Turn("partner", "I disagree. 12 / 2 = 6\n6 + 20 = 26\n#### 26", "26", "oppose"),
         Turn("learner", "12 / 2 = 6\n6 + 20 = 26\n#### 26", "26"),
         Turn("partner", "I disagree. 12 - 2 = 10\n10 + 20 = 30\n#### 30", "30", "oppose")]


def _transcript(rounds):
    return Transcript(EX.question, EX.answer, "oppose", EX.id, list(TURNS[: 2 * rounds]))


def test_one_sequence_per_round(attempt):
    for rounds in (0, 1, 2, 3):
        tr = _transcript(rounds)
        seqs = attempt(round_sequences, TOK, tr, GOLD)
        assert len(seqs) == rounds + 1
        assert seqs[0] == discuss.answer_sequence(TOK, TASK, EX)
        assert seqs[-1] == discuss.learner_sequence(TOK, tr, GOLD)
        assert len(tr.turns) == 2 * rounds, "the transcript itself is not changed"
        for k, seq in enumerate(seqs):
            assert seq == discuss.learner_sequence(TOK, _transcript(k), GOLD)


def test_every_sequence_is_masked_to_the_gold_turn(attempt):
    seqs = attempt(round_sequences, TOK, _transcript(3), GOLD)
    idx, targets = data.make_batch(TOK, seqs, 256)
    for k in range(4):
        supervised = [t for t in targets[k].tolist() if t != -100]
        assert TOK.decode(supervised) == " " + GOLD + "<|endoftext|>"
        first = (targets[k] != -100).nonzero()[0].item()
        context = TOK.decode(idx[k, : first + 1].tolist())
        assert context.endswith("Answer:") and context.count("Partner:") == k and context.count("Answer:") == k + 1
