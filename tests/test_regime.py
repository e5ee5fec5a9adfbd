"""experiments/regime.py's tables and verdict, on fake records: what the pages show is what they hold."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import arith  # noqa: E402
import regime  # noqa: E402


def fake_record(results, name, method, rights, step=400):
    """A record as arith.write_record leaves it: per evaluation its accuracy and right answers."""
    acc = sum(rights) / len(rights)
    e = {"accuracy": acc, "ci_low": acc - 0.1, "ci_high": acc + 0.1, "first": acc, "n": len(rights),
         "right": f"{int(''.join(map(str, rights)), 2):x}", "questions": "q100"}
    evals = {f"{m}-{d}": e for m in ((method, "warmup") if method == "sft" else (method,))
             for d in regime.SHOWN}
    path = results / "runs" / (name.replace("/", "_") + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run": name, "cpu_s": 100.0, "evals": evals,
                                "selected": {method: {"step": step}}}))


def test_the_verdict_reads_the_declared_rule_and_the_readme_table_pairs_within_seeds(tmp_path,
                                                                                   monkeypatch):
    root, results = tmp_path / "repo", tmp_path / "results"
    (root / "docs").mkdir(parents=True)
    page = "intro\n<!-- study:regime -->\nSTALE\n<!-- /study:regime -->\nafter\n"
    (root / "docs" / "results.md").write_text(page)
    (root / "README.md").write_text(page)
    for module in (arith, regime):
        monkeypatch.setattr(module, "RESULTS", results)
        monkeypatch.setattr(module, "ROOT", root)
    # Of 100 questions SFT gets 20 right, SAIE 50 (+30 on every seed), both controls 51.
    right = lambda k: [1] * k + [0] * (100 - k)
    for seed in regime.SEEDS:
        fake_record(results, f"regime/{seed}/sft", "sft", right(20))
        fake_record(results, f"regime/{seed}/saie", "saie", right(50))
        for arm in ("oracle", "scripted"):
            fake_record(results, f"regime/{seed}/{arm}", regime.METHOD[arm], right(51))
    regime.tables()

    readme = (root / "README.md").read_text()
    assert readme.startswith("intro\n<!-- study:regime -->\n| model |") and "STALE" not in readme
    assert "| SAIE | 50.0 | 50.0 | 50.0 | +30.0 [+30.0, +30.0] | – |" in readme
    assert "| SFT | 20.0 | 20.0 | 20.0 | – | -30.0 [-30.0, -30.0] |" in readme
    assert "SAIE, support only" not in readme  # no records, no row
    results_page = (root / "docs" / "results.md").read_text()
    # SAIE is +30 on every seed but a point behind its controls: the rule's second branch.
    assert "Verdict: **augmentation, not discussion**." in results_page
    assert "Not finished yet: 1337/saie-support" in results_page
