"""What the benchmarks share: the model shapes they run at, the Hugging Face peer built at each, FLOP counts
and this machine's measured speed.

Every shape is a Hugging Face config: the peer is built from it with random weights, saved with
`save_pretrained`, and ours loads that directory with `GPT.from_pretrained`, so both sides hold identical
weights and the loader is exercised too. The tiny shapes exist so tests can run each benchmark in seconds.
"""
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from model import GPT, ONEDNN_LINEAR, _hf_config  # noqa: E402

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
SHAPES = {  # name: (model_type, config kwargs)
    "gpt2": ("gpt2", {}),  # GPT-2 124M: transformers' defaults
    "llama3.2-1b": ("llama", dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                                  num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                                  max_position_embeddings=131072, rope_theta=500000.0, rope_scaling=LLAMA3_ROPE,
                                  rms_norm_eps=1e-5, tie_word_embeddings=True)),
    "smollm2-135m": ("llama", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                   num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                   max_position_embeddings=8192, rope_theta=100000.0,
                                   rms_norm_eps=1e-5, tie_word_embeddings=True)),
    "tiny-gpt2": ("gpt2", dict(n_layer=2, n_head=4, n_embd=64, n_positions=256, vocab_size=512, bos_token_id=511,
                               eos_token_id=511)),
    "tiny-llama": ("llama", dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                 rope_scaling=dict(LLAMA3_ROPE, factor=4.0, original_max_position_embeddings=64),
                                 tie_word_embeddings=True)),
}


def hf_config(shape):
    import transformers
    kind, kw = SHAPES[shape]
    if kind == "gpt2":
        return transformers.GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **kw)  # ours has no dropout
    return transformers.LlamaConfig(**kw)


def hf_model(shape):
    """The peer: a transformers model of this shape with random weights (seed 0), fp32 on CPU."""
    import transformers
    torch.manual_seed(0)
    cfg = hf_config(shape)
    cls = transformers.GPT2LMHeadModel if cfg.model_type == "gpt2" else transformers.LlamaForCausalLM
    return cls(cfg).eval()


def our_config(shape):
    return _hf_config(hf_config(shape).to_dict())  # the loader's own translation of config.json


def our_model(shape):
    """Our model of this shape with its own random init (for timing only: no peer weights to copy)."""
    torch.manual_seed(0)
    return GPT(our_config(shape))


def ours_from(hf, dtype, device):
    """Our model holding the peer's weights, through the same files a user would load."""
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        return GPT.from_pretrained(d, dtype=dtype, device=device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def measure_machine(device, dtype=torch.float32):
    """Copy bandwidth (GB/s, read + write) and matmul GFLOP/s in dtype, best of 4. On CPU the matmul rate is
    the faster of torch's default kernel and the oneDNN one that generation calls (model.cpu_decoding)."""
    x = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    bw = max(2 * x.numel() / timed(lambda: y.copy_(x), device) for _ in range(4)) / 1e9
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    kernels = [lambda: a @ a]
    if device.type == "cpu" and dtype == torch.float32 and ONEDNN_LINEAR is not None:
        kernels.append(lambda: ONEDNN_LINEAR(a, a))
    flops = max(2 * n**3 / timed(k, device) for k in kernels for _ in range(4)) / 1e9
    return bw, flops


def machine_name(device):
    """The GPU's name, or the CPU's model name (the same script can land on different hosts from day to day)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def matmul_params(model):
    """Weights that take part in a matrix product per token (every nn.Linear, lm_head included; not the
    embedding lookups): 2 FLOPs each per token forward, 6 forward + backward."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
