"""One decoder-only transformer for GPT-2 and Llama 3.x. Read top to bottom: config, layers, the
model (its loss, batched KV-cache generation), checkpoints, Hugging Face and Meta weights with a
hand-written safetensors reader, and apart from the model, a CPU kernel choice for fast decoding.
Parameter names follow nanoGPT (wte, h.N.attn.c_attn, ...) for both families, q/k/v and gate/up
fused; RoPE uses Hugging Face's "rotate half" layout (Meta's q/k rows are permuted on load)."""
import json
import math
import mmap
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import data


@dataclass
class GPTConfig:
    family: str = "gpt2"            # "gpt2" | "llama"
    vocab_size: int = 50257
    block_size: int = 1024          # longest context the model accepts
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int | None = None    # llama grouped-query attention; None means n_head
    n_embd: int = 768
    intermediate_size: int | None = None   # MLP width; None: 4*n_embd (gpt2), ~8/3*n_embd (llama)
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None       # HF's, e.g. {"rope_type": "llama3", "factor": 32, ...}
    tie_embeddings: bool = True

    def __post_init__(self):
        if self.family not in ("gpt2", "llama"):
            raise ValueError(f"GPTConfig.family must be 'gpt2' or 'llama', not {self.family!r}")
        self.n_kv_head = self.n_kv_head or self.n_head
        if self.n_embd % self.n_head or self.n_head % self.n_kv_head:  # one line, not a shape error
            raise ValueError("GPTConfig: n_embd must divide by n_head, and n_head by n_kv_head")
        self.intermediate_size = self.intermediate_size or (
            4 * self.n_embd if self.family == "gpt2" else 64 * math.ceil(8 * self.n_embd / 3 / 64))


class WeightsError(data.DataError):
    """Any problem with a weights file. The message is one line and names the file."""


# -----------------------------------------------------------------------------
# Layers

def rope_frequencies(cfg):
    """Inverse frequencies of RoPE (head_dim/2 values), with Llama 3.1's long-context rescaling."""
    hd = cfg.n_embd // cfg.n_head
    exponents = torch.arange(0, hd, 2, dtype=torch.float64, device="cpu") / hd  # not on "meta"
    inv_freq = 1.0 / cfg.rope_theta ** exponents
    rs = cfg.rope_scaling
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        # Long wavelengths are slowed down by `factor`, short ones kept, the band between blended.
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old_len = rs["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        smooth = ((old_len / wavelen - low) / (high - low)).clamp(0, 1)
        band = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        inv_freq = torch.where(wavelen > old_len / low, inv_freq / factor,
                               torch.where(wavelen < old_len / high, inv_freq, band))
    return inv_freq.float()


def apply_rope(x, cos, sin):
    """x: (B, H, T, hd); cos, sin: (B, 1, T, hd). Rotates the pairs (i, i + hd/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):  # normalise in fp32 as Llama does, scale in the model's dtype
        return self.weight * F.rms_norm(x.float(), (x.size(-1),), eps=self.eps).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.n_kv_head = cfg.n_head, cfg.n_kv_head
        self.head_dim = cfg.n_embd // cfg.n_head
        bias = cfg.family == "gpt2"
        qkv = (cfg.n_head + 2 * cfg.n_kv_head) * self.head_dim
        self.c_attn = nn.Linear(cfg.n_embd, qkv, bias=bias)  # q, k, v in one product
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=bias)

    def forward(self, x, rope=None, cache=None, start=0, mask=None):
        B, T, C = x.shape
        hd, nq, nkv = self.head_dim, self.n_head, self.n_kv_head
        q, k, v = self.c_attn(x).split([nq * hd, nkv * hd, nkv * hd], dim=-1)
        q, k, v = (t.view(B, T, -1, hd).transpose(1, 2) for t in (q, k, v))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:  # write this step into the preallocated cache, attend to all so far
            for c, new in zip(cache, (k, v)):
                c[:, :, start:start + T] = new
            k, v = (c[:, :, :start + T] for c in cache)
        # Multi-token steps only start at position 0 (training, prefill), so is_causal is right.
        # enable_gqa shares each k/v head among nq/nkv query heads, not copying the cache each step.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           is_causal=mask is None and T > 1, enable_gqa=nkv != nq)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gpt2 = cfg.family == "gpt2"
        width = cfg.intermediate_size * (1 if self.gpt2 else 2)  # llama: gate and up fused
        self.c_fc = nn.Linear(cfg.n_embd, width, bias=self.gpt2)
        self.c_proj = nn.Linear(cfg.intermediate_size, cfg.n_embd, bias=self.gpt2)

    def forward(self, x):
        if self.gpt2:
            return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))
        gate, up = self.c_fc(x).chunk(2, dim=-1)
        return self.c_proj(F.silu(gate) * up)  # SwiGLU


def norm(cfg):
    if cfg.family == "gpt2":
        return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)
    return RMSNorm(cfg.n_embd, cfg.norm_eps)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = norm(cfg), Attention(cfg), norm(cfg), MLP(cfg)

    def forward(self, x, rope=None, cache=None, start=0, mask=None):
        x = x + self.attn(self.ln_1(x), rope, cache, start, mask)
        return x + self.mlp(self.ln_2(x))


# -----------------------------------------------------------------------------
# The model

def next_token_loss(logits, targets, weights=None):
    """The loss SFT and SAIE train on: cross-entropy of logits (N, vocab) against targets (N,),
    averaged with the weights (N,; None: all 1). No supervised token gives 0, not NaN."""
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    w = torch.ones_like(ce) if weights is None else weights.to(ce.dtype)
    return (ce * w).sum() / w.sum().clamp(min=1e-8)


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.tokenizer_spec = None
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        if config.family == "gpt2":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        else:  # kept fp32 and out of state_dict/.to(dtype): bf16 angles drift at long positions
            self.inv_freq = rope_frequencies(config)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self._tie()
        for m in self.modules():  # GPT-2's init, then its residual projections scaled by depth
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _tie(self):
        if self.config.tie_embeddings:  # one shared parameter, so fine-tuning cannot split them
            self.lm_head.weight = self.wte.weight

    def num_params(self):
        return sum(p.numel() for p in self.parameters())  # parameters() counts a tied tensor once

    def hidden(self, idx, pos, cache=None, start=0, mask=None):
        """Final-norm hidden states (B, T, C) of tokens idx at positions pos (B or 1, T)."""
        x, rope = self.wte(idx), None
        if self.config.family == "gpt2":
            x = x + self.wpe(pos)
        else:
            if self.inv_freq.device != pos.device:
                self.inv_freq = self.inv_freq.to(pos.device)
            angles = pos[..., None].float() * self.inv_freq  # (B, T, hd/2)
            angles = torch.cat((angles, angles), dim=-1)[:, None]
            rope = (angles.cos().to(x.dtype), angles.sin().to(x.dtype))
        for i, block in enumerate(self.h):
            x = block(x, rope, None if cache is None else cache[i], start, mask)
        return self.ln_f(x)

    def forward(self, idx, targets=None, weights=None):
        """Logits (B, T, vocab), and with targets (B, T) the loss of next_token_loss: targets of
        -100 are not supervised, row b is weighted by weights[b] when given."""
        if idx.size(1) > self.config.block_size:  # GPT-2 would index past wpe, Llama extrapolate
            raise ValueError(f"sequence of {idx.size(1)} tokens is longer than block_size "
                             f"{self.config.block_size}")
        x = self.hidden(idx, torch.arange(idx.size(1), device=idx.device)[None])
        if targets is None:
            return self.lm_head(x), None
        # Unlike nanoGPT, for speed: the vocabulary projection (a small model's biggest matmul) runs
        # at the supervised positions only, so these logits are theirs, (N, vocab) in reading order.
        keep = targets != -100
        logits = self.lm_head(x[keep])
        w = None if weights is None else weights[:, None].expand_as(targets)[keep]
        return logits, next_token_loss(logits, targets[keep], w)

    # Generation, gpt-fast style: prefill the prompts, then decode_step one token at a time.

    @torch.inference_mode()
    def generate(self, prompts, max_new_tokens, temperature=0.0, top_k=None, top_p=None, stop=None,
                 seed=None):
        """The new tokens (up to max_new_tokens) of each prompt (a list of token ids), in one batch,
        cut before the first token in `stop`. temperature=0 is greedy; seed seeds this call's own
        generator. Longer than block_size is a ValueError, never clamped. (No layer has a train/eval
        difference, so generate leaves the mode alone.)"""
        if not prompts or max_new_tokens <= 0:
            return [[] for _ in prompts]
        P, shortest = max(map(len, prompts)), min(map(len, prompts))
        if shortest == 0:
            raise ValueError("generate: every prompt needs at least one token")
        if P + max_new_tokens > self.config.block_size:
            raise ValueError(f"generate: prompt ({P} tokens) + max_new_tokens ({max_new_tokens}) "
                             f"exceeds block_size {self.config.block_size}")
        dev = self.wte.weight.device
        gen = torch.Generator(device=dev).manual_seed(seed) if seed is not None else None
        stop_ids = torch.tensor(sorted(stop), device=dev) if stop else None
        out = torch.zeros(len(prompts), max_new_tokens, dtype=torch.long, device=dev)
        rows = torch.arange(len(prompts), device=dev)  # original row of each row still in the batch
        done = torch.zeros(len(prompts), dtype=torch.bool, device=dev)
        check_every = 1 if dev.type == "cpu" else 8  # reading `done` on the host stalls a GPU
        with cpu_decoding(self):  # a CPU kernel choice, at the bottom of this file
            # The last sampled token is never fed back: P + max_new_tokens - 1 cache slots.
            logits, cache, pad = self.prefill(prompts, P + max_new_tokens - 1)
            padded = P > shortest
            for t in range(max_new_tokens):
                tok = _sample(logits, temperature, top_k, top_p, gen)
                out[rows, t] = tok
                if t == max_new_tokens - 1:
                    break
                if stop_ids is not None:
                    done |= torch.isin(tok, stop_ids)
                    n_done = int(done.sum()) if t % check_every == 0 else 0  # 0: not read
                    if n_done == len(rows):
                        break
                    if n_done >= max(1, len(rows) // 4):  # see drop_finished
                        cache, rows, tok, pad = drop_finished(done, cache, rows, tok, pad)
                        done, padded = done.new_zeros(len(rows)), bool(pad.any())
                logits = self.decode_step(tok, P + t, cache, pad, padded)
        stop = stop or set()
        return [row[:next((i for i, t in enumerate(row) if t in stop), len(row))]
                for row in out.tolist()]

    def prefill(self, prompts, cache_len):
        """The left-padded prompts in one pass, into a fresh KV cache of cache_len slots. Left
        padding puts every row's last prompt token in slot P-1, so all rows share one cache index.
        Returns the next-token logits (B, vocab), the cache, and each row's padding (B,)."""
        dev, cfg, P = self.wte.weight.device, self.config, max(map(len, prompts))
        pad = torch.tensor([P - len(p) for p in prompts], device=dev)
        idx = torch.tensor([[0] * (P - len(p)) + list(p) for p in prompts], device=dev)
        shape = (len(prompts), cfg.n_kv_head, cache_len, cfg.n_embd // cfg.n_head)
        cache = [tuple(torch.empty(shape, device=dev, dtype=self.wte.weight.dtype) for _ in "kv")
                 for _ in range(cfg.n_layer)]
        slots, mask = torch.arange(P, device=dev), None
        if P > min(map(len, prompts)):  # causal, no pad slots; a pad slot sees itself (no NaN)
            causal = torch.ones(P, P, dtype=torch.bool, device=dev).tril()
            itself = torch.eye(P, dtype=torch.bool, device=dev)
            mask = ((causal & (slots >= pad[:, None])[:, None]) | itself)[:, None]
        x = self.hidden(idx, (slots - pad[:, None]).clamp(min=0), cache, 0, mask)
        return self.lm_head(x[:, -1]), cache, pad

    def decode_step(self, tok, slot, cache, pad, padded=True):
        """Feed one token per row (B,) into cache slot `slot`; the next-token logits (B, vocab).
        pad: each row's left padding (B,), whose slots are masked when `padded`."""
        slots = torch.arange(slot + 1, device=tok.device)
        mask = (slots >= pad[:, None])[:, None, None] if padded else None
        x = self.hidden(tok[:, None], (slot - pad)[:, None], cache, slot, mask)
        return self.lm_head(x[:, -1])

    @classmethod
    def from_pretrained(cls, name_or_path, dtype=None, device=None):
        """Our checkpoint (.pt), a Hugging Face dir (config.json + safetensors), a Meta dir
        (params.json + consolidated.00.pth) or a hub name (gpt2, gpt2-medium, gpt2-large, gpt2-xl,
        meta-llama/...). Default dtype: fp32 on CPU, bf16 on CUDA."""
        path = Path(name_or_path)
        if path.is_file():
            ck = load_checkpoint(path)
            try:
                config, sd, spec = GPTConfig(**ck["config"]), ck["model"], ck.get("tokenizer")
            except (TypeError, ValueError) as e:
                raise WeightsError(f"{path}: bad config ({_one_line(e)})") from None
        else:
            path = path if path.is_dir() else _download(str(name_or_path))
            if (path / "params.json").is_file():
                config, sd = _read_meta(path)
            elif (path / "config.json").is_file():
                config, sd = _read_hf(path)
            else:
                raise WeightsError(f"{path}: has neither config.json (Hugging Face) "
                                   f"nor params.json (Meta)")
            spec = "gpt2" if config.family == "gpt2" else str(path)
        with torch.device("meta"):  # no memory, no random init: loaded tensors are assigned below
            model = cls(config)
        try:  # strict: names every missing, unexpected or mis-shaped tensor (and cat's complaint)
            model.load_state_dict(sd, assign=True)
        except RuntimeError as e:
            raise WeightsError(f"{path}: {_one_line(e)}") from None
        model._tie()
        model.tokenizer_spec = spec
        device = torch.device(device or "cpu")  # .to after the tie: the shared tensor converts once
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        return model.to(device, dtype or (torch.bfloat16 if device.type == "cuda" else torch.float))


def _sample(logits, temperature, top_k, top_p, gen):
    """Next token per row from logits (B, V): greedy at temperature 0, else top-k / nucleus."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    ids = None
    if top_k is not None:  # topk keeps exactly k candidates, ties or not; they come sorted
        logits, ids = logits.topk(min(top_k, logits.size(-1)), dim=-1)
    elif top_p is not None:
        logits, ids = logits.sort(dim=-1, descending=True)
    probs = logits.softmax(dim=-1)
    if top_p is not None:  # nucleus: the most probable tokens until their mass reaches top_p
        probs = probs.masked_fill(probs.cumsum(dim=-1) - probs >= top_p, 0.0)
    choice = torch.multinomial(probs, 1, generator=gen).squeeze(1)
    return choice if ids is None else ids.gather(1, choice[:, None]).squeeze(1)


def drop_finished(done, cache, *tensors):
    """Finished rows leave the batch and the KV cache, so that later steps cost less. generate
    calls it once a quarter of the rows are done, as each call copies the whole cache."""
    keep = (~done).nonzero().squeeze(1)
    return [(k[keep], v[keep]) for k, v in cache], *(x[keep] for x in tensors)


# -----------------------------------------------------------------------------
# Checkpoints

def save_checkpoint(path, model, **extra):
    """Atomically write {"version": 1, "config", "tokenizer", "model": state_dict, **extra}; extra
    holds what weights_only loads (containers and tensors: optimizer state, step, rng states)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile wraps the module; save the original
    obj = {"version": 1, "config": asdict(model.config), "tokenizer": model.tokenizer_spec,
           "model": model.state_dict(), **extra}
    data.write_atomic(path, lambda f: torch.save(obj, f))


def load_checkpoint(path):
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise WeightsError(f"{path}: {_unreadable(path, e)}") from None
    if not isinstance(ck, dict) or ck.get("version") != 1 or not {"config", "model"} <= ck.keys():
        raise WeightsError(f"{path}: not a saie checkpoint of version 1")
    return ck


def _unreadable(path, e):
    """What a file torch.load refused is, in plain words (torch speaks of mmap and pickles)."""
    if isinstance(e, OSError):
        return f"cannot read it ({e.strerror or _one_line(e)})"
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "an empty file, not a checkpoint"
    if head != b"PK\x03\x04":
        return "not a checkpoint: torch.save writes a zip archive, and this file is not one"
    if "Weights only" in str(e):
        return ("a torch.save file that holds Python objects besides tensors, numbers, strings, "
                "lists and dicts; not loaded, since loading those could run code")
    return ("a zip archive, but not a whole torch.save checkpoint (truncated, damaged, or another "
            "kind of zip)")


def _one_line(e, limit=400):
    """e on one line, cut at limit characters: torch's messages span many lines and can list
    hundreds of tensor names."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text if len(text) <= limit else text[:limit] + '...'}"


# -----------------------------------------------------------------------------
# Hugging Face and Meta weights

HUB_ALIASES = {n: f"openai-community/{n}" for n in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}

# Llama tensors, ours <- (Hugging Face, Meta), each a ".weight"; the names a string lists are
# concatenated in this order (q/k/v and gate/up are fused).
LLAMA_NAMES = [
    ("wte", "embed_tokens", "tok_embeddings"),
    ("ln_f", "norm", "norm"),
    ("lm_head", "lm_head", "output"),
    ("ln_1", "input_layernorm", "attention_norm"),
    ("attn.c_attn", "self_attn.q_proj self_attn.k_proj self_attn.v_proj",
     "attention.wq attention.wk attention.wv"),
    ("attn.c_proj", "self_attn.o_proj", "attention.wo"),
    ("ln_2", "post_attention_layernorm", "ffn_norm"),
    ("mlp.c_fc", "mlp.gate_proj mlp.up_proj", "feed_forward.w1 feed_forward.w3"),
    ("mlp.c_proj", "mlp.down_proj", "feed_forward.w2"),
]


def _to_ours(sd, config, fmt):
    """The file's tensors (fmt: "hf" or "meta") under our names. Names it does not know pass
    through, so that load_state_dict reports them with the missing ones."""
    sd = dict(sd)
    renames = LLAMA_NAMES if config.family == "llama" else []  # HF's GPT-2 names are nanoGPT's
    for ours, hf, meta in renames:
        top = ours in ("wte", "ln_f", "lm_head")
        for i in [None] if top else range(config.n_layer):
            mine, at = (ours, "") if top else (f"h.{i}.{ours}", f"layers.{i}.")
            theirs = [f"{at}{n}.weight" for n in (meta if fmt == "meta" else hf).split()]
            if all(n in sd for n in theirs):
                parts = [sd.pop(n) for n in theirs]
                sd[f"{mine}.weight"] = torch.cat(parts) if len(parts) > 1 else parts[0]
    if config.tie_embeddings and "wte.weight" in sd:  # over any copy in the file
        sd["lm_head.weight"] = sd["wte.weight"]  # one tensor; GPT._tie makes it one parameter
    return sd


def _read_hf(path):
    """A Hugging Face directory: config.json + model.safetensors (or the shards that
    model.safetensors.index.json lists)."""
    try:
        config = _hf_config(json.loads((path / "config.json").read_text()))
    except (OSError, KeyError, TypeError, ValueError) as e:
        why = e if isinstance(e, WeightsError) else f"not a usable config ({_one_line(e)})"
        raise WeightsError(f"{path / 'config.json'}: {why}") from None
    files, index = ["model.safetensors"], path / "model.safetensors.index.json"
    if not (path / files[0]).is_file() and index.is_file():
        files = _shards(index)
    sd = {k.removeprefix("transformer.").removeprefix("model."): v
          for f in files for k, v in load_safetensors(path / f).items()}
    if config.family == "gpt2":  # no causal-mask buffers; Conv1D stores (in, out), Linear (out, in)
        conv1d = ("c_attn.weight", "c_proj.weight", "c_fc.weight")
        sd = {k: v.t().contiguous() if k.endswith(conv1d) else v for k, v in sd.items()
              if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    return config, _to_ours(sd, config, "hf")


def _shards(index):
    try:
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise WeightsError(f"{index}: not a safetensors index ({_one_line(e)})") from None


def _hf_config(c):
    """Our GPTConfig of a config.json's dict: HF's names, and HF's defaults where one is absent."""
    if c.get("model_type") == "gpt2":
        return GPTConfig(family="gpt2", vocab_size=c["vocab_size"], block_size=c["n_positions"],
                         n_layer=c["n_layer"], n_head=c["n_head"], n_embd=c["n_embd"],
                         intermediate_size=c.get("n_inner"),
                         norm_eps=c.get("layer_norm_epsilon", 1e-5),
                         tie_embeddings=c.get("tie_word_embeddings", True))
    if c.get("model_type") != "llama":
        raise WeightsError(f"unsupported model_type {c.get('model_type')!r} (gpt2 and llama are)")
    rope = c.get("rope_scaling") or c.get("rope_parameters") or {}  # transformers 5's name
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "llama3"):
        raise WeightsError(f"unsupported rope type {rope_type!r}")
    heads = c["num_attention_heads"]
    if c.get("head_dim", c["hidden_size"] // heads) * heads != c["hidden_size"]:
        raise WeightsError("head_dim * num_attention_heads != hidden_size is not supported")
    return GPTConfig(family="llama", vocab_size=c["vocab_size"],
                     block_size=c["max_position_embeddings"], n_layer=c["num_hidden_layers"],
                     n_head=heads, n_kv_head=c.get("num_key_value_heads"), n_embd=c["hidden_size"],
                     intermediate_size=c["intermediate_size"], norm_eps=c.get("rms_norm_eps", 1e-5),
                     rope_theta=c.get("rope_theta", rope.get("rope_theta", 10000.0)),
                     rope_scaling=rope if rope_type == "llama3" else None,
                     tie_embeddings=c.get("tie_word_embeddings", False))


def _read_meta(path):
    """Meta's own format: params.json + consolidated.00.pth (one shard: the 1B-8B models)."""
    try:
        p = json.loads((path / "params.json").read_text())
        sd = torch.load(path / "consolidated.00.pth", map_location="cpu", weights_only=True,
                        mmap=True)
        dim, n_head, mult = p["dim"], p["n_heads"], p["multiple_of"]
        hidden = int((p.get("ffn_dim_multiplier") or 1) * int(8 * dim / 3))  # Meta's FeedForward
        # params.json has no scaling factors: Llama 3.2 (<= 3B, dim <= 3072) uses 32, 3.1 uses 8.
        scaling = {"rope_type": "llama3", "factor": 32.0 if dim <= 3072 else 8.0,
                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192} if p.get("use_scaled_rope") else None
        tied = ("output.weight" not in sd
                or torch.equal(sd["output.weight"], sd["tok_embeddings.weight"]))
        config = GPTConfig(family="llama", vocab_size=p["vocab_size"], n_layer=p["n_layers"],
                           n_head=n_head, n_kv_head=p.get("n_kv_heads"),
                           block_size=p.get("max_seq_len", 131072 if scaling else 8192),
                           n_embd=dim, intermediate_size=mult * math.ceil(hidden / mult),
                           norm_eps=p["norm_eps"], rope_theta=p.get("rope_theta", 10000.0),
                           rope_scaling=scaling, tie_embeddings=tied)
    except Exception as e:
        raise WeightsError(f"{path}: cannot read params.json / consolidated.00.pth "
                           f"({_one_line(e)})") from None
    hd = dim // n_head
    for i in range(config.n_layer):  # interleaved (Meta) -> rotate-half (ours) rows of q and k
        for name, n in (("wq", n_head), ("wk", config.n_kv_head)):
            w = sd.get(name := f"layers.{i}.attention.{name}.weight")
            if w is not None and w.shape[0] == n * hd:
                sd[name] = w.view(n, hd // 2, 2, -1).transpose(1, 2).reshape(n * hd, -1)
    sd = {k: v for k, v in sd.items() if not k.startswith("rope.")}  # Llama 2's rope.freqs
    return config, _to_ours(sd, config, "meta")


def _download(name):
    """The local folder of a hub repo's config.json, safetensors and tokenizer (data.hub_file)."""
    repo = HUB_ALIASES.get(name, name)
    if repo.count("/") != 1:
        raise WeightsError(f"{name}: not a file, a directory or a hub repo name "
                           f"(gpt2, gpt2-medium, meta-llama/...)")

    def fetch(filename):
        try:
            return Path(data.hub_file(repo, filename))
        except Exception as e:
            raise WeightsError(f"could not fetch {filename} of {repo} ({_one_line(e)}); without "
                               f"network, pass a local directory of its files") from None

    folder = fetch("config.json").parent
    try:
        fetch("model.safetensors")
    except WeightsError:  # big models come in shards listed by an index
        for shard in _shards(fetch("model.safetensors.index.json")):
            fetch(shard)
    data.hub_tokenizer(repo)  # data.get_tokenizer(folder) reads its tokenizer files
    return folder


# -----------------------------------------------------------------------------
# safetensors, read by hand: 8-byte little-endian header length, JSON header, little-endian data.

SAFETENSORS_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32,
    "I64": torch.int64, "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32,
    "F64": torch.float64, "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
MAX_HEADER = 100 * 2**20  # the format's own limit: a hostile length cannot make us read gigabytes


def load_safetensors(path):
    """{name: tensor} of a .safetensors file, mapped copy-on-write. Any defect is a WeightsError."""
    def need(ok, why):
        if not ok:
            raise WeightsError(f"{path}: {why}")

    def unique(pairs):  # json.loads would keep the last of two equal names without a word
        need(len(dict(pairs)) == len(pairs), "duplicate names in the header")
        return dict(pairs)

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            need(size >= 8, f"truncated: {size} bytes")
            n = int.from_bytes(f.read(8), "little")
            need(n <= min(MAX_HEADER, size - 8), f"header length {n} is impossible ({size} bytes)")
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        header = json.loads(buf[8:8 + n].decode("utf-8"), object_pairs_hook=unique)
    except WeightsError:
        raise
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({_one_line(e)})") from None
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, a 5000-digit number, [[[[...
        raise WeightsError(f"{path}: header is not UTF-8 JSON ({_one_line(e)})") from None
    need(isinstance(header, dict), "header is not a JSON object")
    header.pop("__metadata__", None)
    start, data_size = 8 + n, size - 8 - n
    file, spans, out = torch.frombuffer(buf, dtype=torch.uint8), [], {}
    for name, info in header.items():
        where = f"tensor {name!r}"
        need(isinstance(info, dict), f"{where}: entry is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        need(isinstance(dtype, str) and dtype in SAFETENSORS_DTYPES,  # a list would not even hash
             f"{where}: unknown dtype {dtype!r}")
        need(isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape),
             f"{where}: shape {shape!r} is not a list of non-negative integers")
        need(isinstance(offsets, list) and [type(o) for o in offsets] == [int, int]
             and 0 <= offsets[0] <= offsets[1] <= data_size,
             f"{where}: data_offsets {offsets!r} outside the {data_size} data bytes")
        dt, (begin, end) = SAFETENSORS_DTYPES[dtype], offsets
        nbytes = math.prod(shape) * dt.itemsize
        need(nbytes == end - begin, f"{where}: shape {shape} of {dtype} needs {nbytes} bytes, "
                                    f"not {end - begin}")
        raw = file[start + begin:start + end]
        if (start + begin) % dt.itemsize:  # misaligned data: copy it to aligned memory
            raw = raw.clone()
        out[name] = raw.view(dt).reshape(shape)
        spans.append((begin, end, name))
    spans.sort()
    for (_, end, a), (begin, _, b) in zip(spans, spans[1:]):
        need(begin >= end, f"tensors {a!r} and {b!r} overlap")
    return out


# -----------------------------------------------------------------------------
# CPU decoding speed, apart from the model; it changes no result. Decoding multiplies each weight by
# a few rows only, where torch's default fp32 CPU kernel (MKL) is slow; oneDNN's runs the same
# product on the same weight about twice as fast (bench/matmul.py), for weights that repay its cost
# per call (GPT-2's, not the arith model's). It has no backward: only generate uses it.

def _onednn_linear():
    """F.linear(x, w, b) through oneDNN's fp32 kernel (the internal op torch.compile's CPU backend
    calls), or None where this torch build lacks it or cannot run it."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        op(torch.ones(1, 2), torch.ones(3, 2), None, "none", [], "")
    except Exception:
        return None
    return lambda x, w, b=None: op(x, w, b, "none", [], "")  # "none": no fused activation


ONEDNN_LINEAR = _onednn_linear()
ONEDNN_MIN_WEIGHT = 2**19  # entries: below that, oneDNN's ~20 us per call costs more than it saves


@contextmanager
def cpu_decoding(model):
    """Inside, the model's nn.Linear layers of ONEDNN_MIN_WEIGHT weight entries or more compute
    through oneDNN if the model is fp32 on CPU; elsewhere nothing changes."""
    w = model.wte.weight
    on = ONEDNN_LINEAR is not None and w.device.type == "cpu" and w.dtype == torch.float32
    big = [m for m in model.modules()
           if on and isinstance(m, nn.Linear) and m.weight.numel() >= ONEDNN_MIN_WEIGHT]
    for m in big:
        m.forward = _onednn_forward.__get__(m)
    try:
        yield
    finally:
        for m in big:
            del m.forward


def _onednn_forward(self, x):
    if torch.compiler.is_compiling():  # torch.compile picks its own kernels
        return F.linear(x, self.weight, self.bias)
    return ONEDNN_LINEAR(x, self.weight, self.bias)


# -----------------------------------------------------------------------------
# A model to use: weights, tokenizer, and whether it learned the partner's remark role.

def load_model(name_or_path, device):
    """(model, tokenizer, remarks): remarks is whether our checkpoint learned the remark format in
    warm-up (its `remarks` field); other weights never did."""
    remarks = (Path(name_or_path).is_file()
               and bool(load_checkpoint(name_or_path).get("remarks", False)))
    model = GPT.from_pretrained(name_or_path, device=device).eval()
    return model, data.get_tokenizer(model.tokenizer_spec), remarks


def method_name(path):
    """A checkpoint's short name: 'sft' for out/sft/ckpt.pt, 'arith-warmup' for arith-warmup.pt."""
    p = Path(path)
    return p.parent.name if p.name == "ckpt.pt" else p.stem if p.suffix == ".pt" else str(path)
