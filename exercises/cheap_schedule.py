"""Exercise 5: what discussion costs, and a cheaper schedule (docs/exercises.md#5-cheap_schedule).

A SAIE step generates two turns per question before its forward/backward pass; an SFT step does
not generate at all. Fill in cheap_batches(): discuss only on every `every`-th batch and train the
other batches like SFT, on the same stream of questions. Then time it:

    python -m exercises.cheap_schedule --every 4 --method saie --out out/cheap4

and compare with the README's SFT and SAIE rows (or your own `python saie.py`).
"""
import sys

from exercises import harness
from data import cli


def cheap_batches(learner, partner, tok, task, examples, args, rank, world, start, transcripts_path, every):
    """A drop-in for saie.saie_batches (same arguments, plus `every`). Batch i (counting from 0, also
    when resuming at `start`) is exactly what saie.saie_batches yields as its batch i when
    i % every == 0, and exactly what saie.sft_batches(..., learn_remarks=False) yields as its
    batch i otherwise. Those batches must not generate anything: a plain batch costs what an SFT
    batch costs."""
    raise NotImplementedError  # exercise 5


def main(argv=None):
    (ours, rest) = harness.split_args(sys.argv[1:] if argv is None else argv,
                                      ("--every", int, 4, "discuss on every N-th batch"))

    def batches(*a):
        return cheap_batches(*a, every=ours.every)
    harness.run(batches, rest)


if __name__ == "__main__":
    cli(main, "exercises.cheap_schedule")
