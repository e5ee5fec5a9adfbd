"""Exercise 1 (min_p): min-p keeps exactly the tokens with p >= min_p * p_max, and plugs into generate."""
import torch

import model as M
from exercises.min_p import min_p_filter, min_p_sampling
from model import GPT, GPTConfig


def _logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 50, generator=g) * torch.tensor([0.3, 1, 2, 3, 5, 8])[:, None]  # flat to peaked rows


def test_min_p_keeps_exactly_the_tokens_above_the_threshold(attempt):
    logits = _logits()
    before = logits.clone()
    for min_p in (0.01, 0.1, 0.3, 0.7):
        out = attempt(min_p_filter, logits, min_p)
        assert out.shape == logits.shape and out.dtype == logits.dtype
        assert torch.equal(logits, before), "min_p_filter must not modify its input"
        p = logits.softmax(-1)
        threshold = min_p * p.max(-1, keepdim=True).values
        clear = (p - threshold).abs() > 1e-6 * threshold  # leave exact ties at the threshold to rounding
        kept = torch.isfinite(out)
        assert torch.equal(kept[clear], (p >= threshold)[clear]), f"min_p={min_p}: wrong tokens kept"
        assert torch.all(out[~kept] == float("-inf")), "removed tokens must be -inf"
        assert torch.equal(out[kept], logits[kept]), "kept tokens keep their logits"
        assert kept.any(-1).all(), "the most probable token is always kept"
    # flat rows keep more tokens than peaked ones
    counts = torch.isfinite(min_p_filter(logits, 0.1)).sum(-1)
    assert counts[0] > counts[-1]


def test_min_p_edges(attempt):
    logits = _logits()
    assert torch.equal(attempt(min_p_filter, logits, 0.0), logits)
    top = attempt(min_p_filter, logits, 1.0)
    assert torch.equal(torch.isfinite(top).sum(-1), torch.ones(6, dtype=torch.long))
    assert torch.equal(top.argmax(-1), logits.argmax(-1))


def test_min_p_sampling_only_draws_kept_tokens(attempt):
    logits = _logits()
    allowed = torch.isfinite(attempt(min_p_filter, logits / 0.8, 0.2))
    gen = torch.Generator().manual_seed(0)
    with min_p_sampling(0.2):
        for _ in range(100):
            tok = M._sample(logits, 0.8, None, None, gen)
            assert allowed[torch.arange(6), tok].all()
        model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, n_embd=16))
        out = model.generate([[1, 2, 3], [4]], 8, temperature=0.9, top_p=0.95, seed=0)
        assert [len(r) for r in out] == [8, 8]
    assert M._sample is not None and M._sample.__name__ == "_sample", "the context restores model._sample"
