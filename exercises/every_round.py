"""Exercise 3: more rounds, and a target after every round (docs/exercises.md#3-every_round).

With --rounds R the transcript holds R learner turns and R remarks, but saie.py trains only two
of the learner's positions: after the whole discussion (discuss.learner_sequence) and before it
(the plain pair). Fill in round_sequences() to train the gold answer after every round, then
compare accuracy by round with the default:

    python saie.py --method saie --rounds 2 --steps 80 --eval-rounds 3 --out out/rounds2
    python -m exercises.every_round --method saie --rounds 2 --steps 80 --eval-rounds 3 --out out/every-round
    python eval.py --compare out/rounds2/eval/saie-forced/results.json out/every-round/eval/saie-forced/results.json
"""
import sys

from exercises import harness
from data import cli


def round_sequences(tok, tr, target):
    """R + 1 training sequences for a transcript of R rounds (learner turn, remark, ...): sequence k has
    the question and the first k rounds as context and `target` as the learner's next turn. Sequence 0
    is discuss.answer_sequence's plain pair, sequence R is discuss.learner_sequence(tok, tr, target)."""
    raise NotImplementedError  # exercise 3


def sequences(tok, task, transcripts, examples, args):
    """Every round's sequence; the plain one (k = 0) keeps its --plain-weight."""
    seqs, weights = [], []
    for tr, ex in zip(transcripts, examples):
        rs = round_sequences(tok, tr, task.target(ex))
        seqs += rs
        weights += [args.plain_weight] + [1.0] * (len(rs) - 1)
    return seqs, weights


def main(argv=None):
    harness.run(harness.discussion_batches(sequences), sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    cli(main, "exercises.every_round")
