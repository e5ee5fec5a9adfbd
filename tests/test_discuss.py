"""The learner/partner loop: rendering, batching of turns, masks, stances, transcripts."""
import random

import pytest
import torch

import data
import discuss
from discuss import Transcript, Turn
from model import GPT, GPTConfig


@pytest.fixture(scope="module")
def setup():
    tok = data.get_tokenizer("arith")
    task = data.get_task("arith")
    torch.manual_seed(0)
    model = GPT(GPTConfig(family="gpt2", vocab_size=tok.n_vocab, block_size=256, n_layer=2, n_head=2, n_embd=32))
    model.tokenizer_spec = tok.name
    return tok, task, model, task.load("train")[:6]


class ChatTok:
    """A character-level stand-in for the Llama 3 tokenizer: enough to read rendered chat text back."""
    names = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    chat, n_vocab, name = "llama3", 300, "fake-chat"
    bos, eot = 256, 259

    def special(self, name):
        return 256 + self.names.index(name)

    def encode(self, s):
        return list(s.encode())

    def decode(self, ids):
        return "".join(self.names[i - 256] if i >= 256 else chr(i) for i in ids)


def test_plain_rendering_and_the_learner_target(setup):
    tok, task, _, exs = setup
    ex = exs[0]
    tr = Transcript(ex.question, ex.answer, "oppose", turns=[Turn("learner", "1 + 1 = 2\n#### 2", "2")])
    assert tok.decode(discuss.encode(tok, discuss.render(tok, tr, "partner"))) == \
        f"Question: {ex.question}\nAnswer: 1 + 1 = 2\n#### 2<|endoftext|>\nPartner: I disagree."
    tr.turns.append(Turn("partner", "I disagree. 1 + 2 = 3\n#### 3", "3", "oppose"))
    seq = discuss.learner_sequence(tok, tr, task.target(ex))
    idx, targets = data.make_batch(tok, [seq], 256)
    full = idx[0].tolist() + [targets[0, -1].item()]
    # Only the final learner turn (the gold answer and its end-of-turn) is supervised.
    supervised = [t for t in targets[0].tolist() if t != -100]
    assert tok.decode(supervised) == " " + task.target(ex) + "<|endoftext|>"
    assert tok.decode(full).endswith("Partner: I disagree. 1 + 2 = 3\n#### 3<|endoftext|>\nAnswer: "
                                     + task.target(ex) + "<|endoftext|>")
    n_target = len(tok.encode(" " + task.target(ex))) + 1
    assert (targets[0] != -100).sum().item() == n_target
    assert (targets[0, -n_target:] != -100).all()


def test_prompted_partner_uses_the_llama3_chat_template():
    tok = ChatTok()
    tr = Transcript("What is 2 + 3?", "5", "support", turns=[Turn("learner", "2 + 3 = 5\n#### 5", "5")])
    text = tok.decode(discuss.encode(tok, discuss.render(tok, tr, "partner")))
    assert text == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                    + discuss.PARTNER_SYSTEM["support"] + "<|eot_id|>"
                    "<|start_header_id|>user<|end_header_id|>\n\nQuestion: What is 2 + 3?<|eot_id|>"
                    "<|start_header_id|>user<|end_header_id|>\n\nThe student answers: 2 + 3 = 5\n#### 5<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\nI agree.")
    tr.turns.append(Turn("partner", "I agree. 2 + 3 = 5\n#### 5", "5", "support"))
    learner = tok.decode(discuss.encode(tok, discuss.render(tok, tr, "learner")))
    assert learner.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                              + discuss.LEARNER_SYSTEM + "<|eot_id|>")
    assert ("<|start_header_id|>assistant<|end_header_id|>\n\n2 + 3 = 5\n#### 5<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nMy partner says: I agree.") in learner
    assert learner.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_stance_mix_honours_the_seed():
    a = discuss.stances_for(200, "both", random.Random(3))
    assert a == discuss.stances_for(200, "both", random.Random(3))
    assert a != discuss.stances_for(200, "both", random.Random(4))
    assert 60 < a.count("support") < 140 and set(a) == {"support", "oppose"}
    assert discuss.stances_for(5, "oppose", random.Random(0)) == ["oppose"] * 5
    with pytest.raises(ValueError):
        discuss.stances_for(5, "question", random.Random(0))


def test_one_round_is_batched_and_round_trips_through_json(setup, monkeypatch):
    tok, task, model, exs = setup
    calls = []
    generate = model.generate
    monkeypatch.setattr(model, "generate", lambda prompts, *a, **k: calls.append(len(prompts)) or generate(prompts, *a, **k))
    learner = discuss.Speaker(model, tok, max_new_tokens=8, temperature=0.7)
    partner = discuss.Speaker(model, tok, max_new_tokens=8)
    stances = discuss.stances_for(len(exs), "both", random.Random(0))
    trs = discuss.discuss(learner, partner, task, exs, stances, rounds=2, final_answer=True, seed=5)
    assert calls == [len(exs)] * 5  # one generate call per role and round: no per-example loop
    for tr, s in zip(trs, stances):
        assert [t.speaker for t in tr.turns] == ["learner", "partner"] * 2 + ["learner"]
        assert all(t.text.startswith(discuss.OPENER[s]) for t in tr.turns if t.speaker == "partner")
        assert Transcript.from_json(tr.to_json(step=3)) == tr
    again = discuss.discuss(learner, partner, task, exs, stances, rounds=2, final_answer=True, seed=5)
    assert again == trs  # seeded sampling: the same discussion twice

    seqs = [discuss.learner_sequence(tok, tr, task.target(ex)) for tr, ex in zip(trs, exs)]
    idx, targets = data.make_batch(tok, seqs, model.config.block_size)
    assert idx.shape == targets.shape and idx.shape[0] == len(exs)
    for row, ex in enumerate(exs):
        assert tok.decode([t for t in targets[row].tolist() if t != -100]) == " " + task.target(ex) + "<|endoftext|>"


def test_remark_examples_carry_their_stance(setup):
    tok, task, _, _ = setup
    exs = task.load("train")[:200]
    seqs = discuss.remark_sequences(tok, task, exs, random.Random(0))
    for seq, ex in zip(seqs, exs):
        context = tok.decode(discuss.encode(tok, [s for s, trainable in seq if not trainable]))
        remark = tok.decode(discuss.encode(tok, [s for s, trainable in seq if trainable]))
        learner_answer = task.extract(context.split("\nAnswer:")[1].split("<|endoftext|>")[0])
        remark_answer = task.extract(remark)
        assert remark_answer is not None
        if context.endswith("I agree."):
            assert remark_answer == learner_answer
        else:
            assert context.endswith("I disagree.") and remark_answer != learner_answer


def test_stance_alignment_counts_remarks_that_keep_their_stance():
    def tr(stance, learner, partner):
        return Transcript("q", "1", stance, turns=[Turn("learner", "", learner), Turn("partner", "", partner, stance)])
    trs = [tr("support", "3", "3"), tr("support", "3", "4"), tr("oppose", "3", "4"), tr("oppose", "3", None)]
    assert discuss.stance_alignment(trs) == 0.5


def test_out_of_memory_halves_the_generation_batch(setup, monkeypatch, capsys):
    tok, task, model, exs = setup
    generate = model.generate

    def small_memory(prompts, *a, **k):
        if len(prompts) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return generate(prompts, *a, **k)
    monkeypatch.setattr(model, "generate", small_memory)
    speaker = discuss.Speaker(model, tok, max_new_tokens=6)
    trs = [Transcript(ex.question, ex.answer) for ex in exs]
    texts = speaker.speak(trs, "learner", seed=0)
    assert len(texts) == len(exs)
    monkeypatch.setattr(model, "generate", generate)
    assert texts == speaker.speak(trs, "learner", seed=0)  # greedy: same turns, whatever the split
    assert "out of memory generating 6 turns at once; retrying as 3 + 3" in capsys.readouterr().out
