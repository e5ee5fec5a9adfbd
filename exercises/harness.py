"""Given code (not an exercise): run saie.py with one piece swapped, without editing it.

saie.main() builds its SAIE batches with `saie.saie_batches`, looked up when training starts, so
replacing that module attribute is enough (swapped()). discussion_batches(make_sequences) is
saie.saie_batches with its `sequences` step (saie.discussion_sequences: how the transcripts of a
batch become training rows) replaced.
"""
import argparse
import contextlib
import functools
import inspect

import saie


def discussion_batches(make_sequences=saie.discussion_sequences):
    """A drop-in for saie.saie_batches whose (sequences, weights) come from make_sequences."""
    return functools.partial(saie.saie_batches, sequences=make_sequences)


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
