"""Exercise 7 (qwen2): our GPT loaded from a Qwen2 directory matches transformers' Qwen2ForCausalLM."""
import pytest
import torch

from exercises.qwen2 import load_qwen2

VOCAB = 101


def _qwen2(transformers, tied):
    config = transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                      rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=tied)
    torch.manual_seed(0)
    hf = transformers.Qwen2ForCausalLM(config)
    with torch.no_grad():  # wider than HF's init, and biases that are not zero, so that every piece counts
        for name, p in hf.named_parameters():
            p.normal_(0, 0.3) if p.dim() >= 2 else p.normal_(1.0 if "norm" in name else 0.0, 0.3)
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    return hf.eval()


@pytest.mark.parametrize("tied", [True, False])
def test_qwen2_matches_transformers(probe, tmp_path, tied):
    probe(load_qwen2, tmp_path / "no-such-model")
    transformers = pytest.importorskip("transformers")
    hf = _qwen2(transformers, tied)
    hf.save_pretrained(tmp_path)
    ours = load_qwen2(tmp_path)
    assert ours.config.family == "llama"
    assert ours.h[0].attn.c_attn.bias is not None, "q/k/v carry biases"
    assert ours.num_params() == hf.num_parameters()
    assert (ours.lm_head.weight is ours.wte.weight) == tied
    assert ours.tokenizer_spec == str(tmp_path)
    idx = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max() <= 1e-4
    prompts = [[1, 2, 3], [5, 6, 7, 8, 9, 10, 11], [42]]
    expected = [hf.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False)[0, len(p):].tolist() for p in prompts]
    assert ours.generate(prompts, 12) == expected  # one left-padded batch through our KV cache
