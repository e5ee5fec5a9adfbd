"""tokenizer.json (Hugging Face byte-level BPE) read into tiktoken: the same ids as the
`tokenizers` library, and the chat template's messages as transformers renders them."""
import json
import os
from pathlib import Path

import pytest

import data
import discuss
from data import DataError
from discuss import Transcript, Turn

tokenizers = pytest.importorskip("tokenizers")

SMOLLM2 = Path(os.environ.get("SAIE_SMOLLM2", "~/.cache/saie/models/SmolLM2-135M-Instruct"))
SMOLLM2 = SMOLLM2.expanduser()
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = ["Natalia sold clips to 48 of her friends in April, and then she sold half as many "
          "clips in May.\nHow many clips did Natalia sell altogether in April and May?",
          "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes.",
          "It's 3.14159, isn't it? They'll say 1,000,000 - 2 = 999,998.\n\n\tDone.  Ok ",
          "caf\u00e9 na\u00efve \u00fcber \u6771\u4eac \U0001f642 \u00bd \u00b2 \u0663"] * 3
SAMPLES = ["Hello world", "a  1", "x 123  456\n\n 7", "\t 1\n2 ", "12abc it's  'll they've",
           "\u00bd \u00b2 \u0663 \u2460 3.14 $1,000.50", "caf\u00e9 \u6771\u4eac \U0001f642",
           "cafe\u0301 (a combining accent)", "  spaces  and\n\n\ttabs\n", "a\x04b\x01c\x7f",
           "unseen: \u0416\u0437 \u00d8 \U00041000", "#### 72\n", "", " ", "\n"]


def pre_tokenizer(style):
    """SmolLM2's (digits split one by one, then GPT-2's regex), GPT-2's, or Qwen2's (a regex)."""
    pre = tokenizers.pre_tokenizers
    if style == "digits":
        return pre.Sequence([pre.Digits(individual_digits=True),
                             pre.ByteLevel(add_prefix_space=False)])
    if style == "gpt2":
        return pre.ByteLevel(add_prefix_space=False)
    regex = tokenizers.Regex(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    return pre.Sequence([pre.Split(regex, "isolated"),
                         pre.ByteLevel(add_prefix_space=False, use_regex=False)])


def tiny_tokenizer_dir(path, style="digits", all_bytes=True):
    """A byte-level BPE trained on CORPUS with SmolLM2's special tokens and chat template."""
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = pre_tokenizer(style)
    tok.normalizer = tokenizers.normalizers.NFC() if style == "split" else None
    tok.decoder = tokenizers.decoders.ByteLevel()
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet() if all_bytes else []
    tok.train_from_iterator(CORPUS, tokenizers.trainers.BpeTrainer(
        vocab_size=500, special_tokens=SPECIALS, initial_alphabet=alphabet, show_progress=False))
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": "<|im_end|>", "chat_template": CHATML,
        "tokenizer_class": "PreTrainedTokenizerFast"}))
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0]}))
    return path


def assert_same_ids(tok, hf, texts):
    """Our ids equal the `tokenizers` library's on every text; returns how many texts."""
    diff = [s for s in texts if tok.encode(s) != hf.encode(s).ids]
    assert not diff, f"{len(diff)}/{len(texts)} differ, first {diff[0]!r}"
    return len(texts)


@pytest.mark.parametrize("style,all_bytes", [("digits", True), ("digits", False),
                                              ("gpt2", True), ("split", True)])
def test_ids_match_the_tokenizers_library(tmp_path, style, all_bytes):
    d = tiny_tokenizer_dir(tmp_path / "tiny", style, all_bytes)
    tok, hf = data.get_tokenizer(d), tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
    assert_same_ids(tok, hf, SAMPLES + CORPUS + [s.upper() for s in CORPUS])
    assert tok.name == str(d) and tok.chat == "chatml" and tok.bos is None
    assert (tok.eot, tok.stop_ids, tok.n_vocab) == (2, {0, 2}, hf.get_vocab_size())
    # Special tokens in text are text to encode(); as specials they are the added tokens' ids.
    chat = "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n42<|endoftext|>"
    ids = tok.enc.encode(chat, allowed_special="all")  # bytes without a token: past n_vocab
    assert [i for i in ids if i < tok.n_vocab] == hf.encode(chat).ids
    assert tok.special("<|im_start|>") == 1 and 1 not in tok.encode(chat)
    assert tok.decode(tok.encode(CORPUS[3])) == CORPUS[3]
    if style == "digits":  # every digit its own token, the space before one too
        assert [tok.decode([i]) for i in tok.encode("a 123 45")] == ["a", " ", "1", "2", "3", " ",
                                                                      "4", "5"]


def test_end_tokens_and_errors(tmp_path):
    d = tiny_tokenizer_dir(tmp_path / "tiny")
    (d / "generation_config.json").unlink()
    tok = data.get_tokenizer(d)
    assert tok.eot == 2 and tok.stop_ids == {2}
    config = json.loads((d / "tokenizer_config.json").read_text())
    no_chat = {"eos_token": {"content": "<|endoftext|>"}}
    (d / "tokenizer_config.json").write_text(json.dumps(no_chat))
    assert data.get_tokenizer(d).eot == 0 and data.get_tokenizer(d).chat is None
    (d / "tokenizer_config.json").write_text(json.dumps(config | {"eos_token": None}))
    with pytest.raises(DataError, match="no end token"):
        data.get_tokenizer(d)
    # Llama 3's tokenizer.json: a bos prepended by its post-processor, its chat headers.
    spec = json.loads((d / "tokenizer.json").read_text())
    spec["post_processor"] = {"type": "TemplateProcessing", "single": [
        {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A"}}]}
    (d / "tokenizer.json").write_text(json.dumps(spec))
    (d / "chat_template.jinja").write_text("{{ bos_token }}<|start_header_id|>...")
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    assert (data.get_tokenizer(d).bos, data.get_tokenizer(d).chat) == (0, "llama3")
    spec["pre_tokenizer"] = {"type": "Whitespace"}
    (d / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(DataError, match="tokenizer.json: unsupported pre_tokenizer"):
        data.get_tokenizer(d)
    (d / "tokenizer.json").write_text("[]")
    with pytest.raises(DataError, match="tokenizer.json: not a JSON object"):
        data.get_tokenizer(d)


def test_hub_names_fetch_tokenizer_json(tmp_path, monkeypatch):
    """A hub repo without Meta's original/tokenizer.model: its tokenizer.json and configs are
    fetched, and the repo name is the tokenizer's name (what a checkpoint stores)."""
    d = tiny_tokenizer_dir(tmp_path / "repo")
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    asked = []

    def hub_file(repo, filename):
        asked.append(filename)
        if not (d / filename).is_file():
            raise DataError(f"could not fetch {filename} (HTTP Error 404: Not Found)")
        return d / filename
    monkeypatch.setattr(data, "hub_file", hub_file)
    tok = data.get_tokenizer("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert asked == ["config.json", "original/tokenizer.model", "tokenizer.json",
                     "tokenizer_config.json", "generation_config.json"]
    assert tok.name == "HuggingFaceTB/SmolLM2-135M-Instruct" and tok.chat == "chatml"
    assert data.get_tokenizer(tok.name).encode("a 12") == tok.encode("a 12")


def test_a_hub_model_reloads_its_tokenizer(tmp_path, monkeypatch):
    """GPT.from_pretrained of a hub name fetches the tokenizer files beside the weights, so its
    tokenizer_spec (the cache folder) reads back."""
    transformers = pytest.importorskip("transformers")
    from model import GPT
    d = tiny_tokenizer_dir(tmp_path / "repo")
    transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1)).save_pretrained(d)

    def hub_file(repo, filename):
        if not (d / filename).is_file():
            raise DataError(f"could not fetch {filename} (HTTP Error 404: Not Found)")
        return d / filename
    monkeypatch.setattr(data, "hub_file", hub_file)
    model = GPT.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert model.tokenizer_spec == str(d) and data.get_tokenizer(d).chat == "chatml"


def two_rounds():
    """A transcript of two rounds: learner turn, partner remark, learner turn, partner remark."""
    return Transcript("Ann has 7 pens. She buys 15 more. How many pens does Ann have?", "22",
                      "oppose", turns=[Turn("learner", "7 + 15 = 22\n#### 22", "22"),
                                       Turn("partner", "I disagree. 7 + 5 = 12\n#### 12", "12"),
                                       Turn("learner", " 7 + 15 = 22.\n\n#### 22 ", "22"),
                                       Turn("partner", "I disagree. 15 - 7 = 8\n#### 8", "8")])


def chat_messages(tr, role):
    """The transcript as transformers' chat messages, written out independently of discuss."""
    if role == "learner":
        msgs = [("system", discuss.LEARNER_SYSTEM), ("user", tr.question)]
        msgs += [("assistant", t.text) if t.speaker == "learner" else
                 ("user", f"My partner says: {t.text}\n\nAnswer the question again.")
                 for t in tr.turns]
    else:
        msgs = [("system", discuss.PARTNER_SYSTEM[tr.stance]), ("user", f"Question: {tr.question}")]
        msgs += [("user", f"The student answers: {t.text}") if t.speaker == "learner" else
                 ("assistant", t.text) for t in tr.turns]
    return [{"role": r, "content": c} for r, c in msgs]


def assert_renders_as_transformers(directory):
    """Both roles' prompts (the partner's ends in its forced opener) are transformers'
    apply_chat_template text, tokenized by tokenizer.json. Not by transformers: version 5 builds
    SmolLM2's GPT2Tokenizer with GPT-2's pre-tokenizer, without tokenizer.json's Digits split."""
    transformers = pytest.importorskip("transformers")
    hf, tok = transformers.AutoTokenizer.from_pretrained(directory), data.get_tokenizer(directory)
    bpe = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    tr = two_rounds()
    learner = hf.apply_chat_template(chat_messages(tr, "learner"), add_generation_prompt=True,
                                     tokenize=False)
    assert discuss.encode(tok, discuss.render(tok, tr, "learner")) == bpe.encode(learner).ids
    tr.turns.pop()  # the partner's turn comes after the learner's
    opener = {"role": "assistant", "content": discuss.OPENER[tr.stance]}
    partner = hf.apply_chat_template(chat_messages(tr, "partner") + [opener],
                                     continue_final_message=True, tokenize=False)
    assert partner.endswith("<|im_start|>assistant\nI disagree.")
    assert discuss.encode(tok, discuss.render(tok, tr, "partner")) == bpe.encode(partner).ids


def test_chatml_rendering_matches_the_chat_template(tmp_path):
    assert_renders_as_transformers(tiny_tokenizer_dir(tmp_path / "tiny"))


# -----------------------------------------------------------------------------
# The real SmolLM2-135M-Instruct (SAIE_SMOLLM2, or the default cache path): skipped when absent.

@pytest.fixture(scope="module")
def smollm2():
    if not (SMOLLM2 / "tokenizer.json").is_file():
        pytest.skip(f"no SmolLM2 tokenizer in {SMOLLM2} (set SAIE_SMOLLM2)")
    tok = data.get_tokenizer(SMOLLM2)
    return tok, tokenizers.Tokenizer.from_file(str(SMOLLM2 / "tokenizer.json"))


def test_smollm2_ids_on_gsm8k_and_arith(smollm2, shared_data):
    tok, hf = smollm2
    assert (tok.chat, tok.eot, tok.stop_ids, tok.bos, tok.n_vocab) == ("chatml", 2, {2}, None,
                                                                        49152)
    gsm8k = data.get_task("gsm8k").load("test", shared_data / "gsm8k")
    n = assert_same_ids(tok, hf, [ex.question for ex in gsm8k])
    print(f"{n}/{len(gsm8k)} GSM8K test questions identical")
    n = assert_same_ids(tok, hf, [f"{ex.rationale}\n#### {ex.answer}" for ex in gsm8k])
    print(f"{n}/{len(gsm8k)} GSM8K test answers identical")
    arith = data.get_task("arith").load("test")
    n = assert_same_ids(tok, hf, [ex.question for ex in arith])
    print(f"{n}/{len(arith)} arith test questions identical")
    n = assert_same_ids(tok, hf, SAMPLES + CORPUS)
    print(f"{n}/{n} hand-picked strings identical")


def test_smollm2_chat_strings(smollm2):
    tok, hf = smollm2
    chats = ["<|im_start|>system\nSolve it.<|im_end|>\n<|im_start|>user\n12 + 30?<|im_end|>\n",
             "<|im_start|>assistant\n12 + 30 = 42\n#### 42<|im_end|>\n<|im_start|>user\n",
             "text <|im_end|><|im_start|> text<|endoftext|>\n\n<|im_start|>"]
    assert [tok.enc.encode(s, allowed_special="all") for s in chats] == \
        [hf.encode(s).ids for s in chats]
    assert tok.special("<|im_start|>") == 1 and tok.special("<|im_end|>") == 2


def test_smollm2_rendering_matches_its_chat_template(smollm2):
    assert_renders_as_transformers(SMOLLM2)


def test_every_entry_point_takes_a_hub_name(tmp_path, monkeypatch, capsys):
    """--init, --partner, --eval-partner, eval.py --ckpt and the play command's --ckpt accept a hub
    name (downloaded through data.hub_file, offline here) as they accept a directory."""
    transformers = pytest.importorskip("transformers")
    import eval as evaluation
    import saie
    d = tiny_tokenizer_dir(tmp_path / "repo")
    transformers.LlamaForCausalLM(transformers.LlamaConfig(  # every id one the tokenizer decodes
        vocab_size=data.get_tokenizer(d).n_vocab, hidden_size=32, intermediate_size=64,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)).save_pretrained(d)
    monkeypatch.setattr(data, "hub_file", lambda repo, name: d / name if (d / name).is_file()
                        else (_ for _ in ()).throw(DataError(f"could not fetch {name}")))
    hub = "HuggingFaceTB/SmolLM2-135M-Instruct"
    saie.main(["--init", hub, "--partner", hub, "--eval-partner", hub, "--method", "saie",
               "--train-limit", "2", "--batch-size", "2", "--warmup-steps", "1", "--steps", "1",
               "--eval-limit", "2", "--max-turn-tokens", "4", "--out", str(tmp_path / "run")])
    assert "fixed partner, HuggingFaceTB/SmolLM2-135M-Instruct" in capsys.readouterr().out
    r = evaluation.main(["--ckpt", hub, "--task", "arith", "--limit", "2", "--max-new-tokens", "4",
                         "--out", str(tmp_path / "eval")])
    assert r["n"] == 2 and r["method"] == hub
    (tmp_path / "typed").write_text(":quit\n")
    monkeypatch.setattr("sys.stdin", open(tmp_path / "typed"))
    discuss.main(["--ckpt", hub, "--question", "0", "--max-turn-tokens", "4"])
    assert "learner: " in capsys.readouterr().out
