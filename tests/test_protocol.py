"""The experiment protocol: splits disjoint by chain, the honest partner, McNemar's test by hand,
learning curves on validation, and figures that measure nothing marked as such."""
import json
from collections import Counter
from types import SimpleNamespace

import pytest

import data
import eval as ev
import saie
from tests.test_data import n_ops
from tests.test_eval import EXAMPLES, S, Scripted, ToyTask, last_answer


def steps(ex):
    return [(int(a), op, int(b), int(r)) for a, op, b, r in data.STEP.findall(ex.rationale)]


def test_arith_splits_are_disjoint_by_chain_and_evaluation_splits_hold_each_chain_once():
    splits = data.load_splits("arith")
    assert {k: len(v) for k, v in splits.items()} == data.ARITH_SIZES
    by_split = {k: [data.arith_chain(steps(ex)) for ex in v] for k, v in splits.items()}
    for name, examples in splits.items():   # the same hash that carves test carves validation
        assert {data.arith_split(steps(ex)) for ex in examples} == {name}
    train, val, test = (set(by_split[k]) for k in ("train", "validation", "test"))
    assert not train & val and not train & test and not val & test
    # Validation and test: each chain once, so n counts independent problems; all difficulties present.
    for name in ("validation", "test"):
        assert len(set(by_split[name])) == len(by_split[name])
        assert {n_ops(ex) for ex in splits[name]} == {1, 2, 3}
    # Shuffled: a prefix (--eval-limit) has the whole set's mix, not the early-drawn one-step chains.
    head, whole = (Counter(n_ops(ex) for ex in exs) for exs in (splits["test"][:500], splits["test"]))
    assert abs(head[1] / 500 - whole[1] / len(splits["test"])) < 0.03


def test_other_tasks_hold_out_a_stable_validation_slice_of_train(tmp_path):
    rows = [{"question": f"q{i} ?", "answer": f"{i} + 0 = {i}\n#### {i}"} for i in range(400)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))
    splits = data.load_splits("gsm8k", tmp_path)
    train, val = ({ex.question for ex in splits[k]} for k in ("train", "validation"))
    assert not train & val and len(train) + len(val) == 400 and 5 <= len(val) <= 40
    assert len(splits["test"]) == 5
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    assert {ex.question for ex in data.load_splits("gsm8k", tmp_path)["validation"]} == val  # order-proof


def test_mcnemar_on_hand_checked_tables():
    # Both right 5, only A 1, only B 5, both wrong 3. Discordant 6: P(X <= 1 | 6, 1/2) = 7/64.
    a = [1] * 5 + [1] * 1 + [0] * 5 + [0] * 3
    b = [1] * 5 + [0] * 1 + [1] * 5 + [0] * 3
    m = ev.mcnemar(a, b)
    assert (m["n"], m["only_a"], m["only_b"]) == (14, 1, 5)
    assert m["p"] == pytest.approx(14 / 64) and m["diff"] == pytest.approx(-4 / 14)
    assert ev.mcnemar([1] * 6, [0] * 6)["p"] == pytest.approx(2 / 64)                 # 0 vs 6
    assert ev.mcnemar([1, 0, 1], [1, 0, 1]) == dict(n=3, only_a=0, only_b=0, diff=0.0, p=1.0)
    # The audit's SFT vs SAIE: 24 vs 14 disagreements. 2 * sum_{k<=14} C(38, k) / 2^38 = 0.1433.
    m = ev.mcnemar([1] * 24 + [0] * 14, [0] * 24 + [1] * 14)
    assert round(m["p"], 4) == 0.1433
    assert m["p"] == ev.mcnemar([0] * 24 + [1] * 14, [1] * 24 + [0] * 14)["p"]   # symmetric
    with pytest.raises(ValueError):
        ev.mcnemar([1], [1, 0])


def learner_script(prompt, row):
    """q0 right (1), q1 wrong (9); after a remark, it repeats the remark's answer."""
    if "Partner:" in prompt:
        return f"copied\n#### {last_answer(prompt)}"
    return "one step\n#### 1" if "question 0" in prompt else "bad step\n#### 9"


def partner_script(prompt, row):
    """Alone, the partner is right on both: it will agree on q0 and disagree on q1."""
    return "one step\n#### 1" if "question 0" in prompt else "two steps\n#### 2"


def test_the_honest_partner_opens_with_the_comparison_of_its_own_answer():
    learner, partner = Scripted(learner_script), Scripted(partner_script)
    res = ev.evaluate(S(learner), ToyTask(), EXAMPLES, S(partner, remarks=False), "honest")
    assert res["partner_mode"] == "honest" and res["config"]["stance"] == "honest"
    agree, disagree = (p["transcripts"][0]["turns"] for p in res["predictions"])
    # q0: the partner's own answer is the learner's: "I agree." and its derivation reaches that answer.
    assert agree[1]["text"] == "I agree. one step\n#### 1"
    assert agree[1]["answer"] == agree[0]["answer"] == "1" and agree[1]["stance"] == "support"
    # q1: its own answer (2) is not the learner's (9): "I disagree." and its own derivation.
    assert disagree[1]["text"] == "I disagree. two steps\n#### 2" and disagree[1]["stance"] == "oppose"
    # The partner answered alone, once per question: it was never shown the learner's answer.
    assert len(partner.prompts) == 1
    assert all(p.endswith("Answer:") and "####" not in p for p in partner.prompts[0])
    assert res["agreed"] == 0.5 and res["alignment"] is None
    assert [p["accuracy"] for p in res["per_round"]] == [0.5, 1.0]
    assert (res["kept"], res["fixed"]) == (1.0, 1.0)
    assert res["after_vs_alone"]["only_a"] == 1 and res["after_vs_alone"]["only_b"] == 0


def test_a_greedy_learner_answers_once_across_alone_and_discussions():
    model = Scripted(learner_script)
    learner = ev.CachedSpeaker(model, model.tok, 256, cache={})
    alone = ev.evaluate(learner, ToyTask(), EXAMPLES)
    forced = ev.evaluate(learner, ToyTask(), EXAMPLES, S(model), "support")
    first = [p["answers"][0] for p in forced["predictions"]]
    assert first == [p["answers"][0] for p in alone["predictions"]]
    learner_calls = [c for c in model.prompts if c[0].endswith("Answer:") and "Partner:" not in c[0]]
    assert len(learner_calls) == 1   # the discussion's first answers came from memory


def test_caveats_mark_rouge_on_arith_and_debate_without_its_format():
    task = data.get_task("arith")
    exs = task.load("validation")[:2]
    model = Scripted(lambda p, r: "2 + 3 = 5\n#### 5")
    res = ev.evaluate(S(model, 0.7), task, exs, agents=2)
    assert any(c.startswith("ROUGE on arith") for c in res["caveats"])
    assert any(c.startswith("debate: this model was never shown") for c in res["caveats"])
    assert ev.cells(res)[-3:] == ["–", "–", "–"] and res["rouge"] is not None   # kept, not shown


def test_saie_evaluates_on_validation_with_learning_curves(tmp_path, capsys):
    from tests.test_saie import TINY
    saie.main(TINY + ["--out", str(tmp_path), "--method", "sft", "--eval-split", "validation",
                      "--eval-every", "2", "--curve-limit", "3", "--discussions", "honest", "fixed"])
    printed = capsys.readouterr().out
    assert "4 validation questions" in printed and "| sft − warmup |" in printed
    rows = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_alone" in r] == [1, 3]
    assert all(0 <= r["val_honest"] <= 1 for r in rows if "val_alone" in r)
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["config"]["split"] for r in results["results"]} == {"validation"}
    assert {p["discussion"] for p in results["paired"]} == {"alone", "honest", "fixed"}
    page = (tmp_path / "report.html").read_text()
    assert "Learning curves" in page and "sft honest" in page and "Paired comparisons" in page


def test_warmup_seed_varies_the_warmup_only_when_there_is_one(tmp_path):
    from tests.test_saie import TINY
    from model import load_checkpoint
    weights = {}
    for seed in (7, 8):
        saie.main(TINY + ["--method", "warmup", "--warmup-seed", str(seed), "--discussions",
                          "--out", str(tmp_path / str(seed))])
        weights[seed] = load_checkpoint(tmp_path / str(seed) / "warmup" / "model.pt")["model"]
    assert any(not (weights[7][k] == weights[8][k]).all() for k in weights[7])
    with pytest.raises(SystemExit):
        saie.parse_args(["--warmup-seed", "3"])   # the shipped warm-up: nothing to seed
    assert saie.parse_args(["--init", "scratch", "--seed", "5"]).warmup_seed == 5
