"""
The paper's regime on arith: few training questions, many epochs, the best checkpoint on validation.

    python experiments/regime.py             # every run not yet on file, resumable
    python experiments/regime.py --tables    # the tables and the verdict from the records on file

Everything below was declared before any test run (runs, records and threads as in arith.py: one
saie.py command on one thread per run, its folder under experiments/runs/regime/, a small record
with per-question answers in experiments/results/runs/).

  pilot    SFT, N = 2,000 training questions, seed 1337, 600 steps of 64, validation only. N stays
           2,000 if validation accuracy alone peaks before the last step and training accuracy
           (alone, on 500 of the N) is at least 15 points above validation at the last step;
           else N = 1,000.
  arms     sft; saie (both stances); saie-support; saie-oppose; scripted (gold-scripted
           discussions: an oracle wrote the learner's turn and the remark); oracle (the learner's
           own sampled turn, as in SAIE, and a remark written from gold with the question's
           stance: on-policy learner, oracle partner).
  seeds    1337, 1, 2. A seed draws the N training questions, the batch order and the sampling of
           the discussions. Every seed starts from the shipped warm-up: a warm-up from scratch is
           reproducible only on the same kind of host (see arith.py), and the question here is what
           happens after it.
  settings the learning rates and SAIE's plain-pair weight the earlier study chose on validation
           (SFT 5e-4; every discussion arm 1e-3, weight 3); the step by validation: every 25 steps,
           accuracy alone on 500 validation questions, the best kept (ties: the earlier step).
           Test (2,000 questions) once, on the kept checkpoint.
  reading  RULE below, applied by verdict() to accuracy alone on test.
"""

import argparse
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arith import ROOT, RESULTS, RUNS, answers, evaluation, fill, pooled, record, run  # noqa: E402

N_PILOT, N_FALLBACK, STEPS, EVERY = 2000, 1000, 600, 25
SEEDS = (1337, 1, 2)
ARMS = {"sft": ["--method", "sft", "--lr", "5e-4"],
        "saie": ["--method", "saie", "--lr", "1e-3", "--plain-weight", "3"],
        "oracle": ["--method", "oracle", "--lr", "1e-3", "--plain-weight", "3"],
        "scripted": ["--method", "scripted", "--lr", "1e-3", "--plain-weight", "3"],
        "saie-support": ["--method", "saie", "--stance", "support", "--lr", "1e-3",
                         "--plain-weight", "3"],
        "saie-oppose": ["--method", "saie", "--stance", "oppose", "--lr", "1e-3",
                        "--plain-weight", "3"]}
METHOD = {arm: arm.split("-")[0] for arm in ARMS}
NAMES = {"sft": "SFT", "saie": "SAIE", "oracle": "own turn + gold remark",
         "scripted": "gold-scripted discussions", "saie-support": "SAIE, support only",
         "saie-oppose": "SAIE, oppose only"}
COMMON = ["--steps", str(STEPS), "--batch-size", "64", "--max-turn-tokens", "24",
          "--eval-every", str(EVERY), "--ckpt-every", str(EVERY), "--curve-limit", "500",
          "--select-best", "--discussions", "honest", "fixed"]
TEST = ["--eval-split", "test", "--eval-limit", "2000"]
RULE = """\
supports the paper: SAIE - SFT >= +2 points on every seed, the seed-level 95% t interval above 0,
  and SAIE >= both controls (scripted, oracle) in the mean;
augmentation, not discussion: SAIE within 2 points of the better control in the mean, and
  SAIE and that control both above SFT (seed-level interval above 0);
refuted in this regime: SAIE <= SFT on at least 2 seeds, SFT having peaked before the last step
  on every seed;
else: not decided by these runs."""
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # Student's t, two-sided 95%
SHOWN = ("alone", "honest", "fixed")


def pilot_name():
    return "regime/pilot"


def chosen_n():
    """N from the pilot's record, by the declared rule."""
    r = record(pilot_name())
    last = r["points"][-1]
    peaked = r["selected"]["sft"]["step"] < STEPS
    gap = last["train_alone"] - last["val_alone"]
    return (N_PILOT if peaked and gap >= 0.15 else N_FALLBACK), peaked, gap


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="runs side by side (each on one thread)")
    p.add_argument("--tables", action="store_true", help="only the tables of finished runs")
    args = p.parse_args(argv)
    (RUNS / "regime").mkdir(parents=True, exist_ok=True)
    logf = open(RUNS / "regime" / "study.log", "a")

    def log(msg):
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    if not args.tables:
        run(pilot_name(), [*ARMS["sft"], *COMMON, "--train-limit", str(N_PILOT), "--seed", "1337",
                           "--eval-split", "validation", "--eval-limit", "1000"], log)
        n, peaked, gap = chosen_n()
        log(f"pilot: peaked before step {STEPS}: {peaked}; train - validation {gap:+.3f}: N = {n}")
        # The main comparison on every seed first, then the controls, then the stance ablations.
        order = [(a, s) for group in (("sft", "saie"), ("oracle", "scripted"),
                                      ("saie-support", "saie-oppose"))
                 for s in SEEDS for a in group]
        with ThreadPoolExecutor(args.workers) as pool:
            jobs = [pool.submit(run, f"regime/{s}/{a}",
                                [*ARMS[a], *COMMON, *TEST, "--train-limit", str(n), "--seed",
                                 str(s), *([] if a == "sft" else ["--no-eval-warmup"])], log)
                    for a, s in order]
            [j.result() for j in jobs]
    tables()


# -----------------------------------------------------------------------------
# Tables and the verdict, from the records alone.

def t_interval(diffs):
    """Mean of per-seed differences and its 95% t interval (None with one seed)."""
    n, mean = len(diffs), sum(diffs) / len(diffs)
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = T975[n - 1] * sd / math.sqrt(n)
    return mean, (mean - half, mean + half)


def paired_seeds(a, b, d="alone"):
    """Per seed, McNemar's figures of arm a against arm b on the same test questions."""
    out = {}
    for s in SEEDS:
        ra, rb = record(f"regime/{s}/{a}"), record(f"regime/{s}/{b}")
        if ra and rb:
            ea, eb = ra["evals"][f"{METHOD[a]}-{d}"], rb["evals"][f"{METHOD[b]}-{d}"]
            if ea["questions"] != eb["questions"]:
                raise SystemExit(f"regime.py: error: {a} and {b} (seed {s}) on different questions")
            out[s] = evaluation.mcnemar(answers(ea), answers(eb))
    return out


def verdict(acc, sft_peaked):
    """RULE, applied to acc[arm][seed] (accuracy alone, points); None until every run is in."""
    need = ("sft", "saie", "scripted", "oracle")
    if any(len(acc.get(a, {})) < len(SEEDS) for a in need):
        return None
    mean = {a: sum(acc[a].values()) / len(SEEDS) for a in need}
    d = [acc["saie"][s] - acc["sft"][s] for s in SEEDS]
    _, ci = t_interval(d)
    better = max(("scripted", "oracle"), key=mean.get)
    controls = mean[better]
    above = lambda a: t_interval([acc[a][s] - acc["sft"][s] for s in SEEDS])[1][0] > 0
    if all(x >= 2 for x in d) and ci[0] > 0 and mean["saie"] >= controls:
        return "supports the paper"
    if abs(mean["saie"] - controls) < 2 and above("saie") and above(better):
        return "augmentation, not discussion"
    if sum(x <= 0 for x in d) >= 2 and all(sft_peaked):
        return "refuted in this regime"
    return "not decided by these runs"


def tables():
    out = RESULTS / "regime"
    out.mkdir(parents=True, exist_ok=True)
    pct = lambda x: f"{100 * x:.1f}"
    lines, acc, peaked, missing = [], {}, [], []
    if pilot := record(pilot_name()):
        n, ok, gap = chosen_n()
        best = pilot["selected"]["sft"]
        lines += [f"Pilot (SFT, N = {N_PILOT}, seed 1337, validation): best validation accuracy "
                  f"alone {pct(best['val_alone'])}% at step {best['step']} of {STEPS}; at step "
                  f"{STEPS} training {pct(pilot['points'][-1]['train_alone'])}% against "
                  f"validation {pct(pilot['points'][-1]['val_alone'])}% ({100 * gap:+.1f} points)."
                  f" N = {n}.", ""]
    lines += ["| arm | seed | kept step | alone (95% CI) | honest self-discussion | "
              "fixed partner (the warm-up) |", "|---|---|---|---|---|---|"]
    rows = []
    def line(arm, seed, step, e):
        return (f"| {arm} | {seed} | {step} | {pct(e['alone']['accuracy'])} "
                f"({pct(e['alone']['ci_low'])}–{pct(e['alone']['ci_high'])}) | "
                f"{pct(e['honest']['first'])} → {pct(e['honest']['accuracy'])} | "
                f"{pct(e['fixed']['first'])} → {pct(e['fixed']['accuracy'])} |")
    for s in SEEDS:  # where every arm started: the shipped warm-up, scored in each seed's SFT run
        if r := record(f"regime/{s}/sft"):
            lines.append(line("warm-up", s, "–", {d: r["evals"][f"warmup-{d}"] for d in SHOWN}))
            break  # the same model and questions on every seed: one row
    for arm in ARMS:
        for s in SEEDS:
            r = record(f"regime/{s}/{arm}")
            if not r:
                missing.append(f"{s}/{arm}")
                continue
            e = {d: r["evals"][f"{METHOD[arm]}-{d}"] for d in SHOWN}
            step = r["selected"][METHOD[arm]]["step"]
            acc.setdefault(arm, {})[s] = 100 * e["alone"]["accuracy"]
            if arm == "sft":
                peaked.append(step < STEPS)
            rows.append({"arm": arm, "seed": s, "step": step, "cpu_s": r["cpu_s"],
                         **{f"{d}_{k}": v for d in SHOWN for k, v in e[d].items()
                            if k not in ("n", "right", "questions")}})
            lines.append(line(arm, s, step, e))
    lines += ["", "A − B, accuracy in points on the same test questions: per seed (McNemar's exact "
              "p), the seed-level mean with its 95% t interval, and pooled (discordant questions "
              "of all seeds, one exact test).", "", "| A − B | discussion | per seed | "
              "seed mean [95% t interval] | pooled (p) |", "|---|---|---|---|---|"]
    pairs = [(a, "sft") for a in ARMS if a != "sft"] + [
        ("saie", b) for b in ("oracle", "scripted", "saie-support", "saie-oppose")]
    for a, b in pairs:
        for d in SHOWN:
            ps = paired_seeds(a, b, d)
            if not ps:
                continue
            diffs = [100 * p["diff"] for p in ps.values()]
            mean, ci = t_interval(diffs)
            x, p = pooled(list(ps.values()))
            lines.append(f"| {a} − {b} | {d} | " + ", ".join(
                f"{s}: {100 * q['diff']:+.1f} ({evaluation.p_value(q['p'])})" for s, q in ps.items())
                + f" | {mean:+.1f} " + (f"[{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "(one seed)")
                + f" | {x:+.1f} ({evaluation.p_value(p)}) |")
    v = verdict(acc, peaked)
    lines += ["", "Reading rule, declared before the test runs:", "", "```", RULE, "```", "",
              f"Verdict: **{v}**." if v else "Verdict: not yet (runs missing)."]
    cpu = [r for r in (record(f"regime/{s}/{a}") for a in ARMS for s in SEEDS) if r]
    if pilot:
        cpu.append(pilot)
    lines.append(f"\nCPU: {sum(r['cpu_s'] or 0 for r in cpu) / 3600:.1f} hours over "
                 f"{len(cpu)} runs (one thread each).")
    if missing:
        lines.append("Not finished yet: " + ", ".join(missing) + ".")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    (out / "headline.json").write_text(json.dumps({"rows": rows, "verdict": v}, indent=1) + "\n")
    if pilot:
        (out / "pilot_curve.svg").write_text(evaluation._curves({
            f"{k.split('_')[0]} alone": [(q["step"], q[k]) for q in pilot["points"]]
            for k in ("train_alone", "val_alone")}) + "\n")
    fill(ROOT / "docs" / "results.md", "regime", text)
    fill(ROOT / "README.md", "regime", front_table())
    print(text)


def front_table():
    """The README's table: each arm's test accuracy, the mean of its seeds, alone and after the two
    discussions; its difference from SFT alone and from SAIE, seed-level (mean, 95% t interval)."""
    def diff(a, b):
        ps = {} if a == b else paired_seeds(a, b)
        if len(ps) < 2:
            return "–"
        mean, (lo, hi) = t_interval([100 * p["diff"] for p in ps.values()])
        return f"{mean:+.1f} [{lo:+.1f}, {hi:+.1f}]"
    rows = []
    if warm := record("regime/1337/sft"):  # the shipped warm-up, the same on every seed
        rows.append(["warm-up", *(f"{100 * warm['evals'][f'warmup-{d}']['accuracy']:.1f}"
                                  for d in SHOWN), "–", "–"])
    for arm in ARMS:
        rs = [r for r in (record(f"regime/{s}/{arm}") for s in SEEDS) if r]
        if rs:
            acc = lambda d: sum(r["evals"][f"{METHOD[arm]}-{d}"]["accuracy"] for r in rs) / len(rs)
            rows.append([NAMES[arm] + ("" if len(rs) == len(SEEDS) else f" ({len(rs)} seeds)"),
                         *(f"{100 * acc(d):.1f}" for d in SHOWN), diff(arm, "sft"),
                         diff(arm, "saie")])
    return evaluation.markdown(["model", "alone", "after honest self-discussion",
                                "after the fixed partner", "alone − SFT [95%]",
                                "alone − SAIE [95%]"], rows) + "\n"


if __name__ == "__main__":
    main()
