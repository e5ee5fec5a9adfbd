"""Tasks, answer checking, wrong rationales, tokenizers, batches and downloads (offline)."""
import base64
import hashlib
import io
import json
import random
import statistics
import tarfile
from fractions import Fraction

import pytest
import torch

import data
from data import DataError, Example


def n_ops(ex):
    """An arith problem's number of operations: one rationale line each."""
    return len(ex.rationale.splitlines())


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GSM_ROWS = [
    {"question": "Natalia sold clips to 48 friends in April, and half as many in May. How many in all?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
               "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"},
    {"question": "A shirt costs $1,200 and a hat $5. What do both cost?",
     "answer": "They cost 1200+5 = $<<1200+5=1205>>1,205 together.\n#### 1,205"},
    {"question": "It is 4 degrees and falls by 7. What is the temperature?", "answer": "4 - 7 = -3\n#### -3"},
    {"question": "Weng earns $12 an hour. How much for 50 minutes?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
               "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"},
    {"question": "Tom has 3 bags of 4 apples and eats 2, then buys (3+1) more. How many?",
     "answer": "He has 3*4 = <<3*4=12>>12 apples.\nAfter eating, 12-2 = <<12-2=10>>10 are left.\n"
               "He buys 3+1 = <<3+1=4>>4 more: 10+4 = <<10+4=14>>14.\n#### 14"},
]


# -----------------------------------------------------------------------------
# Formats

def test_arith_examples_have_the_gsm8k_shape():
    task = data.get_task("arith")
    exs = task.load("train")
    assert len(exs) == data.ARITH_SIZES["train"] and len(task.load("test")) == data.ARITH_SIZES["test"]
    for ex in exs[:2000]:
        steps = [tuple(map(int, (a, b, r))) + (op,) for a, op, b, r in data.STEP.findall(ex.rationale)]
        assert len(steps) == n_ops(ex) and 1 <= n_ops(ex) <= 3
        for i, (a, b, r, op) in enumerate(steps):
            assert data._apply(op, a, b) == r and 1 <= r <= data.ARITH_MAX_VALUE
            assert 2 <= b <= (data.ARITH_MAX_FACTOR if op in "*/" else data.ARITH_MAX_OPERAND)
            assert i == 0 or a == steps[i - 1][2]  # each step continues from the previous result
        assert ex.answer == str(steps[-1][2])
        assert task.target(ex) == ex.rationale + "\n#### " + ex.answer
        assert ex.question.endswith("?") and str(steps[0][0]) in ex.question
        assert task.extract(task.target(ex)) == ex.answer and task.is_correct(task.target(ex), ex)
    mix = [sum(n_ops(ex) == n for ex in exs) / len(exs) for n in (1, 2, 3)]
    assert all(abs(m - w) < 0.03 for m, w in zip(mix, data.ARITH_OPS_MIX.values()))


def test_gsm8k_loader_formats_and_calculator_notes(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", GSM_ROWS)
    task = data.get_task("gsm8k")
    exs = task.load("train", tmp_path)
    assert [ex.answer for ex in exs] == ["72", "1205", "-3", "10", "14"]
    assert exs[0].rationale == ("Natalia sold 48/2 = 24 clips in May.\n"
                                "Natalia sold 48+24 = 72 clips altogether in April and May.")
    assert task.target(exs[0]) == exs[0].rationale + "\n#### 72"
    assert "<<48/2=24>>" in exs[0].calc_rationale
    kept = data.get_task("gsm8k", keep_calculator=True).load("train", tmp_path)
    assert kept[0].rationale == exs[0].calc_rationale
    # data_dir may also be the parent folder holding gsm8k/
    (tmp_path / "parent" / "gsm8k").mkdir(parents=True)
    write_jsonl(tmp_path / "parent" / "gsm8k" / "test.jsonl", GSM_ROWS[:2])
    assert len(data.get_task("gsm8k").load("test", tmp_path / "parent")) == 2


def test_multiple_choice_loaders_accept_both_csqa_layouts_and_mmlu_csv(tmp_path):
    flat = {"id": "q1", "question": "Where do you keep a dish?", "question_concept": "dish",
            "choices": {"label": list("ABCDE"), "text": ["cupboard", "sky", "river", "car", "moon"]},
            "answerKey": "A"}
    nested = {"id": "q2", "answerKey": "C", "question": {
        "stem": "What flies?", "question_concept": "x",
        "choices": [{"label": l, "text": t} for l, t in zip("ABCDE", ["rock", "tree", "bird", "lake", "road"])]}}
    write_jsonl(tmp_path / "dev.jsonl", [flat])
    write_jsonl(tmp_path / "train_rand_split.jsonl", [nested])
    task = data.get_task("csqa")
    (val,), (train,) = task.load("validation", tmp_path), task.load("train", tmp_path)
    assert val.question == "Where do you keep a dish?\n(A) cupboard (B) sky (C) river (D) car (E) moon"
    assert val.rationale == "" and val.choices[0] == "cupboard" and val.id == "q1"
    assert task.target(val) == "The answer is (A) cupboard.\n#### A"
    assert train.answer == "C" and task.target(train) == "The answer is (C) bird.\n#### C"
    for seed in range(20):
        wrong = task.wrong_target(val, random.Random(seed))
        assert task.extract(wrong) in "BCDE" and wrong == task._sentence(val, task.extract(wrong))

    (tmp_path / "mmlu" / "dev").mkdir(parents=True)
    (tmp_path / "mmlu" / "dev" / "anatomy_dev.csv").write_text(
        'What is 2+2?,3,4,5,6,B\n"Pick ""one"", please",a,"b, c",d,e,D\n')
    mmlu = data.get_task("mmlu")
    exs = mmlu.load("dev", tmp_path)
    assert [ex.answer for ex in exs] == ["B", "D"] and exs[1].choices[1] == "b, c"
    assert exs[0].question == "What is 2+2?\n(A) 3 (B) 4 (C) 5 (D) 6" and exs[0].id == "anatomy-dev-0"
    assert mmlu.target(exs[0]) == "The answer is (B) 4.\n#### B"
    with pytest.warns(UserWarning, match="validation"):
        assert len(mmlu.load("train", tmp_path)) == 2  # dev + validation; no validation here


# -----------------------------------------------------------------------------
# Answer checking

@pytest.mark.parametrize("text, expected", [
    ("#### 72", "72"), ("#### 1,000", "1000"), ("####  $1,234.00", "1234"), ("#### -3", "-3"),
    ("The answer is $1,234.", "1234"), ("so she has 12.00 left", "12"), ("It takes 3.5 hours.", "3.5"),
    ("5 - 8 = -3", "-3"), ("#### 7\nActually it is 9", "7"), ("I think 3 + 4 = 7.", "7"),
    ("#### twelve, so 10 + 2 = 12", "12"), ("costs $5 and 6 more", "6"), ("#### 12.50", "12.5"),
    ("it is \u22125 degrees", "-5"), ("-0", "0"), ("no number here", None), ("", None), ("####", None),
])
def test_number_extraction(text, expected):
    assert data.get_task("gsm8k").extract(text) == expected
    assert data.get_task("arith").extract(text) == expected


def test_number_answers_compare_numerically():
    ex = Example("q", "", "1000")
    for text, ok in [("#### 1,000", True), ("1000.0", True), ("$1000.", True), ("#### 999", False), ("none", False)]:
        assert data.get_task("gsm8k").is_correct(text, ex) is ok
    assert data.get_task("gsm8k").is_correct("#### -3", Example("q", "", "-3"))


@pytest.mark.parametrize("text, expected", [
    ("#### B", "B"), ("The answer is (C) river.\n#### C", "C"), ("answer is D", "D"), ("Answer: (E)", "E"),
    ("I choose (B)", "B"), ("B) sky", "B"), ("D", "D"), (" A. ", "A"), ("(F)", None), ("A bank is near", None),
    ("I would keep it in the cupboard", "A"), ("The RIVER, I think", "C"), ("sky or moon", None), ("", None),
])
def test_letter_extraction(text, expected):
    choices = ["cupboard", "sky", "river", "car", "moon"]
    ex = Example("q", "", "A", choices)
    task = data.get_task("csqa")
    assert task.extract(text, choices) == expected
    assert task.is_correct(text, ex) is (expected == "A")


def test_calculator_is_exact_and_refuses_code():
    assert data.calc("2+3*4") == 14 and data.calc("(2+3)*4") == 20 and data.calc("-3+5") == 2
    assert data.calc("10/4") == Fraction(5, 2) and data.calc("0.2*50") == 10 and data.calc(".5+1.") == Fraction(3, 2)
    for bad in ["__import__('os')", "2**3", "1/0", "(1+2", "1 2", "", "a+1"]:
        with pytest.raises(ValueError):
            data.calc(bad)


# -----------------------------------------------------------------------------
# Plausible wrong rationales

def test_arith_wrong_rationale_slips_one_step_and_carries_it():
    task = data.get_task("arith")
    rng = random.Random(0)
    exs = task.load("train")[:400] + task.load("test")[:200]
    for ex in exs:
        wrong = task.wrong_target(ex, rng)
        answer = task.extract(wrong)
        assert answer is not None and answer != ex.answer and wrong.endswith("\n#### " + answer)
        gold = data.STEP.findall(ex.rationale)
        steps = data.STEP.findall(wrong)
        assert len(steps) == len(gold) == len(wrong.splitlines()) - 1
        slips = 0
        for i, (a, op, b, r) in enumerate(steps):
            assert b == gold[i][2] and int(r) >= 0
            assert i == 0 or a == steps[i - 1][3]        # the error is carried through
            slips += data._apply(op, int(a), int(b)) != int(r) or op != gold[i][1]
        assert slips == 1 and steps[-1][3] == answer


def check_gsm8k_wrong(task, ex, rng):
    wrong = task.wrong_target(ex, rng)
    answer = task.extract(wrong)
    assert answer is not None and Fraction(answer) != Fraction(ex.answer), (ex.id, wrong)
    assert "<<" not in wrong and wrong.endswith("\n#### " + answer)
    return wrong


def test_gsm8k_wrong_rationale_on_hand_written_items(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", GSM_ROWS)
    task = data.get_task("gsm8k")
    exs = task.load("train", tmp_path)
    for seed in range(30):
        for ex in exs:
            check_gsm8k_wrong(task, ex, random.Random(seed))
    # The slip is carried: a slipped first step shows up in the second step's expression.
    natalia = [check_gsm8k_wrong(task, exs[0], random.Random(s)) for s in range(30)]
    assert any("48/2 = 24" not in w and "48+24" not in w for w in natalia)
    assert any("48/2 = 24" in w and "= 72" not in w for w in natalia)
    # No notes at all: the final answer (and its last mention) changes.
    wrong = check_gsm8k_wrong(task, exs[2], random.Random(0))
    assert wrong.splitlines()[0].startswith("4 - 7 = -") and not wrong.endswith("-3")


def test_multiple_choice_wrong_target_is_another_choice():
    task = data.get_task("mmlu")
    ex = task.example("Which?", ["w", "x", "y", "z"], "B", "t")
    seen = {task.extract(task.wrong_target(ex, random.Random(s))) for s in range(50)}
    assert seen == {"A", "C", "D"}


# -----------------------------------------------------------------------------
# arith: determinism and disjoint splits

def chain(ex):
    steps = data.STEP.findall(ex.rationale)
    return steps[0][0] + "".join(op + b for _, op, b, _ in steps)


def test_arith_is_deterministic_and_its_splits_are_disjoint():
    generate = data.generate_arith.__wrapped__  # bypass the cache: really generate twice
    assert generate("train", 300, seed=5) == generate("train", 300, seed=5)
    assert generate("train", 300, seed=5) != generate("train", 300, seed=6)
    train, test = data.get_task("arith").load("train"), data.get_task("arith").load("test")
    # By construction: a hash of the chain of numbers and operations picks the split ...
    steps = lambda ex: [(int(a), op, int(b), int(r)) for a, op, b, r in data.STEP.findall(ex.rationale)]
    assert all(data.arith_split(steps(ex)) == "train" for ex in train)
    assert all(data.arith_split(steps(ex)) == "test" for ex in test)
    # ... so no test problem appears in training, even under other names and templates.
    assert not {chain(ex) for ex in train} & {chain(ex) for ex in test}
    assert not {ex.question for ex in train} & {ex.question for ex in test}
    assert {n_ops(ex) for ex in test} == {1, 2, 3}


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def test_arith_problems_and_slips_are_pinned():
    """Byte-identical problems and wrong targets for the same seed, whatever the code looks like: runs,
    checkpoints and assets/arith-warmup.pt were made from these. Change the digests only on purpose."""
    train, test = data.generate_arith("train", 2000), data.generate_arith("test", 500)
    assert digest([(e.question, e.rationale, e.answer) for e in train]) == "34a6bbe71a0e34e1"
    assert digest([(e.question, e.rationale, e.answer) for e in test]) == "b98720dc3854dfcf"  # one per chain
    task, rng = data.get_task("arith"), random.Random(0)
    assert digest([task.wrong_target(e, rng) for e in train[:500]]) == "842257afb08f18cb"


def test_arith_problems_are_compact_in_the_arith_tokenizer():
    tok, task = data.get_tokenizer("arith"), data.get_task("arith")
    exs = task.load("train")
    q = [len(tok.encode(" " + ex.question)) for ex in exs]
    t = [len(tok.encode(" " + task.target(ex))) for ex in exs]
    print(f"\narith: vocabulary {tok.n_vocab}, tokens per question mean {statistics.mean(q):.1f} max {max(q)}, "
          f"per target mean {statistics.mean(t):.1f} max {max(t)}")
    assert tok.n_vocab < 2000 and statistics.mean(q) <= 30 and statistics.mean(t) <= 20 and max(t) <= 24
    # Words and numbers are single tokens, and a number starting a line is the same token as elsewhere.
    assert tok.encode(" 12 - 4 = 8\n8 + 7 = 15\n#### 15")[5:8] == [tok.nl] + tok.encode(" 8 +")
    for ex in exs[:500] + task.load("test"):  # no word or number falls back to its bytes
        ids = tok.encode("Question: " + ex.question + "\nAnswer: " + task.target(ex)) + tok.encode("Partner: I agree.")
        assert not [i for i in ids if i < 256 and chr(i).isalnum()]


# -----------------------------------------------------------------------------
# Tokenizers

SAMPLES = ["Hello world", "Question: Ann has 7 pens .\nAnswer: 7 + 5 = 12\n#### 12", "  spaces  and\n\n\ttabs\n",
           "unicode: héllo wörld – 東京 🙂", "<|endoftext|> stays text", "Zyxwv 123456 ####1,000.5", ""]


@pytest.mark.parametrize("name", ["byte", "arith", "gpt2"])
def test_tokenizers_round_trip(name):
    try:
        tok = data.get_tokenizer(name)
    except DataError as e:
        pytest.skip(str(e))
    for s in SAMPLES:
        ids = tok.encode(s)
        assert tok.decode(ids) == s and all(0 <= i < tok.n_vocab for i in ids)
        assert tok.eot not in ids  # special tokens are only ever inserted as ids
    assert tok.name == name and tok.decode([tok.eot]) == "<|endoftext|>" and tok.special("<|endoftext|>") == tok.eot
    assert tok.bos is None and tok.chat is None and tok.eot in tok.stop_ids
    if name == "gpt2":
        assert tok.eot == 50256 and tok.n_vocab == 50257
        assert data.get_tokenizer("gpt2-medium") is tok


def write_llama3_model(path):
    """A tiny tiktoken BPE file: the 256 bytes, then a few merges."""
    ranks = [bytes([i]) for i in range(256)] + [b"he", b"ll", b"hell", b"hello", b" w", b"or", b" wor", b"ld"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate(ranks)))
    return len(ranks)


@pytest.mark.parametrize("layout", ["tokenizer.model", "original/tokenizer.model"])
def test_llama3_tokenizer_from_a_synthetic_bpe_file(tmp_path, layout):
    d = tmp_path / "Llama-3.2-1B-Instruct"
    n = write_llama3_model(d / layout)
    tok = data.get_tokenizer(d)
    assert tok.chat == "llama3" and tok.bos == n and tok.n_vocab == n + 256
    assert [tok.special(s) - n for s in ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                         "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>"]] == [0, 1, 6, 7, 8, 9]
    assert tok.special("<|reserved_special_token_2|>") == n + 11
    assert tok.special("<|reserved_special_token_246|>") == n + 255
    assert tok.eot == n + 9 and tok.stop_ids == {n + 9, n + 1, n + 8}
    ids = tok.encode("hello world")
    assert ids[0] == 259 and tok.decode(ids) == "hello world"  # "hello" is one token; the rest round-trips
    for s in SAMPLES:
        assert tok.decode(tok.encode(s)) == s
    with pytest.raises(KeyError):
        tok.special("<|nope|>")
    # A base model: no chat template, end of text is the end token; the rule can be overridden.
    base = tmp_path / "Llama-3.2-1B"
    write_llama3_model(base / layout)
    assert data.get_tokenizer(base).chat is None and data.get_tokenizer(base).eot == n + 1
    assert data.get_tokenizer(base, chat=True).chat == "llama3"


def test_get_tokenizer_errors_and_gpt2_directories(tmp_path):
    with pytest.raises(DataError, match="unknown tokenizer 'nope'"):
        data.get_tokenizer("nope")
    with pytest.raises(DataError, match="no tokenizer.model"):
        data.get_tokenizer(tmp_path)
    (tmp_path / "tokenizer.model").write_text("not base64 at all\n")
    with pytest.raises(DataError, match="tokenizer.model:1"):
        data.get_tokenizer(tmp_path)
    gpt2_dir = tmp_path / "my-gpt2"
    gpt2_dir.mkdir()
    (gpt2_dir / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 12}))
    try:
        assert data.get_tokenizer(gpt2_dir).name == "gpt2"
    except DataError as e:
        pytest.skip(str(e))


# -----------------------------------------------------------------------------
# Batches

def test_make_batch_masks_exactly_the_untrained_tokens():
    tok = data.get_tokenizer("byte")
    E, pad = tok.eot, tok.eot
    seqs = [[("ab", False), ([E], False), ("cd", True), ([E], True)],
            [("x", False), ("y", True)]]
    idx, targets = data.make_batch(tok, seqs, block_size=16)
    a, b, c, d, x, y = map(ord, "abcdxy")
    assert idx.dtype == targets.dtype == torch.long and idx.shape == (2, 5)  # the longest row, not block_size
    assert idx.tolist() == [[a, b, E, c, d], [x, pad, pad, pad, pad]]
    assert targets.tolist() == [[-100, -100, c, d, E], [y, -100, -100, -100, -100]]


def test_make_batch_cuts_the_prompt_from_the_left_and_never_the_target():
    tok = data.get_tokenizer("byte")
    idx, targets = data.make_batch(tok, [[("abcdef", False), ("gh", True)]], block_size=4)
    assert tok.decode(idx[0].tolist()) == "defg" and targets[0].tolist() == [-100, -100, ord("g"), ord("h")]
    # Exactly fits once the whole prompt but its last token is gone.
    idx, targets = data.make_batch(tok, [[("ab", False), ("cdef", True)]], block_size=4)
    assert tok.decode(idx[0].tolist()) == "bcde" and tok.decode(targets[0].tolist()) == "cdef"
    with pytest.raises(ValueError, match="block_size"):
        data.make_batch(tok, [[("ab", False), ("cdefg", True)]], block_size=4)
    with pytest.raises(ValueError, match="block_size"):
        data.make_batch(tok, [[("abcdef", True)]], block_size=4)


def test_iterate_batches_is_deterministic_and_splits_ranks():
    take = lambda it, k: [next(it) for _ in range(k)]
    a = take(data.iterate_batches(10, 3, seed=1), 9)
    assert a == take(data.iterate_batches(10, 3, seed=1), 9) != take(data.iterate_batches(10, 3, seed=2), 9)
    assert all(len(b) == 3 for b in a)
    assert a[:3] != a[3:6] and len(set(sum(a[:3], []))) == 9  # 3 batches per epoch, tail dropped, reshuffled
    ranks = [take(data.iterate_batches(100, 4, seed=7, rank=r, world_size=3), 16) for r in range(3)]
    for step in zip(*ranks):  # every global batch: disjoint shares of one permutation
        assert len(set(sum(step, []))) == 12
    epoch = sum((sum(step, []) for step in list(zip(*ranks))[:8]), [])
    assert len(set(epoch)) == 96 and set(epoch) <= set(range(100))
    with pytest.raises(ValueError):
        data.iterate_batches(5, 4, seed=0, rank=0, world_size=2)
    with pytest.raises(ValueError):
        data.iterate_batches(50, 4, seed=0, rank=2, world_size=2)


# -----------------------------------------------------------------------------
# Bad input: one-line DataErrors naming file, line and field

GOOD = json.dumps(GSM_ROWS[0]) + "\n"


@pytest.mark.parametrize("content, where, words", [
    (GOOD + '{"question": "q", "answer": \n', ":2", "malformed JSON"),
    ('{"question": "q"}\n', ":1", "answer"),
    (GOOD + GOOD + '{"question": "q", "answer": 12}\n', ":3", "answer"),
    ('{"question": ["q"], "answer": "1 #### 1"}\n', ":1", "question"),
    ("", ":1", "empty"),
    (GOOD.encode() + b'{"question": "caf\xe9", "answer": "#### 1"}\n', ":2", "UTF-8"),
    ('{"question": "q", "answer": "no final line"}\n', ":1", "####"),
    ('{"question": "q", "answer": "x #### lots"}\n', ":1", "not a number"),
    ("[1, 2]\n", ":1", "JSON object"),
    (GOOD + "x" * 5000 + "\n", ":2", "longer than"),
])
def test_bad_gsm8k_files_raise_one_line_errors(tmp_path, monkeypatch, content, where, words):
    monkeypatch.setattr(data, "MAX_LINE", 1000)
    path = tmp_path / "train.jsonl"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(DataError) as e:
        data.get_task("gsm8k").load("train", tmp_path)
    msg = str(e.value)
    assert f"train.jsonl{where}" in msg and words in msg and "\n" not in msg


def test_bad_multiple_choice_files(tmp_path):
    row = {"question": "q", "choices": {"label": list("ABCDE"), "text": list("vwxyz")}, "answerKey": "Z"}
    write_jsonl(tmp_path / "dev.jsonl", [row])
    with pytest.raises(DataError, match=r"dev.jsonl:1: field 'answerKey'"):
        data.get_task("csqa").load("validation", tmp_path)
    write_jsonl(tmp_path / "dev.jsonl", [{**row, "answerKey": "A", "choices": {"label": list("AB"), "text": ["v", "w"]}}])
    with pytest.raises(DataError, match=r"dev.jsonl:1: field 'choices'"):
        data.get_task("csqa").load("validation", tmp_path)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "x_test.csv").write_text("q,a,b,c,d,A\nq,a,b,c,B\n")
    with pytest.raises(DataError, match=r"x_test.csv:2: expected 6 columns"):
        data.get_task("mmlu").load("test", tmp_path)
    (tmp_path / "test" / "x_test.csv").write_bytes(b"q,a,b,c,d,A\nq\xff,a,b,c,d,B\n")
    with pytest.raises(DataError, match=r"x_test.csv:\d+: not UTF-8"):
        data.get_task("mmlu").load("test", tmp_path)


def test_unknown_task_split_or_missing_files(tmp_path):
    with pytest.raises(DataError, match="unknown task 'nope'"):
        data.get_task("nope")
    with pytest.raises(DataError, match="no split 'dev'"):
        data.get_task("gsm8k").load("dev", tmp_path)
    with pytest.raises(DataError, match=f"no gsm8k test file .* in {tmp_path}"):
        data.get_task("gsm8k").load("test", tmp_path)
    with pytest.raises(DataError, match="no mmlu test folder"):
        data.get_task("mmlu").load("test", tmp_path)


# -----------------------------------------------------------------------------
# Downloads (no network: urlopen is replaced)

class FakeResponse(io.BytesIO):
    def __init__(self, body, url, fail_after=None, length=None):
        super().__init__(body)
        self.url, self.fail_after = url, fail_after
        self.headers = {"Content-Length": str(len(body) if length is None else length)}

    def geturl(self):
        return self.url

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        return super().read(min(n, 4) if n > 0 else n)


def fake_urlopen(monkeypatch, body=b"hello world", **kw):
    requests = []

    def urlopen(req, timeout=None):
        requests.append(req)
        return FakeResponse(body, req.full_url, **kw)
    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    return requests


def test_download_refuses_plain_http_and_leaves_no_half_files(tmp_path, monkeypatch):
    requests = fake_urlopen(monkeypatch)
    target = tmp_path / "d" / "f.jsonl"
    for url in ["http://example.com/f", "file:///etc/passwd", "ftp://x/y"]:
        with pytest.raises(DataError, match="only https"):
            data.download(url, target)
    assert not requests and not target.exists()

    fake_urlopen(monkeypatch, fail_after=4)
    with pytest.raises(DataError, match="could not fetch https://example.com/f .*--data-dir") as e:
        data.download("https://example.com/f", target)
    assert "\n" not in str(e.value) and not target.exists() and list(target.parent.iterdir()) == []

    fake_urlopen(monkeypatch, length=100)  # the server promised more than it sent
    with pytest.raises(DataError, match="6 of 100|11 of 100"):
        data.download("https://example.com/f", target)
    with pytest.raises(DataError, match="sha256"):
        fake_urlopen(monkeypatch)
        data.download("https://example.com/f", target, sha256="0" * 64)
    assert list(target.parent.iterdir()) == []

    sha = hashlib.sha256(b"hello world").hexdigest()
    assert data.download("https://example.com/f", target, sha256=sha).read_bytes() == b"hello world"
    requests = fake_urlopen(monkeypatch)
    data.download("https://example.com/f", target, sha256=sha)  # present and verified: no fetch
    assert not requests and list(target.parent.iterdir()) == [target]


def test_hub_file_caches_and_sends_the_token(tmp_path, monkeypatch):
    monkeypatch.setenv("SAIE_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    requests = fake_urlopen(monkeypatch, body=b"{}")
    path = data.hub_file("meta-llama/Llama-3.2-1B", "original/tokenizer.model")
    assert path == tmp_path / "hub" / "meta-llama" / "Llama-3.2-1B" / "original" / "tokenizer.model"
    assert requests[0].full_url == "https://huggingface.co/meta-llama/Llama-3.2-1B/resolve/main/original/tokenizer.model"
    assert requests[0].get_header("Authorization") == "Bearer hf_secret"
    assert data.hub_file("meta-llama/Llama-3.2-1B", "original/tokenizer.model") == path and len(requests) == 1
    for repo, name in [("../etc", "passwd"), ("a/b", "../../x"), ("noslash", "f")]:
        with pytest.raises(DataError):
            data.hub_file(repo, name)


def test_default_downloads_go_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAIE_CACHE", str(tmp_path))
    body = (GOOD * 3).encode()
    requests = fake_urlopen(monkeypatch, body=body)
    monkeypatch.setitem(data.GSM8K.urls, "train", ("https://example.com/train.jsonl", hashlib.sha256(body).hexdigest()))
    assert len(data.get_task("gsm8k").load("train")) == 3
    assert (tmp_path / "data" / "gsm8k" / "train.jsonl").read_bytes() == body and len(requests) == 1


def test_tar_extraction_stays_inside_its_folder(tmp_path):
    def archive(name, *members):
        with tarfile.open(tmp_path / name, "w") as tar:
            for member, body in [("data/dev/a_dev.csv", b"q,1,2,3,4,A\n"), *members]:
                info = tarfile.TarInfo(member)
                if body is None:  # a link to /etc/passwd
                    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                else:
                    info.size = len(body)
                tar.addfile(info, io.BytesIO(body or b""))
        return tmp_path / name
    data._extract_tar(archive("ok.tar", ("/abs.txt", b"x")), tmp_path / "ok")  # "/" is stripped
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()
                  and p.suffix != ".tar") == ["ok/abs.txt", "ok/data/dev/a_dev.csv"]
    assert data.get_task("mmlu").load("dev", tmp_path / "ok")[0].answer == "A"
    for name, member in [("up.tar", ("../evil.txt", b"x")), ("link.tar", ("data/dev/l.csv", None))]:
        with pytest.raises(DataError, match=f"{name}: not a whole, safe tar archive") as e:
            data._extract_tar(archive(name, member), tmp_path / "bad")
        assert "\n" not in str(e.value)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "bad/data/dev/l.csv").exists()
    (tmp_path / "cut.tar").write_bytes((tmp_path / "ok.tar").read_bytes()[:700])
    with pytest.raises(DataError, match="cut.tar"):
        data._extract_tar(tmp_path / "cut.tar", tmp_path / "cut")


# -----------------------------------------------------------------------------
# The real data sets (offline copies in ../shared/data; skipped when absent)

def test_real_gsm8k(shared_data):
    task = data.get_task("gsm8k")
    train, test = task.load("train", shared_data), task.load("test", shared_data / "gsm8k")
    assert (len(train), len(test)) == (7473, 1319)
    raw = [json.loads(l) for l in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()]
    for r, ex in zip(raw, test):
        final = r["answer"].split("####")[1].strip()
        assert ex.answer == final.replace(",", "") and task.extract(r["answer"]) == ex.answer
        assert task.is_correct(r["answer"], ex) and task.is_correct(task.target(ex), ex)
        assert "<<" not in ex.rationale
    assert sum("," in r["answer"].split("####")[1] for r in raw) == 14
    assert sorted(ex.answer for ex in test if ex.answer.startswith("-")) == ["-10", "-3"]
    rng = random.Random(0)
    wrong = [check_gsm8k_wrong(task, ex, rng) for ex in train[:300]]
    assert digest(wrong) == "1d59e3d7dc3336f6"   # pinned, like the arith problems


def test_real_csqa_and_mmlu(shared_data):
    csqa = data.get_task("csqa")
    val = csqa.load("validation", shared_data)
    assert len(val) == 1221 and all(len(ex.choices) == 5 and ex.answer in "ABCDE" for ex in val)
    assert all(csqa.is_correct(csqa.target(ex), ex) for ex in val)
    mmlu = data.get_task("mmlu")
    dev, test = mmlu.load("dev", shared_data), mmlu.load("test", shared_data)
    assert (len(dev), len(test)) == (285, 14042)
    assert len({ex.id.rsplit("-", 2)[0] for ex in test}) == 57
    assert all(mmlu.is_correct(mmlu.target(ex), ex) for ex in test)
    assert mmlu.splits[-1] == "test" and csqa.splits[-1] == "validation"
