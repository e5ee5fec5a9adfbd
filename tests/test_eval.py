"""Evaluation: ROUGE and Wilson against hand-computed values, every mode's bookkeeping on a scripted
model, the HTML report (markup, headless browser), the command line, and a tiny real model end to end."""
import html.parser
import json
import re
import shutil
import struct
import subprocess
import zlib
from types import SimpleNamespace

import pytest

import eval as ev

# -----------------------------------------------------------------------------
# Statistics


def test_wilson_interval_by_hand():
    lo, hi = ev.wilson(50, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.4038, 0.5962)
    # 9/10: z²=3.841459; center=(.9+.192073)/1.384146=.788987, half=1.415995*sqrt(.009+.009604)=.193137
    lo, hi = ev.wilson(9, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.5958, 0.9821)
    assert ev.wilson(0, 10)[0] == 0.0 and ev.wilson(10, 10)[1] == pytest.approx(1.0)
    assert ev.wilson(0, 0) == (0.0, 1.0)


def test_rouge_by_hand():
    ref, cand = "the cat sat on the mat", "the cat is on the mat"
    # unigrams: overlap the,the,cat,on,mat = 5 of 6 and 6 -> F1 5/6
    assert ev.rouge_n(cand, ref, 1) == pytest.approx(5 / 6)
    # bigrams: ref {the cat, cat sat, sat on, on the, the mat}, cand {the cat, cat is, is on, on the, the mat}: 3/5
    assert ev.rouge_n(cand, ref, 2) == pytest.approx(3 / 5)
    # LCS "the cat on the mat" = 5 -> 5/6
    assert ev.rouge_l(cand, ref) == pytest.approx(5 / 6)
    # Different lengths: P = 2/3, R = 2/4 -> F1 = 2PR/(P+R) = 4/7; LCS of "a b c" / "c a d b" is "a b" = 2
    assert ev.rouge_n("A, b; c!", "c a d b", 1) == pytest.approx(2 * 3 / 3 * 3 / 4 / (3 / 3 + 3 / 4))
    assert ev.rouge_l("A, b; c!", "c a d b") == pytest.approx(4 / 7)
    assert ev.tokens("Ann has 12 pens. 7 + 5 = 12") == ["ann", "has", "12", "pens", "7", "5", "12"]
    assert ev.rouge_n("a a a", "a", 1) == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))   # clipped counts
    assert ev.rouge("", "x") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert ev.rationale("7 + 5 = 12\n#### 12") == "7 + 5 = 12"


def test_majority_ignores_unparsed_and_breaks_ties_by_first_seen():
    assert ev.majority(["3", None, "4", "4"]) == "4"
    assert ev.majority(["5", "3", "3", "5"]) == "5"
    assert ev.majority([None, None]) is None


# -----------------------------------------------------------------------------
# A scripted stand-in model: answers are a function of the prompt text, so every number is known.

class ByteTok:
    eot, n_vocab, name, chat, bos = 256, 257, "bytes", False, None

    def encode(self, s):
        return list(s.encode())

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", "replace")


class Scripted:
    def __init__(self, fn):
        self.fn, self.tok, self.prompts = fn, ByteTok(), []
        self.config = SimpleNamespace(block_size=100_000)

    def generate(self, prompts, max_new_tokens, temperature=0.0, top_k=None, top_p=None, stop=None, seed=None):
        texts = [self.tok.decode(p) for p in prompts]
        self.prompts.append(texts)
        return [self.tok.encode(self.fn(t, row)) for row, t in enumerate(texts)]


def S(model, temperature=0.0, remarks=True):
    """A Speaker of a scripted model (remarks: it plays the partner in the trained mode)."""
    return ev.Speaker(model, model.tok, 256, temperature, remarks=remarks)


class ToyTask:
    name = "toy"

    def extract(self, text):
        m = re.search(r"####\s*(\S+)", text)
        return m.group(1) if m else None

    def is_correct(self, text, ex):
        return self.extract(text) == ex.answer


def ex(i, answer, rationale=""):
    return SimpleNamespace(id=f"q{i}", question=f"question {i} <b>&", answer=answer, rationale=rationale)


def last_answer(text):
    return re.findall(r"#### (\S+)", text)[-1]


def discussing(prompt, row):
    """Learner: q0 right (1), q1 wrong (9) at first; after a remark, it copies the remark's answer.
    Partner: support repeats the learner; oppose gives the gold answer if the learner was wrong, else 7."""
    gold = "1" if "question 0" in prompt else "2"
    if prompt.endswith("Answer:"):
        return f"copy\n#### {last_answer(prompt)}" if "Partner:" in prompt else (
            "one step\n#### 1" if gold == "1" else "bad step\n#### 9")
    learner = last_answer(prompt)
    if prompt.endswith("I agree."):
        return f"yes\n#### {learner}"
    return f"no\n#### {'7' if learner == gold else gold}"


EXAMPLES = [ex(0, "1", "one step"), ex(1, "2", "two steps")]


def test_single_scores_parsed_answers_and_rouge():
    model = Scripted(lambda p, r: "one step\n#### 1" if "question 0" in p else "no idea")
    res = ev.evaluate(S(model), ToyTask(), EXAMPLES)
    assert (res["n"], res["correct"], res["accuracy"], res["unparsed"]) == (2, 1, 0.5, 0.5)
    assert [p["correct"] for p in res["predictions"]] == [[True], [False]]
    # ROUGE of the rationale: q0 identical, q1 "no idea" vs "two steps" shares nothing
    assert res["rouge"] == {"rouge1": 0.5, "rouge2": 0.5, "rougeL": 0.5}
    assert len(model.prompts) == 1 and model.prompts[0][0] == "Question: question 0 <b>&\nAnswer:"


def test_single_majority_vote_over_samples():
    votes = ["#### 5", "#### 1", "#### 1"]
    model = Scripted(lambda p, r: votes[r % 3])
    res = ev.evaluate(S(model, 0.7), ToyTask(), EXAMPLES[:1], samples=3)
    assert res["predictions"][0]["answers"] == ["1"] and res["accuracy"] == 1.0
    assert len(res["predictions"][0]["transcripts"]) == 3
    with pytest.raises(ValueError):
        ev.evaluate(S(model), ToyTask(), EXAMPLES, samples=3)  # a greedy learner cannot vote


@pytest.mark.parametrize("stance", ["oppose", "support"])
def test_self_discussion_dynamics(stance):
    model = Scripted(discussing)
    res = ev.evaluate(S(model), ToyTask(), EXAMPLES, S(model), stance)
    assert res["partner_mode"] == "trained" and res["config"]["stance"] == stance
    assert [p["accuracy"] for p in res["per_round"]] == [0.5, 0.5]
    turns = res["predictions"][1]["transcripts"][0]["turns"]
    assert [t["speaker"] for t in turns] == ["learner", "partner", "learner"]
    assert res["alignment"] == 1.0 and res["alignment_by_stance"] == {stance: 1.0}
    if stance == "oppose":   # q0: right, told 7, copies -> wrong; q1: wrong, told 2, copies -> right
        assert (res["kept"], res["fixed"], res["changed"]) == (0.0, 1.0, 1.0)
        assert res["predictions"][1]["answers"] == ["9", "2"]
        assert (res["copy_rate_partner_right"], res["copy_rate_partner_wrong"]) == (1.0, 1.0)
    else:                    # support: nothing moves
        assert (res["kept"], res["fixed"], res["changed"]) == (1.0, 0.0, 0.0)
        assert (res["copy_rate_partner_right"], res["copy_rate_partner_wrong"]) == (1.0, 1.0)


def test_self_reflection_without_remarks_and_multi_partner():
    model = Scripted(discussing)
    res = ev.evaluate(S(model), ToyTask(), EXAMPLES, S(model, remarks=False), "both", rounds=2)
    turns = res["predictions"][0]["transcripts"][0]["turns"]
    assert [t["speaker"] for t in turns] == ["learner"] * 3 and len(res["per_round"]) == 3
    assert "alignment" not in res and res["config"]["stance"] is None
    # multi: the learner never changes its mind; the partner is another model (always opposes with 2)
    learner = Scripted(lambda p, r: "one step\n#### 1" if "question 0" in p else "bad\n#### 9")
    partner = Scripted(lambda p, r: "#### 2")
    res = ev.evaluate(S(learner), ToyTask(), EXAMPLES, S(partner), "oppose")
    assert partner.prompts and res["copy_rate"] == 0.0 and res["copy_rate_partner_right"] == 0.0
    assert res["alignment_by_stance"] == {"oppose": 1.0}   # both remarks (2) differ from 1 and 9
    with pytest.raises(ValueError):  # another model that cannot remark
        ev.evaluate(S(learner), ToyTask(), EXAMPLES, S(partner, remarks=False), "oppose")


def test_debate_shows_each_agent_the_others_and_votes():
    def agent(prompt, row):
        if "Other agents" not in prompt:
            return [f"A{row % 3}\n#### 1", f"A{row % 3}\n#### 2", f"A{row % 3}\n#### 2"][row % 3]
        return "convinced\n#### 1"
    model = Scripted(agent)
    res = ev.evaluate(S(model, 0.7), ToyTask(), EXAMPLES[:1], agents=3)
    assert [p["accuracy"] for p in res["per_round"]] == [0.0, 1.0] and res["fixed"] == 1.0
    assert res["predictions"][0]["answers"] == ["2", "1"]
    second = model.prompts[1]
    assert len(second) == 3
    for i, prompt in enumerate(second):   # own history once, the two others once each
        assert all(prompt.count(f"A{j}\n") == 1 for j in range(3))
        assert prompt.index(f"A{i}\n") < prompt.index("Other agents")


# -----------------------------------------------------------------------------
# Report and output files

class Markup(html.parser.HTMLParser):
    VOID = {"meta", "input", "br", "img", "hr", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)

    def handle_data(self, d):
        self.text.append(d)


def results_list():
    model = Scripted(discussing)
    out = []
    for method in ("sft", "saie"):
        for mode in ("single", "self"):
            partner = (S(model), "oppose") if mode == "self" else ()
            r = ev.evaluate(S(model), ToyTask(), EXAMPLES, *partner)
            r["method"] = method
            out.append(r)
    return out


def test_report_is_balanced_markup_with_every_question(tmp_path):
    rs = results_list()
    path = tmp_path / "report.html"
    ev.write_report(rs, path)
    page = path.read_text()
    parser = Markup()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    text = "".join(parser.text)
    for e in EXAMPLES:
        assert e.question in text                       # unescaped by the parser: it was escaped in the page
    assert "<b>&" not in page and "&lt;b&gt;&amp;" in page
    assert page.count('<details class="q"') == 8 and "<polyline" in page and "<rect" in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")   # no CDN


def png_pixels(path):
    """Decode an 8-bit RGB(A) PNG with zlib and struct: a list of rows of pixel tuples."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(raw):
        n, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        body = raw[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert depth == 8 and color in (2, 6)
    bpp, data, rows, prev = 3 if color == 2 else 4, zlib.decompress(idat), [], bytearray(w * (3 if color == 2 else 4))
    stride = w * bpp
    for y in range(h):
        f, line = data[y * (stride + 1)], bytearray(data[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a, b = line[i - bpp] if i >= bpp else 0, prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return rows


class Table(html.parser.HTMLParser):
    """The report's accuracy table: its header and its rows, as the text of their cells."""

    def __init__(self):
        super().__init__()
        self.rows, self.cell, self.inside, self.tables = [], None, False, 0

    def handle_starttag(self, tag, attrs):
        if tag == "table":  # the first table only
            self.inside, self.tables = self.tables == 0, self.tables + 1
        if self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if self.inside and tag in ("td", "th"):
            self.rows[-1].append("".join(self.cell))
            self.cell = None
        self.inside &= tag != "table"

    def handle_data(self, d):
        if self.cell is not None:
            self.cell.append(d)


def table_of(page):
    """{column: cell} for each row of the first table in the page."""
    t = Table()
    t.feed(page)
    head, *rows = t.rows
    return [dict(zip(head, row)) for row in rows]


def pct(x):
    return "–" if x is None else f"{100 * x:.1f}"


def assert_rows_match(page, results):
    """Each table row shows its own run's figures, in order: as results.json holds them."""
    rows = table_of(page)
    assert len(rows) == len(results)
    for row, r in zip(rows, results):
        assert (row["method"], row["mode"], row["n"]) == (r["method"], r["mode"], str(r["n"]))
        assert row["accuracy"] == pct(r["accuracy"])
        assert row["95% CI"] == f"{pct(r['ci95'][0])}–{pct(r['ci95'][1])}"
        assert row["by round"] == " → ".join(pct(p["accuracy"]) for p in r["per_round"])
        for column, key in (("kept", "kept"), ("fixed", "fixed"), ("alignment", "alignment")):
            assert row[column] == pct(r.get(key)), (column, row, r.get(key))


def distinct_results():
    """Three methods x two modes whose figures differ, on five questions: a method's learner first answers
    questions 0..k-1 right (k = 1, 2, 3); after an opposing remark (the gold answer when it was wrong, else 7)
    the warm-up and saie learners copy the remark, sft keeps its answer. As results.json stores them."""
    exs = [ex(i, str(i + 1), f"step {i}") for i in range(5)]

    def learner(k, copies):
        def fn(prompt, row):
            i = int(re.search(r"question (\d)", prompt)[1])
            gold, first = str(i + 1), str(i + 1) if i < k else "9"
            if prompt.endswith("Answer:") and "Partner:" in prompt:
                return f"again\n#### {last_answer(prompt) if copies else first}"
            if prompt.endswith("Answer:"):
                return f"step {i}\n#### {first}"
            return f"no\n#### {'7' if last_answer(prompt) == gold else gold}"
        return fn
    out = []
    for method, k, copies in (("warmup", 1, True), ("sft", 2, False), ("saie", 3, True)):
        model = Scripted(learner(k, copies))
        for mode in ("single", "self"):
            partner = (S(model), "oppose") if mode == "self" else ()
            r = ev.evaluate(S(model), ToyTask(), exs, *partner)
            r["method"] = method
            out.append(json.loads(json.dumps({k: v for k, v in r.items() if k != "predictions"})) |
                       {"predictions": r["predictions"]})
    return out


def test_report_table_shows_each_runs_own_figures(tmp_path):
    rs = distinct_results()
    assert len({r["accuracy"] for r in rs}) >= 4 and len({r.get("kept") for r in rs}) >= 2  # rows differ
    ev.write_report(rs, tmp_path / "report.html")
    assert_rows_match((tmp_path / "report.html").read_text(), rs)


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="no chromium on PATH")
def test_report_renders_in_a_headless_browser(tmp_path):
    path = tmp_path / "report.html"
    rs = distinct_results()
    ev.write_report(rs, path)
    png = tmp_path / "shot.png"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}"]
    subprocess.run(flags + [f"--screenshot={png}", "--window-size=1200,2400", path.as_uri()],
                   check=True, timeout=60, capture_output=True)
    dom = subprocess.run(flags + ["--dump-dom", path.as_uri()], check=True, timeout=60, capture_output=True, text=True)
    # Numbers read from the page as the browser built it: the filter script's count, the table, the bars.
    shown = sum(len(r["predictions"]) for r in rs)
    assert re.search(r'id="f-count"[^>]*>(\d+) shown<', dom.stdout)[1] == str(shown)
    assert_rows_match(dom.stdout, rs)
    bar_labels = re.findall(r'<text[^>]*text-anchor="middle"[^>]*>(\d+\.\d)</text>', dom.stdout)
    assert bar_labels == [f"{100 * r['accuracy']:.1f}" for r in rs]
    pixels = [p for row in png_pixels(png)[::3] for p in row[::3]]
    assert len(set(pixels)) > 10                     # not blank: text, table, chart
    bar = (0x4e, 0x79, 0xa7)                         # the first method's bar colour: the SVG rendered
    assert any(all(abs(p[k] - bar[k]) <= 3 for k in range(3)) for p in pixels)


def test_the_browser_tests_readers_work_on_the_written_page(tmp_path):
    """The readers the browser test applies to chromium's DOM, applied to the page as written (the DOM
    differs only by the filter's count), so they are checked where no browser is installed."""
    rs = distinct_results()
    ev.write_report(rs, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert_rows_match(page, rs)
    bar_labels = re.findall(r'<text[^>]*text-anchor="middle"[^>]*>(\d+\.\d)</text>', page)
    assert bar_labels == [f"{100 * r['accuracy']:.1f}" for r in rs]
    assert re.search(r'id="f-count"[^>]*></span>', page)


def test_save_writes_results_predictions_and_compare(tmp_path, capsys):
    rs = results_list()
    for i, r in enumerate(rs):
        ev.save(r, tmp_path / str(i))
    summary = json.loads((tmp_path / "0" / "results.json").read_text())
    assert "predictions" not in summary and summary["accuracy"] == 0.5 and summary["ci95"][0] < 0.5
    lines = (tmp_path / "3" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["q0", "q1"]
    assert not list(tmp_path.glob("*/*.tmp"))
    ev.main(["--compare", *(str(tmp_path / str(i) / "results.json") for i in range(4)), "--out", str(tmp_path / "cmp")])
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| method | task | mode |") and table[6] == ""
    assert len(table) == 12 and table[10].startswith("| sft · single | saie · single | 2 | +0.0 |")  # paired
    assert table[4].startswith("| saie | toy | single | 2 | 50.0 |")
    assert (tmp_path / "cmp" / "report.html").read_text().count('<details class="q"') == 8


@pytest.mark.parametrize("argv", [
    ["--ckpt", "x.pt", "--mode", "multi"],                          # multi without a partner
    ["--ckpt", "x.pt", "--samples", "2"],                           # samples with greedy decoding
    ["--ckpt", "x.pt", "--mode", "self", "--rounds", "0"],
    ["--ckpt", "x.pt", "--task", "nope"],
    ["--ckpt", "x.pt", "--partner", "y.pt"],                        # a partner outside multi
    ["--ckpt", "x.pt", "--mode", "single", "--rounds", "2"],
    ["--ckpt", "x.pt", "--mode", "debate", "--agents", "1"],
    ["--ckpt", "x.pt", "--mode", "debate", "--agents", "0"],      # not silently the default 3
    ["--ckpt", "x.pt", "--max-new-tokens", "0"],                    # nor the task's turn length
    ["--ckpt", "x.pt", "--limit", "x"],
    ["--ckpt", "x.pt", "--model", "gpt2"],
    ["--task", "gsm8k"],                                            # no model at all
    ["--compare", "/nonexistent/results.json"],
])
def test_bad_flag_combinations_exit_2(argv):
    with pytest.raises(SystemExit) as e:
        ev.parse_args(argv)
    assert e.value.code == 2


def test_defaults():
    a = ev.parse_args(["--ckpt", "x.pt", "--mode", "debate"])
    assert (a.temperature, a.agents, a.rounds) == (0.7, 3, 1)
    a = ev.parse_args(["--model", "gpt2", "--mode", "self"])
    assert (a.temperature, a.stance, a.rounds, a.samples) == (0.0, "both", 1, 1)
    # A turn as long as arith's block_size (256) would leave no room for the prompt: 24, as saie.py's preset.
    assert ev.parse_args(["--ckpt", "x.pt", "--task", "arith"]).max_new_tokens == 24
    assert ev.parse_args(["--ckpt", "x.pt", "--task", "gsm8k"]).max_new_tokens == 256
    assert ev.parse_args(["--ckpt", "x.pt", "--task", "arith", "--max-new-tokens", "12"]).max_new_tokens == 12


# -----------------------------------------------------------------------------
# A tiny random GPT with the arith tokenizer, end to end

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    import data
    from model import GPT, GPTConfig, save_checkpoint
    tok, task = data.get_tokenizer("arith"), data.get_task("arith")
    models, paths = [], []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = GPT(GPTConfig(family="gpt2", vocab_size=tok.n_vocab, block_size=256, n_layer=2, n_head=2, n_embd=32))
        m.tokenizer_spec = tok.name
        models.append(m.eval())
        path = tmp_path_factory.mktemp(f"m{seed}") / "ckpt.pt"
        save_checkpoint(path, m, remarks=seed == 0)
        paths.append(path)
    return SimpleNamespace(tok=tok, task=task, models=models, paths=paths, examples=task.load("test")[:4])


@pytest.mark.parametrize("mode", ["single", "samples", "self", "multi", "debate"])
def test_every_mode_on_a_tiny_model_is_deterministic(tiny, mode):
    learner = ev.Speaker(tiny.models[0], tiny.tok, 12, 0.8 if mode == "samples" else 0.0)
    partner = lambda i: ev.Speaker(tiny.models[i], tiny.tok, 12, remarks=True)
    kw = {"samples": dict(samples=2), "self": dict(partner=partner(0), stance="both", rounds=2),
          "multi": dict(partner=partner(1), stance="both"), "debate": dict(agents=2)}.get(mode, {})
    runs = [ev.evaluate(learner, tiny.task, tiny.examples, batch_size=3, **kw) for _ in range(2)]
    assert runs[0]["predictions"] == runs[1]["predictions"]
    r = runs[0]
    assert r["n"] == 4 and len(r["per_round"]) == r["rounds"] + 1
    assert r["correct"] == sum(p["correct"][-1] for p in r["predictions"])
    for p, e in zip(r["predictions"], tiny.examples):   # never correct without a parsed answer
        assert p["correct"][-1] == (p["answers"][-1] is not None and tiny.task.is_correct(p["text"], e))
        assert p["rouge"] == ev.rouge(ev.rationale(p["text"]), e.rationale)   # the shown text's rationale
    for k in ("rouge1", "rouge2", "rougeL"):                                   # the mean over questions
        assert r["rouge"][k] == pytest.approx(sum(p["rouge"][k] for p in r["predictions"]) / 4)
    if mode in ("self", "multi"):
        assert r["partner_mode"] == "trained"
        # Alignment recounted from the transcripts: support keeps the learner's answer, oppose names another.
        hits = [(t["answer"] == prev["answer"]) == (t["stance"] == "support") and t["answer"] is not None
                for p in r["predictions"] for tr in p["transcripts"]
                for prev, t in zip(tr["turns"], tr["turns"][1:]) if t["speaker"] == "partner"]
        assert len(hits) == 4 * r["rounds"] and r["alignment"] == pytest.approx(sum(hits) / len(hits))
        speakers = [t["speaker"] for t in r["predictions"][0]["transcripts"][0]["turns"]]
        assert speakers == ["learner", "partner"] * r["rounds"] + ["learner"]


def test_command_line_end_to_end(tiny, tmp_path, capsys):
    common = ["--task", "arith", "--limit", "3", "--max-new-tokens", "10", "--device", "cpu"]
    ev.main(["--ckpt", str(tiny.paths[0]), "--mode", "self", "--out", str(tmp_path / "a"), *common])
    ev.main(["--ckpt", str(tiny.paths[1]), "--mode", "self", "--out", str(tmp_path / "b"), *common])
    ev.main(["--ckpt", str(tiny.paths[0]), "--mode", "multi", "--partner", str(tiny.paths[0]),
             "--stance", "oppose", "--out", str(tmp_path / "c"), *common])
    a, b, c = (json.loads((tmp_path / d / "results.json").read_text()) for d in "abc")
    assert (a["partner_mode"], b["partner_mode"], c["partner_mode"]) == ("trained", "reflect", "trained")
    assert a["method"] == tiny.paths[0].parent.name and a["config"]["split"] == "test"
    lines = (tmp_path / "c" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x)["stance"] == "oppose" for x in lines)
    with pytest.raises(SystemExit):   # the partner without remarks can't take part in a multi discussion
        ev.main(["--ckpt", str(tiny.paths[0]), "--mode", "multi", "--partner", str(tiny.paths[1]), *common,
                 "--out", str(tmp_path / "d")])
    capsys.readouterr()
    ev.main(["--compare", str(tmp_path / "a" / "results.json"), str(tmp_path / "c" / "results.json")])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and "| self |" in out[2] and "| multi |" in out[3]
    assert out[4].startswith("note: ROUGE on arith")   # marked, not shown as a finding
