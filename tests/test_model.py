"""model.py: parity with Hugging Face transformers (GPT-2, Llama 3 with GQA and llama3 RoPE scaling, tied and
untied, sharded), Meta's format, KV-cache generation, sampling, loss masking, checkpoints. Tiny models, offline."""
import json
from collections import Counter

import pytest
import torch

import model as M
from model import GPT, GPTConfig, WeightsError, load_checkpoint, save_checkpoint

transformers = pytest.importorskip("transformers")
VOCAB = 101


def _spread(hf):
    """Wider random weights than HF's 0.02 init, so greedy decoding does not just repeat one token."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    hf.generation_config.eos_token_id = None  # never stop early: compare a fixed number of tokens
    hf.generation_config.pad_token_id = 0
    return hf.eval()


def _llama_config(tied, **kw):
    scaling = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}
    args = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                vocab_size=VOCAB, max_position_embeddings=128, rope_theta=500000.0, rope_scaling=scaling,
                rms_norm_eps=1e-5, tie_word_embeddings=tied)
    return transformers.LlamaConfig(**{**args, **kw})


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """name -> (HF model, directory it was saved to)."""
    out = {}
    torch.manual_seed(0)
    gpt2 = _spread(transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=VOCAB, bos_token_id=0, eos_token_id=0)))
    for name, hf, shard in [("gpt2", gpt2, None),
                            ("llama_tied", _spread(transformers.LlamaForCausalLM(_llama_config(True))), None),
                            ("llama_untied", _spread(transformers.LlamaForCausalLM(_llama_config(False))), None),
                            ("llama_sharded", None, "20KB")]:
        hf = hf or out["llama_untied"][0]
        d = tmp_path_factory.mktemp(name)
        hf.save_pretrained(d, **({"max_shard_size": shard} if shard else {}))
        out[name] = (hf, d)
    assert (out["llama_sharded"][1] / "model.safetensors.index.json").is_file()
    return out


@pytest.fixture(params=["default", "onednn"])
def kernel(request, monkeypatch):
    """Run a test twice: with each Linear's usual kernel (MKL for these tiny weights), then with oneDNN's,
    which generation uses for real-sized weights."""
    if request.param == "onednn":
        if M.ONEDNN_LINEAR is None:
            pytest.skip("this torch build has no oneDNN linear kernel")
        monkeypatch.setattr(M, "ONEDNN_MIN_WEIGHT", 0)
    return request.param


IDX = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
PROMPTS = [[1, 2, 3], [5, 6, 7, 8, 9, 10, 11], [42]]


@pytest.mark.parametrize("name", ["gpt2", "llama_tied", "llama_untied", "llama_sharded"])
def test_logits_and_greedy_match_hf(hf_dirs, name, kernel):
    hf, d = hf_dirs[name]
    ours = GPT.from_pretrained(d)
    with torch.no_grad():
        assert (ours(IDX)[0] - hf(IDX).logits).abs().max() <= 1e-4
    expected = [hf.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False)[0, len(p):].tolist() for p in PROMPTS]
    assert ours.generate(PROMPTS, 12) == expected  # one padded batch
    assert ours.num_params() == hf.num_parameters()
    assert ours.tokenizer_spec == ("gpt2" if name == "gpt2" else str(d))
    if "untied" in name or "sharded" in name:
        assert ours.lm_head.weight is not ours.wte.weight
    else:
        assert ours.lm_head.weight is ours.wte.weight  # one shared parameter


def _hf_to_meta(hf, d, with_output=True):
    """Write HF Llama weights in Meta's layout: interleaved q/k rows, Meta names, params.json."""
    c = hf.config
    n_head, n_kv, hd = c.num_attention_heads, c.num_key_value_heads, c.hidden_size // c.num_attention_heads

    def unpermute(w, n):  # HF rotate-half rows -> Meta interleaved pairs
        return w.view(n, 2, hd // 2, -1).transpose(1, 2).reshape(w.shape)

    sd = {k.removeprefix("model."): v.clone() for k, v in hf.state_dict().items()}
    meta = {"tok_embeddings.weight": sd["embed_tokens.weight"], "norm.weight": sd["norm.weight"]}
    if with_output:
        meta["output.weight"] = sd.get("lm_head.weight", sd["embed_tokens.weight"])
    for i in range(c.num_hidden_layers):
        p, a = f"layers.{i}.", f"layers.{i}.self_attn."
        meta |= {p + "attention.wq.weight": unpermute(sd[a + "q_proj.weight"], n_head),
                 p + "attention.wk.weight": unpermute(sd[a + "k_proj.weight"], n_kv),
                 p + "attention.wv.weight": sd[a + "v_proj.weight"], p + "attention.wo.weight": sd[a + "o_proj.weight"],
                 p + "feed_forward.w1.weight": sd[p + "mlp.gate_proj.weight"],
                 p + "feed_forward.w2.weight": sd[p + "mlp.down_proj.weight"],
                 p + "feed_forward.w3.weight": sd[p + "mlp.up_proj.weight"],
                 p + "attention_norm.weight": sd[p + "input_layernorm.weight"],
                 p + "ffn_norm.weight": sd[p + "post_attention_layernorm.weight"]}
    d.mkdir(exist_ok=True)
    torch.save(meta, d / "consolidated.00.pth")
    (d / "params.json").write_text(json.dumps({
        "dim": c.hidden_size, "n_layers": c.num_hidden_layers, "n_heads": n_head, "n_kv_heads": n_kv,
        "vocab_size": c.vocab_size, "multiple_of": 32, "ffn_dim_multiplier": None, "norm_eps": c.rms_norm_eps,
        "rope_theta": 500000.0, "use_scaled_rope": True}))


@pytest.mark.parametrize("tied", [True, False])
def test_meta_format_matches_hf(tmp_path, tied):
    # Meta's FeedForward width for dim 32, multiple_of 32: int(2*128/3)=85 -> 96. The rope scaling Meta's
    # params.json leaves implicit is inferred as llama3 with factor 32 (dim <= 3072), original length 8192.
    scaling = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    torch.manual_seed(0)
    hf = _spread(transformers.LlamaForCausalLM(_llama_config(tied, intermediate_size=96, rope_scaling=scaling)))
    _hf_to_meta(hf, tmp_path / "meta")
    ours = GPT.from_pretrained(tmp_path / "meta")
    with torch.no_grad():
        assert (ours(IDX)[0] - hf(IDX).logits).abs().max() <= 1e-4
    assert (ours.lm_head.weight is ours.wte.weight) == tied  # Meta writes output.weight even when tied
    assert ours.config.rope_scaling["factor"] == 32.0 and ours.tokenizer_spec == str(tmp_path / "meta")
    assert ours.generate(PROMPTS[:2], 8) == [
        hf.generate(torch.tensor([p]), max_new_tokens=8, do_sample=False)[0, len(p):].tolist() for p in PROMPTS[:2]]


def _tiny(family, **kw):
    torch.manual_seed(0)
    cfg = GPTConfig(family=family, vocab_size=VOCAB, block_size=64, n_layer=2, n_head=4, n_embd=32,
                    n_kv_head=2 if family == "llama" else None, **kw)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_kv_cache_and_padding_match_full_recompute(family, kernel):
    model = _tiny(family)
    prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7], [1, 8, 2, 8, 1], [9]]
    expected = []
    for p in prompts:  # no cache: argmax of a full forward at every step
        seq = list(p)
        with torch.no_grad():
            for _ in range(15):
                seq.append(model(torch.tensor([seq]))[0][0, -1].argmax().item())
        expected.append(seq[len(p):])
    assert model.generate(prompts, 15) == expected
    assert [model.generate([p], 15)[0] for p in prompts] == expected


def test_stop_tokens_cut_rows_and_compaction_keeps_the_rest():
    model = _tiny("llama")
    prompts = [[i % VOCAB, (3 * i) % VOCAB, 5] for i in range(1, 13)]
    full = model.generate(prompts, 20)
    stop = {t for t, _ in Counter(t for row in full for t in row).most_common(2)}
    cut = [next((row[:i] for i, t in enumerate(row) if t in stop), row) for row in full]
    # Rows finish at many different steps, so the batch is compacted several times on the way.
    assert len({len(row) for row in cut}) >= 5 and min(map(len, cut)) < 5
    assert model.generate(prompts, 20, stop=stop) == cut


def test_sampling_is_seeded_and_topk_topp_behave():
    model = _tiny("gpt2")
    prompts = [[1, 2, 3], [4, 5]]
    a = model.generate(prompts, 10, temperature=1.0, seed=7)
    assert a == model.generate(prompts, 10, temperature=1.0, seed=7)
    assert a != model.generate(prompts, 10, temperature=1.0, seed=8)
    greedy = model.generate(prompts, 10)
    assert model.generate(prompts, 10, temperature=1.0, top_k=1, seed=3) == greedy
    assert model.generate(prompts, 10, temperature=1.0, top_p=1e-6, seed=3) == greedy
    g = torch.Generator().manual_seed(0)
    tied = torch.tensor([[5.0, 5.0, 5.0, 0.0, 0.0]]).repeat(500, 1)
    picks = set(M._sample(tied, 1.0, 2, None, g).tolist())
    assert len(picks) <= 2 and picks <= {0, 1, 2}  # exactly k kept, even on ties
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().repeat(2000, 1)
    picks = M._sample(probs, 1.0, None, 0.7, g)
    assert set(picks.tolist()) == {0, 1}  # nucleus: 0.5 + 0.3 reaches 0.7, nothing after
    assert set(M._sample(probs, 1.0, None, 0.85, g).tolist()) == {0, 1, 2}


def test_generate_limits_and_mode():
    model = _tiny("llama").train()
    with pytest.raises(ValueError, match="block_size"):
        model.generate([[1] * 60], 5)
    assert len(model.generate([[1] * 60], 4)[0]) == 4
    assert model.training  # left as it was
    assert model.generate([], 5) == [] and model.generate([[1]], 0) == [[]]


def test_loss_masking_and_row_weights():
    model = _tiny("gpt2")
    idx = torch.randint(0, VOCAB, (2, 10))
    _, loss = model(idx, torch.full((2, 10), -100))
    assert loss.item() == 0.0
    targets = torch.full((2, 10), -100)
    targets[0, 3], targets[0, 5], targets[1, 7] = 5, 6, 9
    full, _ = model(idx)
    logits, loss = model(idx, targets)  # logits of the supervised tokens only, in reading order
    assert torch.allclose(logits, torch.stack([full[0, 3], full[0, 5], full[1, 7]]), atol=1e-5)
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([5, 6, 9]), reduction="none")
    assert torch.allclose(loss, ce.mean())
    _, weighted = model(idx, targets, torch.tensor([1.0, 0.5]))
    assert torch.allclose(weighted, (ce[0] + ce[1] + 0.5 * ce[2]) / 2.5)
    weighted.backward()
    assert model.wte.weight.grad is not None


def test_cpu_decoding_runs_the_big_layers_on_onednn_inside_generate_only(monkeypatch):
    if torch.backends.mkldnn.is_available():
        assert M.ONEDNN_LINEAR is not None  # the fast path is live on this torch build
    real, calls = M.ONEDNN_LINEAR, []
    if real is None:
        pytest.skip("this torch build has no oneDNN linear kernel")
    monkeypatch.setattr(M, "ONEDNN_LINEAR", lambda *a: calls.append(a[1].shape) or real(*a))
    model = _tiny("gpt2")
    monkeypatch.setattr(M, "ONEDNN_MIN_WEIGHT", 32 * 128)  # the MLP's two layers, not attention's
    with torch.no_grad():
        plain = model(IDX)[0]
        with M.cpu_decoding(model):
            fast = model(IDX)[0]
        assert calls == [(128, 32), (32, 128)] * 2 and torch.allclose(fast, plain, atol=1e-5)
        model(IDX)  # outside the context: the default kernel again
    assert len(calls) == 4
    expected = model.generate(PROMPTS, 5)
    assert len(calls) > 4  # generate uses it
    monkeypatch.setattr(M, "ONEDNN_LINEAR", None)  # a torch without the op: nn.Linear everywhere
    assert model.generate(PROMPTS, 5) == expected
    model.train()
    _, loss = model(IDX, IDX)
    loss.backward()  # training never sees it


def test_compiled_model_leaves_the_kernel_to_the_compiler(monkeypatch):
    """Inductor cannot lower oneDNN's op: under torch.compile, the layers must not call it."""
    monkeypatch.setattr(M, "ONEDNN_MIN_WEIGHT", 0)
    model = _tiny("gpt2")
    with torch.no_grad(), M.cpu_decoding(model):
        assert torch.allclose(torch.compile(model.hidden)(IDX, torch.arange(24)[None]),
                              model.hidden(IDX, torch.arange(24)[None]), atol=1e-5)


def test_from_scratch_config_and_training_step():
    model = GPT(GPTConfig(family="gpt2", vocab_size=1500, block_size=256, n_layer=4, n_head=4, n_embd=128))
    assert model.lm_head.weight is model.wte.weight
    std = model.h[0].attn.c_proj.weight.std().item()
    assert 0.5 * 0.02 / 8 ** 0.5 < std < 1.5 * 0.02 / 8 ** 0.5  # scaled residual init
    llama = GPT(GPTConfig(family="llama", vocab_size=300, block_size=64, n_layer=2, n_head=4, n_kv_head=1, n_embd=64,
                          tie_embeddings=False))
    idx = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    _, loss = llama(idx, idx)
    loss.backward()
    assert abs(loss.item() - torch.log(torch.tensor(300.0)).item()) < 0.5
    grads = {n: p.grad.clone() for n, p in llama.named_parameters()}
    assert all(g.abs().sum() > 0 for g in grads.values())  # every parameter takes part
    llama.zero_grad()
    with torch.inference_mode():
        llama.generate([[1, 2]], 3)
    _, again = llama(idx, idx)  # generating leaves nothing behind: the same loss and gradients
    again.backward()
    assert llama.training and torch.equal(again, loss)
    assert all(torch.equal(p.grad, grads[n]) for n, p in llama.named_parameters())
    opt = torch.optim.AdamW(llama.parameters(), lr=1e-2)
    for _ in range(3):  # a few steps on the same batch lower its loss
        opt.step()
        opt.zero_grad()
        llama(idx, idx)[1].backward()
    assert llama(idx, idx)[1].item() < loss.item() - 0.1


def test_checkpoint_round_trip(tmp_path):
    model = _tiny("llama", tie_embeddings=True)
    model.tokenizer_spec = "byte"
    compiled = torch.compile(model)  # lazily compiled: building the wrapper is cheap
    opt = torch.optim.AdamW(model.parameters())
    model(IDX[:, :8], IDX[:, :8])[1].backward()
    opt.step()
    path = tmp_path / "ck.pt"
    save_checkpoint(path, compiled, step=3, optimizer=opt.state_dict(), rng=torch.get_rng_state())
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind
    ck = load_checkpoint(path)
    assert ck["step"] == 3 and not any(k.startswith("_orig_mod") for k in ck["model"])
    loaded = GPT.from_pretrained(path)
    assert loaded.tokenizer_spec == "byte" and loaded.lm_head.weight is loaded.wte.weight
    with torch.no_grad():
        assert torch.equal(loaded(IDX)[0], model(IDX)[0])
    resumed = torch.optim.AdamW(loaded.parameters())
    resumed.load_state_dict(ck["optimizer"])
    saved, back = opt.state_dict(), resumed.state_dict()
    assert back["param_groups"] == saved["param_groups"] and back["state"].keys() == saved["state"].keys()
    for i, st in saved["state"].items():  # step count and both moments of every parameter
        assert st.keys() == back["state"][i].keys()
        assert all(torch.equal(v, back["state"][i][k]) for k, v in st.items())
    opt.zero_grad()
    for m, o in ((model, opt), (loaded, resumed)):  # so the next step is the same step
        m(IDX[:, :8], IDX[:, :8])[1].backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_checkpoint_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="bad.pt"):
        load_checkpoint(bad)
    torch.save({"version": 2, "config": {}, "model": {}}, tmp_path / "v2.pt")
    with pytest.raises(WeightsError, match="v2.pt.*version"):
        GPT.from_pretrained(tmp_path / "v2.pt")


def test_missing_and_unexpected_tensors_are_named(hf_dirs, tmp_path):
    _, d = hf_dirs["gpt2"]
    sd = M.load_safetensors(d / "model.safetensors")
    sd.pop("transformer.h.1.mlp.c_fc.bias")
    sd["transformer.extra.weight"] = torch.zeros(2)
    sd["transformer.ln_f.weight"] = torch.zeros(5)
    import safetensors.torch
    (tmp_path / "config.json").write_text((d / "config.json").read_text())
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "model.safetensors")
    with pytest.raises(WeightsError) as e:
        GPT.from_pretrained(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path) in msg and "h.1.mlp.c_fc.bias" in msg and "extra.weight" in msg
    sd.pop("transformer.extra.weight")
    sd["transformer.h.1.mlp.c_fc.bias"] = torch.zeros(128)
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match="size mismatch for ln_f.weight"):
        GPT.from_pretrained(tmp_path)


def test_hub_names_go_through_data_hub_file(hf_dirs, monkeypatch):
    data = pytest.importorskip("data")
    _, d = hf_dirs["gpt2"]
    asked = []

    def offline(repo, filename):
        asked.append((repo, filename))
        raise OSError("network is unreachable")
    monkeypatch.setattr(data, "hub_file", offline, raising=False)
    with pytest.raises(WeightsError) as e:
        GPT.from_pretrained("gpt2")
    assert asked == [("openai-community/gpt2", "config.json")]
    assert "config.json" in str(e.value) and "local directory" in str(e.value) and "\n" not in str(e.value)

    monkeypatch.setattr(data, "hub_file", lambda repo, filename: d / filename, raising=False)  # a warm cache
    assert GPT.from_pretrained("gpt2").config.n_embd == 32
    with pytest.raises(WeightsError, match="not a file, a directory or a hub repo"):
        GPT.from_pretrained("no-such-thing")
