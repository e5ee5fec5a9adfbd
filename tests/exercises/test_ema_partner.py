"""Exercise 6 (ema_partner): the EMA formula, once per tensor, in place, without autograd; wired into training."""
import types

import torch

import data
import discuss
import saie
from exercises.ema_partner import ema_partner, ema_update
from model import GPT, GPTConfig


def _pair(tied=True):
    cfg = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16, tie_embeddings=tied)
    torch.manual_seed(0)
    partner = GPT(cfg).requires_grad_(False)
    torch.manual_seed(1)
    learner = GPT(cfg)
    return partner, learner


def test_ema_formula(attempt):
    for tied in (True, False):
        partner, learner = _pair(tied)
        p0 = {k: v.clone() for k, v in partner.state_dict().items()}
        l0 = {k: v.clone() for k, v in learner.state_dict().items()}
        ids = {k: v.data_ptr() for k, v in partner.state_dict().items()}
        attempt(ema_update, partner, learner, 0.9)
        for k, v in partner.state_dict().items():
            torch.testing.assert_close(v, 0.9 * p0[k] + 0.1 * l0[k], rtol=1e-5, atol=1e-7, msg=f"{k} (tied={tied})")
            assert v.data_ptr() == ids[k], "update in place: the partner's Speaker holds these tensors"
        for k, v in learner.state_dict().items():
            assert torch.equal(v, l0[k]), "the learner is not changed"
        assert (partner.lm_head.weight is partner.wte.weight) == tied
        assert all(p.grad_fn is None and not p.requires_grad for p in partner.parameters())


def test_ema_edges(attempt):
    partner, learner = _pair()
    p0 = {k: v.clone() for k, v in partner.state_dict().items()}
    attempt(ema_update, partner, learner, 1.0)
    assert all(torch.equal(v, p0[k]) for k, v in partner.state_dict().items())
    ema_update(partner, learner, 0.0)
    assert all(torch.equal(v, learner.state_dict()[k]) for k, v in partner.state_dict().items())


def test_ema_partner_follows_each_saie_step_only(probe):
    probe(ema_update, *_pair(), 0.5)
    partner, learner = _pair()
    tok = data.get_tokenizer("arith")
    args = types.SimpleNamespace(weight_decay=0.0)

    def one_step():
        before = {k: v.clone() for k, v in partner.state_dict().items()}
        opt = saie.make_optimizer(learner, args, 1e-2, "cpu")
        learner(torch.tensor([[1, 2, 3]]))[0].sum().backward()
        opt.step()
        opt.zero_grad()
        return before

    with ema_partner(0.5):
        discuss.Speaker(partner, tok, 4)          # saie.main: the partner's Speaker, before SFT and SAIE
        before = one_step()                       # an SFT step: no learner Speaker yet, the partner stays
        assert all(torch.equal(v, before[k]) for k, v in partner.state_dict().items())
        discuss.Speaker(learner, tok, 4)          # saie.main: the learner's Speaker, just before SAIE
        before = one_step()
        for k, v in partner.state_dict().items():
            torch.testing.assert_close(v, 0.5 * before[k] + 0.5 * learner.state_dict()[k], rtol=1e-5, atol=1e-7)
    assert discuss.Speaker.__name__ == "Speaker" and saie.make_optimizer.__module__ == "saie", "patches undone"
