"""
Evaluation: is the SAIE-trained model better alone, and better when it discusses?

    python eval.py --ckpt out/saie/ckpt.pt --task arith --mode single
    python eval.py --ckpt out/saie/ckpt.pt --task arith --mode self --rounds 2 --stance honest
    python eval.py --ckpt out/saie/ckpt.pt --task arith --mode multi --partner out/sft/ckpt.pt
    python eval.py --model gpt2 --task gsm8k --mode debate --agents 3
    python eval.py --compare out/eval/*/results.json

Modes:
- single: question -> reasoning -> answer (--samples k: the majority vote of k samples).
- self:   R rounds of discussion with a copy of itself as the partner.
- multi:  the same with another model, one fixed --partner for every learner compared.
- debate: Du et al., inference only: N sampled agents answer, then each round every agent sees
          the others' previous answers and answers again; the last round's vote counts.
Stances (--stance) of the partner:
- honest: it answers alone first; each remark opens with "I agree." when that answer is the
          learner's latest, else "I disagree.", and goes on with its own derivation.
- both (50/50 by seed), support, oppose: it is told its stance. A stress test: is a right answer
          kept under opposition (kept), a wrong one fixed (fixed)?
How a partner remarks is discuss.partner_mode's (trained, prompted, honest; reflect: no remark).
Round 0 is the answer alone; an unparsed answer is never correct. `mcnemar` pairs two models on
the same questions; `caveats` mark figures that measure nothing (ROUGE on arith, debate by a
model never shown its format).
"""

import argparse
import html
import json
import math
import random
import re
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import data
from model import load_model, method_name
from discuss import (OPENER, Speaker, Transcript, Turn, add_turns, discuss, partner_mode,
                     stance_alignment, stances_for)

MODES = ("single", "self", "multi", "debate")
STANCE_RULES = ("honest", "both", "support", "oppose")
HONEST_TEMPERATURE = 0.7   # the honest partner samples its answer: a greedy copy would always agree


def partner_temperature(stance, told=0.0):
    """How a partner samples: HONEST_TEMPERATURE when honest, else `told` (a stance it is told)."""
    return HONEST_TEMPERATURE if stance == "honest" else told


# -----------------------------------------------------------------------------
# Statistics: confidence interval, paired test, majority vote, ROUGE


def wilson(k, n, z=1.959964):
    """95% Wilson score interval of a binomial proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p, zz = k / n, z * z
    center = (p + zz / (2 * n)) / (1 + zz / n)
    half = z / (1 + zz / n) * math.sqrt(p * (1 - p) / n + zz / (4 * n * n))
    return (max(0.0, center - half), min(1.0, center + half))


def mcnemar(a, b):
    """Two models' right/wrong on the same questions, in order: the difference a - b, the questions
    only one got right, McNemar's exact two-sided p (binomial, p = 1/2, on the disagreements)."""
    if len(a) != len(b):
        raise ValueError(f"paired comparison of {len(a)} and {len(b)} answers")
    only_a = sum(bool(x) and not y for x, y in zip(a, b))
    only_b = sum(bool(y) and not x for x, y in zip(a, b))
    m, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m) if m else 1.0
    return dict(n=len(a), only_a=only_a, only_b=only_b, diff=_rate(only_a - only_b, len(a)), p=p)


def _rate(k, n):
    return k / n if n else None


def majority(answers):
    """The most common parsed answer (a tie goes to the one seen first); None when none parsed."""
    counts = Counter(a for a in answers if a is not None)
    return counts.most_common(1)[0][0] if counts else None


def tokens(text):
    """ROUGE tokens: lowercase runs of letters and digits."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _f1(overlap, n_candidate, n_reference):
    if overlap == 0:
        return 0.0
    p, r = overlap / n_candidate, overlap / n_reference
    return 2 * p * r / (p + r)


def rouge_n(candidate, reference, n):
    """ROUGE-N F1: clipped n-gram overlap."""
    grams = lambda text: Counter(zip(*(tokens(text)[i:] for i in range(n))))
    c, r = grams(candidate), grams(reference)
    return _f1(sum((c & r).values()), sum(c.values()), sum(r.values()))


def rouge_l(candidate, reference):
    """ROUGE-L F1: the longest common subsequence, one row of the DP table at a time."""
    c, r = tokens(candidate), tokens(reference)
    prev = [0] * (len(r) + 1)
    for x in c:
        cur = [0]
        for j, y in enumerate(r):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return _f1(prev[-1], len(c), len(r))


def rouge(candidate, reference):
    return {"rouge1": rouge_n(candidate, reference, 1), "rouge2": rouge_n(candidate, reference, 2),
            "rougeL": rouge_l(candidate, reference)}


def rationale(text):
    """The reasoning of an answer: the text before its final '####' line."""
    return text.split("####")[0].strip()

# -----------------------------------------------------------------------------
# The modes


def honest_discussion(learner, partner, task, examples, rounds, seed=0):
    """The partner answers each question alone, once; each remark is that answer under the opener
    its comparison with the learner's latest answer calls for. Seeds as in discuss.discuss."""
    trs = [Transcript(ex.question, ex.answer, None, ex.id) for ex in examples]
    own = partner.speak(trs, "learner", seed=seed + 2 * rounds + 1)  # asked alone: no turns yet
    for r in range(rounds):
        add_turns(trs, learner, "learner", task, seed=seed + 2 * r)
        for tr, text in zip(trs, own):
            answer = task.extract(text)
            agrees = answer is not None and answer == tr.turns[-1].answer
            tr.stance = "support" if agrees else "oppose"
            tr.turns.append(Turn("partner", f"{OPENER[tr.stance]} {text}", answer, tr.stance))
    add_turns(trs, learner, "learner", task, seed=seed + 2 * rounds)
    return trs


class CachedSpeaker(Speaker):
    """A greedy Speaker that reuses the turns it generated for the same prompt (`cache`, shared by
    one model's evaluations): a discussion opens with the answer alone, so it is generated once."""

    def __init__(self, *args, cache, **kw):
        super().__init__(*args, **kw)
        self.cache = cache

    def generate(self, prompts, seed):
        new = [p for p in dict.fromkeys(map(tuple, prompts)) if p not in self.cache]
        if new:
            self.cache.update(zip(new, super().generate([list(p) for p in new], seed)))
        return [self.cache[tuple(p)] for p in prompts]


def debate(speaker, task, examples, agents, rounds, seed=0):
    """Du et al.'s debate: `agents` transcripts per question, all speaking in one call; from round
    1 on, each agent is first shown the others' previous answers, by number."""
    groups = [[Transcript(ex.question, ex.answer, None, ex.id) for _ in range(agents)]
              for ex in examples]
    flat = [tr for group in groups for tr in group]
    for r in range(rounds + 1):
        if r > 0:
            for group in groups:
                previous = [tr.turns[-1].text for tr in group]
                for i, tr in enumerate(group):
                    others = "\n\n".join(f"Agent {j + 1}: {text}"
                                         for j, text in enumerate(previous) if j != i)
                    tr.turns.append(Turn("agents", f"Other agents answered:\n\n{others}\n\nUse "
                                                   "their reasoning as advice and answer again."))
        for tr, text in zip(flat, speaker.speak(flat, "learner", seed=seed + r)):
            tr.turns.append(Turn("learner", text, task.extract(text)))
    return groups


def evaluate(learner, task, examples, partner=None, stance="honest", rounds=1, samples=1,
             agents=0, batch_size=32, seed=0, log=None):
    """Accuracy (with a 95% Wilson interval), accuracy after each round, the discussion's dynamics.

    learner: the Speaker evaluated. Alone without a partner (samples > 1: a majority vote, if it
    samples); with `partner`, a Speaker in the partner's role (on the learner's own model: self),
    for `rounds` rounds under `stance`; or in a debate of `agents` copies of the learner.
    batch_size: sequences per generate call.
    """
    mode = ("debate" if agents else "single" if partner is None else
            "self" if partner.model is learner.model else "multi")
    how = partner_mode(partner.tok, partner.remarks, stance) if partner else None
    for wrong, why in ((stance not in STANCE_RULES, f"unknown stance {stance!r}"),
                       (samples > 1 and (mode != "single" or learner.temperature <= 0),
                        "samples > 1 needs a learner alone that samples (temperature > 0)"),
                       (mode != "single" and rounds < 1, f"mode {mode} needs rounds >= 1"),
                       (agents and (agents < 2 or partner),
                        "a debate needs 2 agents or more, and no partner"),
                       (how == "reflect" and mode == "multi", "the partner can neither follow "
                        "instructions nor was trained to remark")):
        if wrong:
            raise ValueError(why)
    rounds = 0 if mode == "single" else rounds
    remarking = partner if how != "reflect" else None  # reflect: the learner answers again alone
    stances = (stances_for(len(examples), stance, random.Random(seed))
               if remarking and how != "honest" else [None] * len(examples))
    runs = samples if mode == "single" else agents if mode == "debate" else 1
    step = max(1, batch_size // runs)
    groups = []
    for c, lo in enumerate(range(0, len(examples), step)):
        chunk, chunk_seed = examples[lo:lo + step], seed + 1000 * c
        if mode == "debate":
            groups += debate(learner, task, chunk, agents, rounds, seed=chunk_seed)
        elif how == "honest":
            trs = honest_discussion(learner, partner, task, chunk, rounds, seed=chunk_seed)
            groups += [[tr] for tr in trs]
        else:
            trs = discuss(learner, remarking, task, [ex for ex in chunk for _ in range(runs)],
                          [s for s in stances[lo:lo + step] for _ in range(runs)], rounds,
                          final_answer=True, seed=chunk_seed)
            groups += [trs[i:i + runs] for i in range(0, len(trs), runs)]
        if log:
            log(f"{mode}: {lo + len(chunk)}/{len(examples)} questions")
    config = dict(task=task.name, mode=mode, rounds=rounds,
                  stance=stance if remarking else None, partner_mode=how,
                  temperature=learner.temperature, samples=samples,
                  agents=agents if mode == "debate" else None,
                  max_new_tokens=learner.max_new_tokens, seed=seed,
                  partner_temperature=remarking.temperature if remarking else None)
    res = score(task, examples, groups, config)
    if mode == "debate" and not learner.tok.chat:
        res["caveats"].append("debate: this model was never shown the debate format (only chat "
                              "models are asked in words), so the figure measures the format, not "
                              "a finding")
    return res


def score(task, examples, groups, config):
    """The results from one group of transcripts per question (several: samples, agents)."""
    rounds, preds = config["rounds"], []
    for ex, group in zip(examples, groups):
        learner_turns = [[t for t in tr.turns if t.speaker == "learner"] for tr in group]
        answers, correct = [], []
        for r in range(rounds + 1):
            candidates = [turns[r] for turns in learner_turns]
            vote = majority(t.answer for t in candidates)
            shown = next((t for t in candidates if t.answer == vote), candidates[0])
            answers.append(vote)
            correct.append(vote is not None and bool(task.is_correct(shown.text, ex)))
        p = dict(id=ex.id, question=ex.question, gold=ex.answer, stance=group[0].stance,
                 answers=answers, correct=correct, changed=answers[-1] != answers[0],
                 text=shown.text, transcripts=[asdict(tr) for tr in group])
        if ex.rationale:
            p["rouge"] = rouge(rationale(shown.text), ex.rationale)
        preds.append(p)

    n, scored = len(preds), [p["rouge"] for p in preds if "rouge" in p]
    right = [sum(p["correct"][r] for p in preds) for r in range(rounds + 1)]
    per_round = [dict(round=r, correct=k, accuracy=_rate(k, n), ci95=wilson(k, n))
                 for r, k in enumerate(right)]
    last = per_round[-1]
    res = dict(mode=config["mode"], task=config["task"], n=n, correct=last["correct"],
               accuracy=last["accuracy"], ci95=last["ci95"], rounds=rounds, per_round=per_round,
               unparsed=_rate(sum(p["answers"][-1] is None for p in preds), n),
               rouge={k: sum(s[k] for s in scored) / len(scored) for k in scored[0]}
               if scored else None)
    if rounds:
        right0 = [p["correct"][-1] for p in preds if p["correct"][0]]
        wrong0 = [p["correct"][-1] for p in preds if not p["correct"][0]]
        res.update(kept=_rate(sum(right0), len(right0)), fixed=_rate(sum(wrong0), len(wrong0)),
                   changed=_rate(sum(p["changed"] for p in preds), n),
                   after_vs_alone=mcnemar([p["correct"][-1] for p in preds],
                                          [p["correct"][0] for p in preds]))
    if config["stance"]:
        res.update(remark_stats(task, examples, groups))
        if config["stance"] == "honest":  # the opener follows the answers: aligned by construction
            agreed = sum(p["stance"] == "support" for p in preds)
            res.update(alignment=None, agreed=_rate(agreed, n))
    notes = ["ROUGE on arith: the gold rationale is fixed by the chain, so ROUGE only restates "
             "accuracy; not a finding"] if res["rouge"] and task.name == "arith" else []
    return {**res, "partner_mode": config["partner_mode"], "caveats": notes, "config": config,
            "predictions": preds}


def remark_stats(task, examples, groups):
    """Stance alignment of the partner's remarks; how often the learner copied the last remark."""
    trs = [tr for group in groups for tr in group]
    copies = {True: [0, 0], False: [0, 0]}          # partner right? -> [copied, cases]
    for ex, group in zip(examples, groups):
        for tr in group:
            remark, final = [t for t in tr.turns if t.speaker == "partner"][-1], tr.turns[-1]
            right = remark.answer is not None and bool(task.is_correct(remark.text, ex))
            copies[right][0] += final.answer is not None and final.answer == remark.answer
            copies[right][1] += 1
    return dict(alignment=stance_alignment(trs),
                alignment_by_stance={s: stance_alignment([t for t in trs if t.stance == s])
                                     for s in sorted({tr.stance for tr in trs})},
                copy_rate=_rate(copies[True][0] + copies[False][0], len(trs)),
                copy_rate_partner_right=_rate(*copies[True]),
                copy_rate_partner_wrong=_rate(*copies[False]))

# -----------------------------------------------------------------------------
# Output: results.json, predictions.jsonl, tables, report.html (files written atomically)


def write_json(path, obj):
    data.write_atomic(path, json.dumps(obj, indent=2) + "\n")


def save(results, out_dir):
    """results.json (everything but the predictions), predictions.jsonl, report.html."""
    out = Path(out_dir)
    write_json(out / "results.json", {k: v for k, v in results.items() if k != "predictions"})
    data.write_atomic(out / "predictions.jsonl",
                      "".join(json.dumps(p) + "\n" for p in results["predictions"]))
    write_report([results], out / "report.html")


def load_results(path):
    """A results.json, with the predictions.jsonl beside it when there is one."""
    path = Path(path)
    results, preds = json.loads(path.read_text()), path.with_name("predictions.jsonl")
    if preds.exists():
        results["predictions"] = [json.loads(x) for x in preds.read_text().splitlines() if x]
    return results


def pct(x):
    """A share as a percentage, one decimal; "–" for None."""
    return "–" if x is None else f"{100 * x:.1f}"


def p_value(x):
    """A p-value as every table prints it."""
    return "–" if x is None else f"{x:.3f}" if x >= 0.001 else "<0.001"


def label(r):
    stance = r.get("config", {}).get("stance")
    return f"{r.get('method', '?')} · {r['mode']}" + (f" · {stance}" if stance else "")


COLUMNS = ("method", "task", "mode", "n", "accuracy", "95% CI", "by round", "stance", "kept",
           "fixed", "p vs alone", "alignment", "copy rate", "ROUGE-1", "ROUGE-2", "ROUGE-L")
PAIRED_COLUMNS = ("A", "B", "n", "A − B", "only A right", "only B right", "McNemar p")


def cells(r):
    """One row of the results table, in percent. No ROUGE on arith (see `caveats`)."""
    g = {} if r["task"] == "arith" else r.get("rouge") or {}
    return [r.get("method", "?"), r["task"], r["mode"], str(r["n"]), pct(r["accuracy"]),
            f"{pct(r['ci95'][0])}–{pct(r['ci95'][1])}",
            " → ".join(pct(x["accuracy"]) for x in r["per_round"]),
            r.get("config", {}).get("stance") or "–", *(pct(r.get(k)) for k in ("kept", "fixed")),
            p_value((r.get("after_vs_alone") or {}).get("p")),
            *(pct(r.get(k)) for k in ("alignment", "copy_rate")),
            *(pct(g.get(k)) for k in ("rouge1", "rouge2", "rougeL"))]


def markdown(header, rows):
    """A markdown table (every table this project prints goes through here)."""
    line = lambda cells: "| " + " | ".join(cells) + " |"
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def compare_table(results_list):
    return markdown(COLUMNS, [cells(r) for r in results_list])


def paired(a, b):
    """mcnemar() of two results' final answers, matched by question id (the same questions)."""
    right_b = {p["id"]: p["correct"][-1] for p in b["predictions"]}
    if sorted(right_b) != sorted(p["id"] for p in a["predictions"]):
        raise ValueError(f"{label(a)} and {label(b)} were not evaluated on the same questions")
    return mcnemar([p["correct"][-1] for p in a["predictions"]],
                   [right_b[p["id"]] for p in a["predictions"]])


def paired_rows(pairs):
    """Rows of the paired table: for each (result A, result B), the difference and its p."""
    tested = [(a, b, paired(a, b)) for a, b in pairs]
    return [[label(a), label(b), str(m["n"]), f"{100 * m['diff']:+.1f}", str(m["only_a"]),
             str(m["only_b"]), p_value(m["p"])] for a, b, m in tested]


def same_questions(results_list):
    """Every pair of results in the same mode and stance on the same questions (predictions)."""
    key = lambda r: (r["mode"], r.get("config", {}).get("stance"),
                     sorted(p["id"] for p in r["predictions"]))
    rs = [r for r in results_list if r.get("predictions")]
    return [(a, b) for i, a in enumerate(rs) for b in rs[i + 1:] if key(a) == key(b)]


def caveats(results_list):
    return list(dict.fromkeys(c for r in results_list for c in r.get("caveats", [])))


COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#9c755f", "#edc948")
CSS = """\
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;\
text-align:right}
th{background:#f2f2f2}td:first-child{text-align:left}svg{display:block;margin:1em 0}
details.q{border:1px solid #ddd;border-radius:4px;margin:4px 0;padding:4px 8px}\
summary{cursor:pointer}
.ok{color:#2a7d2a;font-weight:bold}.bad{color:#c0392b;font-weight:bold}.run{margin:6px 0 6px 1em}
.turn{margin:4px 0;padding:4px 8px;border-left:4px solid #4e79a7}.turn.partner{border-color:#f28e2b}
.turn.agents{border-color:#aaa}.who{font-size:12px;color:#555}pre{white-space:pre-wrap;margin:2px 0}
#filters{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ddd}
#f-count{margin-left:1em;color:#555}"""
JS = """\
const $=id=>document.getElementById(id);
function filt(){let n=0;for(const d of document.querySelectorAll('details.q')){
const show=['run','correct','stance'].every(k=>!$('f-'+k).value||d.dataset[k]===$('f-'+k).value)
&&(!$('f-changed').checked||d.dataset.changed==='1');d.hidden=!show;n+=show;}
$('f-count').textContent=n+' shown';}
for(const k of ['run','correct','stance','changed'])$('f-'+k).addEventListener('change',filt);
filt();"""


def _chart(width, height, x0, x1, y, marks):
    """An SVG chart: grid lines from x0 to x1 at y(0%), y(25%), ... y(100%), then the marks."""
    grid = [f'<line x1="{x0}" x2="{x1}" y1="{y(a)}" y2="{y(a)}" stroke="#ddd"></line>'
            f'<text x="{x0 - 6}" y="{y(a) + 4}" text-anchor="end">{a:.0%}</text>'
            for a in (0, .25, .5, .75, 1)]
    head = (f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
            'font-size="11">')
    return "\n".join([head, *grid, *marks, "</svg>"])


def _bars(results_list):
    """One bar per result, coloured by method: accuracy with its 95% interval as a whisker."""
    methods = list(dict.fromkeys(r.get("method", "?") for r in results_list))
    w, y = 80 + 90 * len(results_list), (lambda a: 230 - 200 * a)
    svg = []
    for i, r in enumerate(results_list):
        x, a, (lo, hi), method = 70 + 90 * i, r["accuracy"] or 0, r["ci95"], r.get("method", "?")
        text = lambda ty, t: f'<text x="{x + 25}" y="{ty}" text-anchor="middle">{t}</text>'
        svg.append(f'<rect x="{x}" y="{y(a):.1f}" width="50" height="{200 * a:.1f}" '
                   f'fill="{COLORS[methods.index(method) % len(COLORS)]}"></rect>'
                   f'<line x1="{x + 25}" x2="{x + 25}" y1="{y(lo):.1f}" y2="{y(hi):.1f}" '
                   f'stroke="#222"></line>' + text(f"{y(hi) - 4:.1f}", f"{100 * a:.1f}")
                   + text(248, html.escape(method)) + text(262, html.escape(r["mode"])))
    return _chart(w, 290, 50, w - 10, y, svg)


def _lines(series, top, ticks, size, radius):
    """Accuracy against x in 0..top: a dotted polyline per (name, [(x, accuracy), ...]) with its
    legend, under the x axis the ticks [(x, text y, text)]; size: (width, height)."""
    x, y = (lambda k: 60 + 420 * k / top), (lambda a: 220 - 200 * a)
    svg = [f'<text x="{x(k):.1f}" y="{ty}" text-anchor="middle">{t}</text>' for k, ty, t in ticks]
    for i, (name, points) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        svg += [f'<circle cx="{x(k):.1f}" cy="{y(a):.1f}" r="{radius}" fill="{color}"></circle>'
                for k, a in points]
        line = " ".join(f"{x(k):.1f},{y(a):.1f}" for k, a in points)
        svg.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2">'
                   f'</polyline><text x="500" y="{30 + 16 * i}" fill="{color}">'
                   f'{html.escape(name)}</text>')
    return _chart(*size, 55, 485, y, svg)


def _round_lines(results_list):
    """Accuracy after each round, one polyline per discussing run."""
    lines = [r for r in results_list if len(r["per_round"]) > 1]
    if not lines:
        return "<p>No run with discussion rounds.</p>"
    top = max(len(r["per_round"]) for r in lines) - 1
    series = [(label(r), [(p["round"], p["accuracy"] or 0) for p in r["per_round"]]) for r in lines]
    return _lines(series, top, [(k, 240, f"round {k}") for k in range(top + 1)], (700, 260), 3)


def _curves(curves):
    """Learning curves: {name: [(optimizer step, accuracy), ...]}, one polyline each."""
    top = max(step for points in curves.values() for step, _ in points) or 1
    ticks = [(k, 240, f"{k:.0f}") for k in (0, top / 2, top)] + [(top / 2, 255, "optimizer step")]
    return _lines(curves.items(), top, ticks, (760, 265), 2.5)


def _table(columns, rows):
    e = html.escape
    return ("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows) + "</table>")


def _browser(results_list):
    """Every question of every run as a <details>, filtered by a few lines of vanilla JS."""
    e = html.escape
    runs = "".join(f'<option value="{i}">{e(label(r))}</option>'
                   for i, r in enumerate(results_list))
    out = ['<div id="filters"><select id="f-run"><option value="">all runs</option>' + runs +
           '</select> <select id="f-correct"><option value="">correct and wrong</option>'
           '<option value="1">correct</option><option value="0">wrong</option></select> '
           '<select id="f-stance"><option value="">any stance</option><option value="support">'
           'support</option><option value="oppose">oppose</option></select> <label><input '
           'type="checkbox" id="f-changed"> changed its mind</label> <span id="f-count"></span>'
           '</div>']
    for i, r in enumerate(results_list):
        for p in r.get("predictions", []):
            ok, answers = p["correct"][-1], " → ".join(str(a) for a in p["answers"])
            out.append(f'<details class="q" data-run="{i}" data-correct="{int(ok)}" '
                       f'data-changed="{int(p["changed"])}" data-stance="{e(p["stance"] or "")}">'
                       f'<summary><span class="{"ok" if ok else "bad"}">{"✓" if ok else "✗"}'
                       f'</span> [{e(label(r))}] {e(p["id"])} — {e(p["question"][:120])} — '
                       f'answers {e(answers)}, gold {e(p["gold"])}</summary>'
                       f'<pre>{e(p["question"])}</pre>')
            many, run = len(p["transcripts"]) > 1, "agent" if r["mode"] == "debate" else "sample"
            for j, tr in enumerate(p["transcripts"]):
                html_run = f'<div class="who">{run} {j + 1}</div>' if many else ""
                for t in tr["turns"]:
                    who = ("Learner" if t["speaker"] == "learner" else "Other agents"
                           if t["speaker"] == "agents" else f"Partner ({t.get('stance')})")
                    who += "" if t["speaker"] == "agents" else f" · answer: {t.get('answer')}"
                    html_run += (f'<div class="turn {e(t["speaker"])}"><div class="who">{e(who)}'
                                 f'</div><pre>{e(t["text"])}</pre></div>')
                out.append(f'<div class="run">{html_run}</div>')
            out.append("</details>")
    return "\n".join(out)


def write_report(results_list, path, pairs=None, curves=None):
    """One self-contained HTML page: the results table, paired comparisons (`pairs` of results;
    by default every same_questions pair), a bar chart, accuracy by round, learning curves
    (`curves`: {name: [(step, accuracy)]}) when given, and a transcript browser."""
    pairs = same_questions(results_list) if pairs is None else pairs
    notes = "".join(f"<li>{html.escape(c)}</li>" for c in caveats(results_list))
    page = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            f"<title>saie evaluation</title><style>{CSS}</style></head><body>",
            "<h1>saie evaluation</h1>", "<h2>Accuracy</h2>",
            _table(COLUMNS, [cells(r) for r in results_list]),
            "<p>Accuracy in %, after the last round; kept / fixed: share of initially right "
            "answers still right / initially wrong answers fixed; p vs alone: McNemar's exact p "
            "of the answers after discussion against those alone. Stance honest: the partner "
            "answered on its own and agreed or not; both / support / oppose: the partner was told "
            "its stance (a stress test). ROUGE: F1 of the rationale against the gold one.</p>",
            f"<ul>{notes}</ul>" if notes else ""]
    if pairs:
        page += ["<h2>Paired comparisons</h2>", _table(PAIRED_COLUMNS, paired_rows(pairs)),
                 "<p>The same questions, answer by answer: A − B in points, the questions only "
                 "one of the two got right, McNemar's exact two-sided p.</p>"]
    page += [_bars(results_list), "<h2>Accuracy by round</h2>", _round_lines(results_list)]
    if curves:
        page += ["<h2>Learning curves</h2>", _curves(curves)]
    page += ["<h2>Transcripts</h2>", _browser(results_list), f"<script>{JS}</script></body></html>"]
    data.write_atomic(path, "\n".join(page) + "\n")

# -----------------------------------------------------------------------------
# Command line


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Evaluate a model alone, in discussion, or in debate.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--ckpt", help="our checkpoint file (.pt)")
    which.add_argument("--model", help="a hub name or HF/Meta directory")
    which.add_argument("--compare", nargs="+", metavar="RESULTS_JSON",
                       help="a markdown table of several results.json (with --out, a report)")
    one, nonnegative = data.at_least(1), data.at_least(0, float)
    p.add_argument("--task", choices=data.TASKS, default="gsm8k")
    p.add_argument("--mode", choices=MODES, default="single")
    p.add_argument("--partner", help="multi: the partner model (hub name, directory or .pt)")
    p.add_argument("--rounds", type=one, help="discussion or debate rounds (default 1)")
    p.add_argument("--stance", choices=STANCE_RULES, help="honest (the partner answers alone, "
                   "then agrees or not) or told: both (50/50, the default), support, oppose")
    p.add_argument("--partner-temperature", type=nonnegative,
                   help=f"default {HONEST_TEMPERATURE} when honest, else --temperature")
    p.add_argument("--agents", type=data.at_least(2), help="debate: number of agents (default 3)")
    p.add_argument("--temperature", type=nonnegative,
                   help="0 = greedy (default; debate: 0.7)")
    p.add_argument("--samples", type=one, default=1,
                   help="single: majority vote over k samples")
    p.add_argument("--limit", type=one, help="first N questions")
    p.add_argument("--split", help="default: the task's last split (test, or validation)")
    p.add_argument("--data-dir")
    p.add_argument("--max-new-tokens", type=one,
                   help="longest turn (default: the task's turn_tokens, 24 on arith, else 256)")
    p.add_argument("--batch-size", type=one, default=32,
                   help="sequences per generate call")
    p.add_argument("--out", help="output folder (default out/eval/<method>-<task>-<mode>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="default: cuda when available, else cpu")
    args = p.parse_args(argv)
    if args.compare:
        for path in args.compare:
            if not Path(path).is_file():
                p.error(f"--compare: no file {path}")
        return args
    # flag: (its default, the modes it has a meaning in)
    mode_flags = {"partner": (None, ("multi",)), "stance": ("both", ("self", "multi")),
                  "partner_temperature": (None, ("self", "multi")), "agents": (3, ("debate",)),
                  "rounds": (1, ("self", "multi", "debate"))}
    for flag, (default, modes) in mode_flags.items():
        if getattr(args, flag) is None:
            setattr(args, flag, default)
        elif args.mode not in modes:
            p.error(f"--{flag.replace('_', '-')} has no meaning with --mode {args.mode} "
                    f"(only {', '.join(modes)})")
    if args.mode == "multi" and not args.partner:
        p.error("--mode multi needs --partner")
    if args.temperature is None:
        args.temperature = 0.7 if args.mode == "debate" else 0.0
    if args.partner_temperature is None:
        args.partner_temperature = partner_temperature(args.stance, args.temperature)
    if args.samples > 1 and (args.mode != "single" or args.temperature == 0):
        p.error("--samples k > 1 needs --mode single and --temperature > 0")
    args.max_new_tokens = args.max_new_tokens or data.get_task(args.task).turn_tokens
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.compare:
        results = [load_results(path) for path in args.compare]
        print(compare_table(results))
        pairs = same_questions(results)
        if pairs:
            print("\npaired, on the same questions:\n"
                  + markdown(PAIRED_COLUMNS, paired_rows(pairs)))
        for note in caveats(results):
            print(f"note: {note}")
        if args.out:
            write_report(results, Path(args.out) / "report.html")
        return results
    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    task, name = data.get_task(args.task), args.ckpt or args.model
    split = args.split or task.splits[-1]
    try:
        examples = task.load(split, args.data_dir)[:args.limit]
        model, tok, remarks = load_model(name, device)
        # mode self: the partner is the learner's own model
        p_model, p_tok, p_remarks = (load_model(args.partner, device) if args.mode == "multi"
                                     else (model, tok, remarks))
    except data.DataError as e:  # WeightsError is one
        raise SystemExit(f"eval.py: error: {e}") from None
    if args.mode == "multi" and partner_mode(p_tok, p_remarks, args.stance) == "reflect":
        raise SystemExit(f"eval.py: error: partner {args.partner} can neither follow instructions "
                         "nor was trained to remark (no 'remarks' in its checkpoint); --stance "
                         "honest needs neither")
    learner = Speaker(model, tok, args.max_new_tokens, args.temperature)
    partner = (Speaker(p_model, p_tok, args.max_new_tokens, args.partner_temperature,
                       remarks=p_remarks) if args.mode in ("self", "multi") else None)
    results = evaluate(learner, task, examples, partner, args.stance, args.rounds, args.samples,
                       args.agents if args.mode == "debate" else 0, args.batch_size, args.seed,
                       log=print)
    results["method"] = method_name(name)
    results["config"].update(model=name, partner=args.partner, split=split, limit=args.limit)
    run = re.sub(r"[^\w.-]", "_", f"{results['method']}-{args.task}-{args.mode}")
    out = Path(args.out or Path("out/eval") / run)
    save(results, out)
    print(compare_table([results]))
    for note in results["caveats"]:
        print(f"note: {note}")
    print(f"wrote {out / 'results.json'}, {out / 'predictions.jsonl'}, {out / 'report.html'}")
    return results


if __name__ == "__main__":
    main()
