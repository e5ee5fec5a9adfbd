"""Exercise 7: load a Qwen2-family model into model.py (docs/exercises.md#7-qwen2).

Qwen2 (and Qwen2.5) is Llama's architecture with one difference that matters for loading:
its q, k and v projections have biases (o_proj and the MLP have none). Our GPT builds its llama
attention without bias. Fill in load_qwen2(): read config.json, build a GPT of family "llama",
give every block's fused q/k/v projection (attn.c_attn) a bias, and fill it from
model.safetensors. The check compares logits and greedy generation with transformers'
Qwen2ForCausalLM on a tiny random model.

    python -m exercises.qwen2        # parity and speed against transformers on a tiny random Qwen2
"""
import time

import torch

from model import GPT
from data import cli


def load_qwen2(path, dtype=torch.float32):
    """A GPT (family "llama", q/k/v with bias) holding the weights of a Hugging Face Qwen2 directory:
    config.json (model_type "qwen2") and one model.safetensors. Tied or untied embeddings as the config
    says; rope_theta from the config (top level, or in "rope_parameters" as transformers 5 writes it).
    Set tokenizer_spec to str(path). Hints: model._read_hf, model.LLAMA_NAMES, model.load_safetensors."""
    raise NotImplementedError  # exercise 7


def main():
    import tempfile
    import transformers
    config = transformers.Qwen2Config(vocab_size=1000, hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                      rope_theta=1e6, tie_word_embeddings=True)
    torch.manual_seed(0)
    hf = transformers.Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)  # HF initialises biases to zero: make them count
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = load_qwen2(d)
    idx = torch.randint(0, 1000, (4, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(idx)[0] - hf(idx).logits).abs().max().item()
    print(f"{ours.num_params():,} parameters; max |logit difference| {diff:.2e}")
    prompts = idx[:, :16]
    t = time.time()
    a = ours.generate(prompts.tolist(), 64)
    t_ours = time.time() - t
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    t = time.time()
    b = hf.generate(prompts, max_new_tokens=64, do_sample=False)[:, 16:].tolist()
    t_hf = time.time() - t
    print(f"greedy 4 x 64 tokens: ours {t_ours:.2f}s, transformers {t_hf:.2f}s; same tokens: {a == b}")


if __name__ == "__main__":
    cli(main, "exercises.qwen2")
