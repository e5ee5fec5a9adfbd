"""
A pretrained instruct model on a laptop: SmolLM2-135M-Instruct, CPU, float32, greedy.

    python experiments/smollm2.py --model DIR_OR_HUB_NAME     # every stage not yet on file
    python experiments/smollm2.py --tables                    # the tables from the records

Stages (declared before any test run; records in experiments/results/smollm2/, one JSON each):
  prompt  the prompted partner's system prompt, chosen on validation (64 arith questions, the
          model as it ships, forced stance 50/50): the candidate whose remarks carry their stance
          most often (support and oppose averaged). The winner becomes discuss.PARTNER_SYSTEM.
  heat    the training partner's sampling temperature, chosen on the same 64 validation
          questions: greedy (the prompt stage's figures) or 1.0 (the temperature chosen for
          arith's tiny partner), whichever carries its stance more often, averaged as above.
  zero    the model as it ships, on test: alone on arith and on GSM8K (200 questions each, turns
          of 64 and 256 tokens); on arith as the paper's prompted partner (its own learner, forced
          stance 50/50): the share of remarks that carry their stance and that carry the gold
          answer; honest self-discussion.
  cost    seconds per optimizer step at the pretrained-arith preset (batch 16): SFT, and SAIE
          (the discussion generated, then the update); the mean of 2 steps after an untimed one.
  preset  (--train) the pretrained-arith preset's learning rate, chosen on validation: the
          warm-up alone (20 steps of 16 on the warm-up split, seed 1337) at each of LRS, accuracy
          alone on 100 validation questions; the best (ties: the lower rate) is the warm-up's and
          both methods' rate in the train stage and in saie.py's preset. Batch 16 is what 2 cores
          train in seconds (the cost stage); turns of 64 tokens hold every gold turn of arith's
          training split in this tokenizer (the longest is 42: digits are single tokens).
  train   (--train) SAIE against SFT from the model (saie.py --method compare, the
          pretrained-arith preset at the chosen rate: 20 warm-up steps on the warm-up split, then
          40 steps of 16): N = 2,000 training questions (the regime study's), the prompted partner
          the shipped model (frozen, greedy or not as the heat stage chose), the best checkpoint on
          100 validation questions every 20 steps (a point: three turns on 100 validation questions
          and one on 100 training questions), test (200 questions) once, alone, honest and with the
          fixed partner; seeds 1337 and 1. At 40 steps of 16 a run sees 640 of the 2,000 questions, a
          third of an epoch: what 2 cores give in under an hour (the cost stage); the GPU script
          runs epochs. Its record lands in experiments/results/runs/ like the arith studies'. Both
          stages run on 2 threads, one run at a time.
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import data  # noqa: E402
import discuss  # noqa: E402
import eval as evaluation  # noqa: E402
from model import load_model  # noqa: E402

sys.path.insert(0, str(ROOT / "experiments"))
import saie  # noqa: E402
import torch  # noqa: E402
from arith import alone, answers, fill, pooled, record as run_record, run  # noqa: E402

OUT = ROOT / "experiments" / "results" / "smollm2"
HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"
DISCUSSED = ("alone", "honest", "fixed")
SEEDS = (1337, 1)  # the train stage's: the second added when the first's cost was known
LRS = ("2e-5", "1e-4", "5e-4")  # the preset stage's candidate learning rates, lowest first
PROMPTS = {  # candidates for discuss.PARTNER_SYSTEM; "paper" is the one the code had before
    "paper": {
        "support": "You are discussing a problem with a student. Agree with the student's latest "
                   "answer and justify it step by step. Begin with 'I agree.' and end with a final "
                   "line '#### <answer>'.",
        "oppose": "You are discussing a problem with a student. Argue against the student's latest "
                  "answer: show step by step why a different answer is right. Begin with 'I "
                  "disagree.' and end with a final line '#### <answer>'."},
    "steps": {
        "support": "You check a student's answer to a math problem. The student is right. Say "
                   "'I agree.', then redo the calculation step by step, one line per step, and "
                   "end with a final line '#### <answer>'.",
        "oppose": "You check a student's answer to a math problem. The student is wrong. Say "
                  "'I disagree.', then solve the problem yourself step by step, one line per "
                  "step, and end with a final line '#### <answer>' giving a different answer."},
    "example": {
        "support": "Reply to the student's answer in this form:\nI agree. 7 + 5 = 12\n12 * 2 = "
                   "24\n#### 24\nRedo the student's steps for this problem and keep the "
                   "student's final answer.",
        "oppose": "Reply to the student's answer in this form:\nI disagree. 7 + 5 = 12\n12 * 2 "
                  "= 24\n#### 24\nSolve this problem yourself, step by step, and reach a final "
                  "answer different from the student's."},
}


def mean(score):
    """A prompt's or temperature's score: the share of remarks carrying their stance, the two
    stances averaged."""
    return sum(score["alignment_by_stance"].values()) / 2


def record(name):
    path = OUT / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def write(name, obj):
    OUT.mkdir(parents=True, exist_ok=True)
    data.write_atomic(OUT / f"{name}.json", json.dumps(obj, indent=1) + "\n")
    print(f"wrote {OUT / f'{name}.json'}", flush=True)


def remark_figures(task, examples, r):
    """Stance carried (by stance) and the gold answer carried, over the partner's remarks."""
    gold = [task.is_correct(t["text"], ex) for p, ex in zip(r["predictions"], examples)
            for t in p["transcripts"][0]["turns"] if t["speaker"] == "partner"]
    return {"alignment_by_stance": r.get("alignment_by_stance"), "remarks": len(gold),
            "carry_gold": sum(gold) / max(len(gold), 1)}


def figures(r):
    keep = ("n", "accuracy", "ci95", "kept", "fixed", "alignment", "copy_rate", "unparsed")
    return {k: r.get(k) for k in keep} | {"first": r["per_round"][0]["accuracy"],
                                           "right": [p["correct"][-1] for p in r["predictions"]]}


def discussion(model, tok, task, examples, turn, stance, seconds, told=0.0):
    """Alone, then the model as its own partner: honest, or told its stance (prompted; sampling at
    `told`, greedy unless given)."""
    learner = discuss.Speaker(model, tok, turn)
    heat = evaluation.partner_temperature(stance, told)
    t0 = time.time()
    r = evaluation.evaluate(learner, task, examples, discuss.Speaker(model, tok, turn, heat),
                            stance, seed=0, batch_size=16)
    seconds.append(time.time() - t0)
    return r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=HUB, help="a directory laid out like the hub's, or the name")
    p.add_argument("--data-dir", help="a local copy of GSM8K (else downloaded)")
    p.add_argument("--tables", action="store_true")
    p.add_argument("--train", action="store_true", help="also the train stage (hours on 2 cores)")
    args = p.parse_args(argv)
    if args.tables:
        text = tables()
        fill(ROOT / "docs" / "results.md", "smollm2", text + "\n")
        return print(text)
    model, tok, _ = load_model(args.model, "cpu")
    arith, gsm8k = data.get_task("arith"), data.get_task("gsm8k")

    if not record("prompt"):
        val = arith.load("validation")[:64]
        scores = {}
        for name, prompt in PROMPTS.items():
            discuss.PARTNER_SYSTEM.update(prompt)
            r = discussion(model, tok, arith, val, 64, "both", [])
            scores[name] = remark_figures(arith, val, r)
            print(name, scores[name], flush=True)
        discuss.PARTNER_SYSTEM.update(PROMPTS["paper"])
        write("prompt", {"scores": scores, "chosen": max(scores, key=lambda k: mean(scores[k]))})
    discuss.PARTNER_SYSTEM.update(PROMPTS[record("prompt")["chosen"]])

    if not record("heat"):  # the training partner's temperature: greedy (measured above) or 1.0
        val = arith.load("validation")[:64]
        scores = {"0": record("prompt")["scores"][record("prompt")["chosen"]],
                  "1.0": remark_figures(arith, val, discussion(model, tok, arith, val, 64, "both",
                                                               [], told=1.0))}
        write("heat", {"scores": scores, "chosen": max(scores, key=lambda k: mean(scores[k]))})

    if not record("zero"):
        test, seconds, out = arith.load("test")[:200], [], {}
        for stance in ("both", "honest"):
            r = discussion(model, tok, arith, test, 64, stance, seconds)
            out[f"arith-{stance}"] = figures(r) | remark_figures(arith, test, r)
        t0 = time.time()
        g = gsm8k.load("test", args.data_dir)[:200]
        r = evaluation.evaluate(discuss.Speaker(model, tok, 256), gsm8k, g, batch_size=16)
        out["gsm8k-alone"] = figures(r)
        write("zero", {"model": str(args.model), "seconds": seconds + [time.time() - t0], **out})

    if not record("cost"):
        write("cost", {"threads": torch.get_num_threads(), **step_costs(args.model)})

    if args.train:  # the longest stages: only when asked
        say = lambda msg: print(msg, flush=True)
        lr = preset(args.model, say)
        for seed in SEEDS:
            run(f"smollm2/{seed}/compare", [
                "--init", str(args.model), "--partner", str(args.model), "--method", "compare",
                "--train-limit", "2000", "--steps", "40", "--batch-size", "16",
                "--warmup-steps", "20", "--lr", lr, "--warmup-lr", lr, "--max-turn-tokens", "64",
                "--eval-every", "20", "--partner-temperature", record("heat")["chosen"],
                "--select-best", "--curve-limit", "100", "--eval-limit", "200",
                "--seed", str(seed)], say, threads=2)


def preset_name(lr):
    return f"smollm2/preset_lr{lr}"


def preset(model, log):
    """The learning rate with the best validation accuracy alone after the warm-up (ties: the
    lower); each candidate's warm-up is one saie.py run with its record in experiments/results/runs/."""
    for lr in LRS:
        run(preset_name(lr), ["--init", str(model), "--method", "warmup", "--warmup-steps", "20",
                              "--warmup-lr", lr, "--batch-size", "16", "--max-turn-tokens", "64",
                              "--eval-split", "validation", "--eval-limit", "100", "--discussions",
                              "--seed", "1337"], log, threads=2)
    return max(LRS, key=lambda lr: (alone(preset_name(lr), "warmup"), -LRS.index(lr)))


def step_costs(init):
    """Seconds per optimizer step at the pretrained-arith preset: SFT, and SAIE (the discussion,
    then the update), the mean of 2 steps after an untimed one."""
    args = saie.parse_args(["--init", str(init), "--partner", str(init)])
    model, tok, _ = load_model(init, "cpu")
    model.train()
    task = data.get_task("arith")
    examples = task.load("train")[:64]
    opt = saie.make_optimizer(model, args, 2e-5, "cpu")
    learner = discuss.Speaker(model, tok, args.max_turn_tokens, args.temperature)
    partner = discuss.Speaker(load_model(init, "cpu")[0], tok, args.max_turn_tokens,
                              args.partner_temperature)
    costs = {}
    for name, batches in (("sft", saie.sft_batches(tok, task, examples, args, 0, 1, 0, False)),
                          ("saie", saie.saie_batches(learner, partner, tok, task, examples, args,
                                                     0, 1, 0, None))):
        times = []
        for _ in range(3):
            t0 = time.time()
            seqs, weights, _ = next(batches)
            idx, targets = data.make_batch(tok, seqs, model.config.block_size)
            saie.micro_step(model, idx, targets, torch.tensor(weights), "cpu")
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.time() - t0)
        costs[name] = sum(times[1:]) / 2
        print(name, f"{costs[name]:.1f} s per step", flush=True)
    return {"batch_size": args.batch_size, "max_turn_tokens": args.max_turn_tokens,
            "seconds_per_step": costs}


def tables():
    pct = evaluation.pct
    lines = []
    if pr := record("prompt"):
        lines += ["Partner prompts on 64 validation questions (the model as it ships, forced "
                  "stance): remarks that carry their stance (support / oppose) and the gold "
                  "answer.", "", evaluation.markdown(
                      ["prompt", "support", "oppose", "carry gold", "chosen"],
                      [[k, pct(s["alignment_by_stance"].get("support")),
                        pct(s["alignment_by_stance"].get("oppose")), pct(s["carry_gold"]),
                        "yes" if k == pr["chosen"] else ""] for k, s in pr["scores"].items()])]
    if h := record("heat"):
        name = lambda k: "greedy" if k == "0" else f"temperature {k}"
        lines += ["", "The training partner's sampling, on the same questions (remarks carrying "
                  "their stance, the two stances averaged): " + ", ".join(
                      f"{name(k)} {pct(mean(v))}%" for k, v in h["scores"].items())
                  + f"; chosen: {name(h['chosen'])}."]
    if z := record("zero"):
        a, h, g = z["arith-both"], z["arith-honest"], z["gsm8k-alone"]
        s = a["alignment_by_stance"]
        lines += ["", evaluation.markdown(["measure (200 test questions, greedy)", "figure"], [
            ["arith alone", f"{pct(a['first'])}%"],
            ["GSM8K alone", f"{pct(g['accuracy'])}%"],
            ["prompted partner: remarks carrying their stance, support / oppose",
             f"{pct(s.get('support'))}% / {pct(s.get('oppose'))}%"],
            ["prompted partner: remarks carrying the gold answer", f"{pct(a['carry_gold'])}%"],
            ["forced-stance discussion: alone → after (kept, fixed)",
             f"{pct(a['first'])} → {pct(a['accuracy'])} ({pct(a['kept'])}, {pct(a['fixed'])})"],
            ["honest self-discussion: alone → after (kept, fixed)",
             f"{pct(h['first'])} → {pct(h['accuracy'])} ({pct(h['kept'])}, {pct(h['fixed'])})"],
        ])]
    if c := record("cost"):
        sec = c["seconds_per_step"]
        lines += ["", f"One optimizer step at the pretrained-arith preset ({c['batch_size']} questions, "
                  f"turns of up to {c['max_turn_tokens']} tokens, {c['threads']} threads): SFT "
                  f"{sec['sft']:.1f} s, SAIE {sec['saie']:.1f} s (its two turns generated, then "
                  f"the update on twice the rows)."]
    if all(run_record(preset_name(lr)) for lr in LRS):
        lines += ["", "The preset's learning rate (the warm-up alone, 20 steps of 16; 100 validation "
                  "questions): " + ", ".join(
                      f"{lr} {pct(alone(preset_name(lr), 'warmup'))}%" for lr in LRS) + "."]
    rows, pairs = [], []
    for seed in SEEDS:
        if not (r := run_record(f"smollm2/{seed}/compare")):
            continue
        e, sel = r["evals"], r["selected"]
        cell = lambda m, d: pct(e[f"{m}-{d}"]["accuracy"])
        rows += [["warm-up", str(seed), "", *(cell("warmup", d) for d in DISCUSSED)]]
        rows += [[m.upper(), str(seed), str(sel[m]["step"]), *(cell(m, d) for d in DISCUSSED)]
                 for m in ("sft", "saie")]
        pairs.append([evaluation.mcnemar(answers(e[f"saie-{d}"]), answers(e[f"sft-{d}"]))
                      for d in DISCUSSED])
        rows.append(["SAIE − SFT, points (McNemar p)", str(seed), "", *(
            f"{100 * c['diff']:+.1f} ({evaluation.p_value(c['p'])})" for c in pairs[-1])])
    if len(pairs) > 1:  # pooled: the seeds' discordant questions added up, one exact test
        rows.append(["SAIE − SFT, pooled", "all", "", *(
            f"{x:+.1f} ({evaluation.p_value(p)})" for x, p in (
                pooled([seed_pairs[i] for seed_pairs in pairs]) for i in range(len(DISCUSSED))))])
    if rows:
        lines += ["", f"SAIE against SFT from the model, test accuracy in % ({len(pairs)} of "
                  f"{len(SEEDS)} seeds; 200 questions, greedy; each method's kept step of 40 by 100 "
                  "validation questions; the warm-up is where both started):", "",
                  evaluation.markdown(["learner", "seed", "kept step", *DISCUSSED], rows)]
    return "\n".join(lines)


if __name__ == "__main__":
    data.cli(main, "experiments/smollm2.py")
