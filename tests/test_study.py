"""experiments/arith.py's tables, on a fake study: what the pages show is what the runs measured."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import arith  # noqa: E402


def fake_eval(folder, rights, mode="single"):
    """An eval folder as eval.save writes it: results.json and predictions.jsonl (one right/wrong each)."""
    folder.mkdir(parents=True)
    acc = sum(rights) / len(rights)
    r = {"accuracy": acc, "ci95": [acc - 0.1, acc + 0.1], "mode": mode, "n": len(rights),
         "per_round": [{"accuracy": acc}], "kept": 0.5, "fixed": 0.25}
    (folder / "results.json").write_text(json.dumps(r))
    (folder / "predictions.jsonl").write_text("".join(
        json.dumps({"id": f"test-{i}", "correct": [ok]}) + "\n" for i, ok in enumerate(rights)))


def test_tables_pair_each_arm_with_its_seeds_sft_and_fill_the_pages(tmp_path, monkeypatch):
    runs, root = tmp_path / "runs", tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    page = "intro\n<!-- study:headline -->\nold\n<!-- /study:headline -->\nafter\n"
    (root / "docs" / "results.md").write_text(page)
    monkeypatch.setattr(arith, "RUNS", runs)
    monkeypatch.setattr(arith, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(arith, "ROOT", root)
    # Seed 1337: SAIE right on questions 0-5 of 10, SFT on 0-3 and 9 (only SAIE: 4, 5; only SFT: 9).
    # Seed 1: both right on the same questions.
    sft, saie = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    for seed in ("1337", "1"):
        for arm, method, rights in (("sft", "sft", sft), ("saie", "saie", saie if seed == "1337" else sft)):
            out = runs / "test" / seed / arm
            evals = [("warmup", [0] * 10)] * (arm == "sft") + [(method, rights)]
            for who, right in evals:
                for d in arith.SHOWN:
                    fake_eval(out / "eval" / f"{who}-{d}", right, "single" if d == "alone" else "self")
            (out / "results.json").write_text(json.dumps({"args": {"init": "scratch"}, "results": [
                {"method": who, "discussion": d} for who, _ in evals for d in arith.SHOWN]}))
            arith.write_record(f"test/{seed}/{arm}")  # what run() does when a run finishes
    # The tables need the records only: the runs' folders can go (a fresh clone has none).
    import shutil
    shutil.rmtree(runs)
    arith.tables()

    paired = (tmp_path / "results" / "paired.csv").read_text().splitlines()
    assert paired[0].split(",")[:4] == ["seed", "a", "b", "discussion"]
    row = dict(zip(paired[0].split(","), paired[1].split(",")))
    assert (row["seed"], row["a"], row["b"], row["only_a"], row["only_b"], row["diff"]) == \
        ("1337", "saie", "sft", "2", "1", "0.1000")
    results = (root / "docs" / "results.md").read_text()
    assert "1337: +10.0 (p 1.000), 1: +0.0 (p 1.000); pooled +5.0 (p 1.000)" in results
    assert "Not finished yet: " in results


def test_a_record_holds_the_right_answers_and_an_older_one_its_stored_pair(tmp_path, monkeypatch):
    monkeypatch.setattr(arith, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(arith, "RESULTS", tmp_path / "results")
    rights = [1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1]  # leading and trailing bits both count
    out = tmp_path / "runs" / "test" / "1" / "sft"
    fake_eval(out / "eval" / "sft-alone", rights)
    (out / "results.json").write_text(json.dumps({"args": {"init": "scratch"}, "results": [{"method": "sft", "discussion": "alone"}]}))
    arith.write_record("test/1/sft")
    e = arith.record("test/1/sft")["evals"]["sft-alone"]
    assert arith.answers(e) == [bool(x) for x in rights] and arith.fresh("test/1/sft")
    other = dict(e, right=f"{int('0' * 12, 2):x}")
    assert arith.paired_record(e, other)["only_a"] == 4
    # An older record (figures only) pairs from the counts it stored, or not at all.
    stored = {"n": 12, "only_a": 3, "only_b": 1, "diff": 2 / 12, "p": 0.625}
    assert arith.paired_record(dict(e, right=None), other, stored) is stored
    assert arith.paired_record(dict(e, right=None), other) is None
