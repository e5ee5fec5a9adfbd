"""Exercise 5 (cheap_schedule): discuss on every k-th batch only, the same questions, resumable."""
import itertools
import json
import types

import pytest
import torch

import data
import discuss
import saie
from exercises.cheap_schedule import cheap_batches
from model import GPT, GPTConfig

TASK = data.get_task("arith")
TOK = data.get_tokenizer("arith")
EXS = TASK.load("test")[:40]
ARGS = types.SimpleNamespace(batch_size=4, seed=3, stance="both", rounds=1, plain_weight=0.5)


class Counting(discuss.Speaker):
    calls = 0

    def speak(self, transcripts, role, seed=None):
        Counting.calls += 1
        return super().speak(transcripts, role, seed)


@pytest.fixture(scope="module")
def speakers():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TOK.n_vocab, block_size=128, n_layer=1, n_head=2, n_embd=16))
    return Counting(model, TOK, 6, temperature=1.0), Counting(model, TOK, 6, temperature=1.0)


def _take(gen, n):
    return list(itertools.islice(gen, n))


def _plain(batches):
    return [(seqs, list(weights), stats) for seqs, weights, stats in batches]


def test_discusses_every_kth_batch_only(attempt, speakers):
    learner, partner = speakers
    gen = attempt(cheap_batches, learner, partner, TOK, TASK, EXS, ARGS, 0, 1, 0, None, every=3)
    Counting.calls = 0
    got = attempt(_take, gen, 7)
    assert Counting.calls == 3 * 2, "batches 0, 3, 6 discuss (a learner turn and a remark each), the others do not"
    saie_ref = _take(saie.saie_batches(learner, partner, TOK, TASK, EXS, ARGS, 0, 1, 0, None), 7)
    sft_ref = _take(saie.sft_batches(TOK, TASK, EXS, ARGS, 0, 1, 0, False), 7)
    for i, (seqs, weights, stats) in enumerate(got):
        ref = saie_ref[i] if i % 3 == 0 else sft_ref[i]
        assert (seqs, list(weights), stats) == (ref[0], list(ref[1]), ref[2]), f"batch {i}"


def test_every_1_is_saie_and_resume_continues_the_schedule(attempt, speakers):
    learner, partner = speakers
    one = _take(attempt(cheap_batches, learner, partner, TOK, TASK, EXS, ARGS, 0, 1, 0, None, every=1), 3)
    ref = _take(saie.saie_batches(learner, partner, TOK, TASK, EXS, ARGS, 0, 1, 0, None), 3)
    assert _plain(one) == _plain(ref), "sequences, row weights (--plain-weight) and stats"
    full = _take(cheap_batches(learner, partner, TOK, TASK, EXS, ARGS, 0, 1, 0, None, every=2), 6)
    resumed = _take(cheap_batches(learner, partner, TOK, TASK, EXS, ARGS, 0, 1, 3, None, every=2), 3)
    assert _plain(resumed) == _plain(full[3:]), "resuming at batch 3 continues the same schedule"


def test_transcripts_are_written_for_discussion_batches_only(attempt, speakers, tmp_path):
    learner, partner = speakers
    path = tmp_path / "transcripts.jsonl"
    _take(attempt(cheap_batches, learner, partner, TOK, TASK, EXS, ARGS, 0, 1, 0, path, every=2), 4)
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines()]
    assert steps == [0] * 4 + [2] * 4
