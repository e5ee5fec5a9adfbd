"""The given exercise harness stays in step with saie.py: its default batches are saie.saie_batches'."""
import itertools
import types

import torch

import data
import discuss
import saie
from exercises import harness
from model import GPT, GPTConfig


def tiny_speaker():
    """arith's tokenizer and task, and a tiny random model that samples 6-token turns."""
    tok, task = data.get_tokenizer("arith"), data.get_task("arith")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=128, n_layer=1, n_head=2, n_embd=16))
    return tok, task, discuss.Speaker(model, tok, 6, temperature=1.0)


def test_discussion_batches_match_saie_batches(tmp_path):
    tok, task, sp = tiny_speaker()
    args = types.SimpleNamespace(batch_size=4, seed=3, stance="both", rounds=2, plain_weight=0.5)
    exs = task.load("test")[:20]
    ours = harness.discussion_batches()(sp, sp, tok, task, exs, args, 0, 1, 1, tmp_path / "a.jsonl")
    ref = saie.saie_batches(sp, sp, tok, task, exs, args, 0, 1, 1, tmp_path / "b.jsonl")
    assert list(itertools.islice(ours, 3)) == list(itertools.islice(ref, 3))
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_split_args():
    ours, rest = harness.split_args(["--every", "3", "--steps", "10"], ("--every", int, 4, ""))
    assert ours.every == 3 and rest == ["--steps", "10"]


def test_swapped_lets_a_replacement_call_the_original():
    module = types.SimpleNamespace(f=lambda x: x + 1, g=None)

    def gen(n):
        yield from range(n)
    module.g = gen

    def f2(x):
        return module.f(x) * 10          # the original inside the replacement

    def g2(n):
        for i in module.g(n):            # the original generator, advanced inside the replacement's
            yield -i

    with harness.swapped(module, "f", f2), harness.swapped(module, "g", g2):
        assert module.f(1) == 20
        assert list(module.g(3)) == [0, -1, -2]
        assert module.f is not f2 and module.f(2) == 30  # still swapped afterwards
    assert module.f(1) == 2 and module.g is gen


def test_discussion_batches_train_what_make_sequences_returns(monkeypatch):
    """The harness plugs the exercise's rows in: the batches carry make_sequences' rows and weights, built
    from this batch's transcripts and questions, and saie.main trains on harness.run's batches."""
    tok, task, sp = tiny_speaker()
    args = types.SimpleNamespace(batch_size=4, seed=3, stance="both", rounds=1, plain_weight=0.5)
    exs = task.load("test")[:20]
    seen = []

    def rows(tok_, task_, transcripts, examples, args_):
        seen.append(([tr.question for tr in transcripts], examples))
        return [discuss.answer_sequence(tok_, task_, ex) for ex in examples], [0.25] * len(examples)
    seqs, weights, stats = next(harness.discussion_batches(rows)(sp, sp, tok, task, exs, args, 0, 1, 0, None))
    (questions, examples), = seen
    assert questions == [ex.question for ex in examples] and len(examples) == 4
    assert seqs == [discuss.answer_sequence(tok, task, ex) for ex in examples]
    assert weights == [0.25] * 4 and set(stats) == {"learner_acc", "aligned"}

    used = []
    monkeypatch.setattr(saie, "main", lambda argv: used.append((saie.saie_batches, argv)))
    harness.run(rows, ["--steps", "1"])
    assert used == [(used[0][0], ["--steps", "1"])] and used[0][0] is not saie.saie_batches
    assert saie.saie_batches.__module__ == "saie"   # restored afterwards
