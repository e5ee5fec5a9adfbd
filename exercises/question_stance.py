"""Exercise 4: a third stance, `question` (docs/exercises.md#4-question_stance).

Besides agreeing or disagreeing, a partner could ask: "I have a question. Is 12 / 2 = 5 right ?"
It names no answer of its own, so the learner must check its own step. A stance needs three
things: its forced opener (discuss.OPENER, given below), remarks that teach a trained partner
the format (remark_sequences), and a way to measure whether remarks carry it (stance_alignment).

    python -m exercises.question_stance --init assets/arith-warmup.pt --warmup-steps 200 \\
        --warmup-lr 1e-3 --steps 150 --method saie --out out/question

continues the shipped warm-up for 200 steps with the three-stance remarks (learner and partner
start from it), then trains SAIE with the stances mixed 1/3 each and evaluates.
"""
import contextlib
import sys

import discuss
import saie
from exercises import harness

STANCE = "question"
OPENER = "I have a question."


def question_remark(learner_text, rng):
    """The text after the opener: one question that ends with '?' and names no answer of its own
    (no '####'). When learner_text has steps 'a op b = r' (data.STEP), quote one of them, picked with
    rng, word for word: 'Is 12 / 2 = 5 right ?'. Otherwise ask something that quotes no step."""
    raise NotImplementedError  # exercise 4


def remark_sequences(tok, task, examples, rng):
    """discuss.remark_sequences with three stances: the stance is rng.choice(discuss.STANCES) (inside
    registered() that includes 'question'); a question remark is question_remark(the learner's answer,
    rng). As there, the context is render(..., 'partner'), which ends with the forced opener, and the
    remark (without its opener) plus the end-of-turn token is the only target."""
    raise NotImplementedError  # exercise 4


def stance_alignment(transcripts):
    """discuss.stance_alignment, where a `question` remark (a partner turn after a learner turn) counts
    as aligned when it has no '####' and ends with '?'."""
    raise NotImplementedError  # exercise 4


@contextlib.contextmanager
def registered():
    """Within this block discuss knows the third stance: stances_for(..., 'both') mixes all three,
    render() and Speaker force its opener. Given code."""
    stances, openers = discuss.STANCES, dict(discuss.OPENER)
    discuss.STANCES = stances + (STANCE,)
    discuss.OPENER[STANCE] = OPENER
    try:
        yield
    finally:
        discuss.STANCES = stances
        discuss.OPENER.clear()
        discuss.OPENER.update(openers)


def main(argv=None):
    import eval as evaluation
    with registered(), \
            harness.swapped(discuss, "remark_sequences", remark_sequences), \
            harness.swapped(discuss, "stance_alignment", stance_alignment), \
            harness.swapped(evaluation, "stance_alignment", stance_alignment):
        saie.main(sys.argv[1:] if argv is None else argv)   # warm-up remarks, logged `aligned`, eval `alignment`


if __name__ == "__main__":
    saie.data.cli(main, "exercises.question_stance")
