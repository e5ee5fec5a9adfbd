"""Exercise 6: a partner that follows the learner, as an exponential moving average (EMA)
(docs/exercises.md#6-ema_partner).

saie.py freezes the partner at the warm-up weights. An EMA partner moves with the learner:
after every optimizer step, partner <- decay * partner + (1 - decay) * learner. Fill in ema_update();
ema_partner() (given) calls it after each SAIE optimizer step, without editing saie.py:

    python -m exercises.ema_partner --decay 0.99 --method saie --out out/ema99
"""
import contextlib
import sys

import discuss
import saie
from exercises import harness


def ema_update(partner, learner, decay):
    """In place, for every parameter: partner <- decay * partner + (1 - decay) * learner. Both are GPTs
    of the same shape; the learner is not changed and no autograd graph is recorded. A tensor that two
    names share (tied embeddings: wte.weight is lm_head.weight) is updated once."""
    raise NotImplementedError  # exercise 6


@contextlib.contextmanager
def ema_partner(decay):
    """Given code. saie.main makes the partner's Speaker before training and the learner's Speaker just
    before the SAIE phase; we record both (discuss.Speaker is looked up when called) and wrap the
    optimizer's step (saie.make_optimizer, likewise) so that each SAIE step ends with ema_update()."""
    speakers, real_speaker, real_optimizer = [], discuss.Speaker, saie.make_optimizer

    class Recorded(real_speaker):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            speakers.append(self)

    def make_optimizer(model, args, lr, device):
        opt = real_optimizer(model, args, lr, device)
        step = opt.step

        def step_then_follow(*a, **kw):
            out = step(*a, **kw)
            learning = any(s.model is model for s in speakers)  # only the SAIE phase has a learner Speaker
            partners = [s.model for s in speakers if s.model is not model]
            if learning and partners:
                ema_update(partners[0], model, decay)
            return out
        opt.step = step_then_follow
        return opt

    discuss.Speaker, saie.make_optimizer = Recorded, make_optimizer
    try:
        yield speakers
    finally:
        discuss.Speaker, saie.make_optimizer = real_speaker, real_optimizer


def main(argv=None):
    ours, rest = harness.split_args(sys.argv[1:] if argv is None else argv,
                                    ("--decay", float, 0.99, "EMA decay of the partner per optimizer step"))
    with ema_partner(ours.decay):
        saie.main(rest)


if __name__ == "__main__":
    saie.data.cli(main, "exercises.ema_partner")
