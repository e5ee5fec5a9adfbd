"""Given code (not an exercise): run saie.py with one piece swapped, without editing it.

saie.main() builds its SAIE batches with `saie.saie_batches`, looked up when training starts, so
replacing that module attribute is enough (swapped()). discussion_batches() is saie.saie_batches
with one step made pluggable: how the transcripts of a batch become training sequences. The test
tests/exercises/test_harness.py keeps the two in step.
"""
import argparse
import contextlib
import inspect
import random

import data
import discuss
import saie


def default_sequences(tok, task, transcripts, examples, args):
    """What saie.saie_batches trains on: each discussion, then the plain question -> gold pair."""
    seqs = [discuss.learner_sequence(tok, tr, task.target(ex)) for tr, ex in zip(transcripts, examples)]
    seqs += [discuss.answer_sequence(tok, task, ex) for ex in examples]
    return seqs, [1.0] * len(examples) + [args.plain_weight] * len(examples)


def discussion_batches(make_sequences=default_sequences):
    """A drop-in for saie.saie_batches whose (sequences, weights) come from make_sequences."""
    def batches(learner, partner, tok, task, examples, args, rank, world, start, transcripts_path):
        for i, idx in enumerate(data.iterate_batches(len(examples), args.batch_size, args.seed, rank, world)):
            if i < start:
                continue
            exs = [examples[j] for j in idx]
            seed = saie.hash_seed(args.seed, i, rank)
            stances = discuss.stances_for(len(exs), args.stance, random.Random(seed))
            trs = discuss.discuss(learner, partner, task, exs, stances, args.rounds, seed=seed)
            if transcripts_path:
                with open(transcripts_path, "a") as f:
                    f.writelines(tr.to_json(step=i) + "\n" for tr in trs)
            seqs, weights = make_sequences(tok, task, trs, exs, args)
            stats = {"learner_acc": sum(task.is_correct(tr.turns[0].text, ex) for tr, ex in zip(trs, exs)) / len(exs),
                     "aligned": discuss.stance_alignment(trs)}
            yield seqs, weights, stats
    return batches


def split_args(argv, *flags):
    """Our own flags (name, type, default, help) out of argv; the rest goes to saie.py."""
    p = argparse.ArgumentParser(add_help=False)
    for name, kind, default, help in flags:
        p.add_argument(name, type=kind, default=default, help=help)
    return p.parse_known_args(argv)


@contextlib.contextmanager
def swapped(module, name, replacement):
    """Inside the block, module.name is `replacement` for its callers, but while the replacement itself
    runs (a generator: while it is advanced) module.name is the original again, so a replacement may
    call the function it replaces (cheap_batches may call saie.saie_batches) without calling itself."""
    original = getattr(module, name)

    def guarded(gen):
        while True:
            setattr(module, name, original)
            try:
                item = next(gen)
            except StopIteration:
                return
            finally:
                setattr(module, name, wrapper)
            yield item

    def wrapper(*args, **kwargs):
        setattr(module, name, original)
        try:
            out = replacement(*args, **kwargs)
        finally:
            setattr(module, name, wrapper)
        return guarded(out) if inspect.isgenerator(out) else out

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def run(batches, argv):
    """saie.main(argv) with saie.saie_batches replaced by `batches`."""
    with swapped(saie, "saie_batches", batches):
        saie.main(argv)
