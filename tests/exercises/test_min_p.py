"""Exercise 1 (min_p): min-p keeps exactly the tokens with p >= min_p * p_max, and plugs into generate."""
import torch

import model as M
from exercises.min_p import min_p_filter, min_p_sampling
from model import GPT, GPTConfig

INF = float("inf")


def _logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 50, generator=g) * torch.tensor([0.3, 1, 2, 3, 5, 8])[:, None]  # flat to peaked rows


def test_min_p_keeps_exactly_the_tokens_above_the_threshold(attempt):
    logits = _logits()
    before = logits.clone()
    for min_p in (0.01, 0.1, 0.3, 0.7):
        out = attempt(min_p_filter, logits, min_p)
        assert isinstance(out, torch.Tensor) and out.shape == logits.shape and out.dtype == logits.dtype, \
            f"min_p={min_p}: return a tensor of the input's shape and dtype"
        assert torch.equal(logits, before), "min_p_filter must not modify its input"
        # first the values: a removed token is -inf (0 is an ordinary logit, and probabilities are not logits)
        changed = out != logits
        wrong = out[changed & (out != -INF)]
        assert wrong.numel() == 0, (f"min_p={min_p}: every entry must be its own logit (kept) or -inf (removed); "
                                    f"found {wrong[:3].tolist()} (0 instead of -inf? probabilities?)")
        # then which tokens: p >= min_p * p_max, row by row
        kept = ~changed
        p = logits.softmax(-1)
        threshold = min_p * p.max(-1, keepdim=True).values
        clear = (p - threshold).abs() > 1e-6 * threshold  # leave exact ties at the threshold to rounding
        expected = p >= threshold
        assert torch.equal(kept[clear], expected[clear]), (
            f"min_p={min_p}: wrong tokens kept: {kept.sum(-1).tolist()} tokens per row, expected "
            f"{expected.sum(-1).tolist()} (keep p >= min_p * p_max, p the softmax of the row)")
    counts = (min_p_filter(logits, 0.1) != -INF).sum(-1)
    assert counts[0] > counts[-1], f"a flat row keeps more tokens than a peaked one; kept per row {counts.tolist()}"


def test_min_p_edges(attempt):
    logits = _logits()
    assert torch.equal(attempt(min_p_filter, logits, 0.0), logits), "min_p=0 keeps every token with its logit"
    top = attempt(min_p_filter, logits, 1.0)
    counts = (top != -INF).sum(-1)
    assert torch.equal(counts, torch.ones(6, dtype=torch.long)), (
        f"min_p=1 keeps exactly the most probable token of each row (p >= 1 * p_max holds for it), "
        f"kept per row {counts.tolist()}"
        + (" (removing p <= min_p * p_max instead of p < ?)" if counts.sum() == 0 else " (removed = -inf)"))
    assert torch.equal(top.argmax(-1), logits.argmax(-1)), "min_p=1 keeps the argmax"


def test_min_p_sampling_only_draws_kept_tokens(attempt):
    logits = _logits()
    allowed = attempt(min_p_filter, logits / 0.8, 0.2) != -INF
    gen = torch.Generator().manual_seed(0)
    with min_p_sampling(0.2):
        for _ in range(100):
            tok = M._sample(logits, 0.8, None, None, gen)
            assert allowed[torch.arange(6), tok].all(), "inside min_p_sampling a removed token was drawn"
        model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, n_embd=16))
        out = model.generate([[1, 2, 3], [4]], 8, temperature=0.9, top_p=0.95, seed=0)
        assert [len(r) for r in out] == [8, 8], "generate runs inside min_p_sampling (with top_p too)"
    assert M._sample.__name__ == "_sample", "the context restores model._sample"
