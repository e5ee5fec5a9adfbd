"""Exercise 2: learn from the learner's own correct turns (docs/exercises.md#2-own_turns).

In a SAIE batch the learner's own first answer is context only. When it is right, it could also be a
target (as in STaR, self-taught reasoning), but "right" on arith is only checked on the final
number: '7 - 3 = 5\\n5 + 13 = 17\\n#### 17' has the right answer and a false step. Fill in verified()
and own_turn_sequences(); then train with them and compare with the default:

    python -m exercises.own_turns --method saie --out out/own-turns
"""
import sys

import saie
from exercises import harness


def verified(task, ex, text):
    """True when `text` (an arith answer) is correct for `ex` by task.is_correct AND it has at least one
    step 'a op b = r' (data.STEP finds them) AND every step is true arithmetic (data._apply computes
    a op b, or None when that is not a whole number in range). Whether a step may use a number that is
    neither in the question nor an earlier result ('7 + 10 = 17') is yours to decide: the check accepts
    both; rejecting it (grounding) is the extension in docs/exercises.md."""
    raise NotImplementedError  # exercise 2


def own_turn_sequences(tok, task, transcripts, examples):
    """One training sequence (question -> the learner's own first turn, as discuss.answer_sequence builds
    question -> gold) for each transcript whose first learner turn is verified(); [] when none is."""
    raise NotImplementedError  # exercise 2


def sequences(tok, task, transcripts, examples, args):
    """saie.py's sequences, plus the learner's verified own turns (weight 1)."""
    seqs, weights = saie.discussion_sequences(tok, task, transcripts, examples, args)
    own = own_turn_sequences(tok, task, transcripts, examples)
    return seqs + own, weights + [1.0] * len(own)


def main(argv=None):
    harness.run(harness.discussion_batches(sequences), sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    saie.data.cli(main, "exercises.own_turns")
