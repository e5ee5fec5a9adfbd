"""The exercise checks are checked in turn: with the reference solutions every check passes and none
skips; with each plausible wrong solution the checks it names fail; every check of a student's work is
named by some wrong solution; an untouched stub skips, a half-written one fails. The solutions live in
tests/spoilers/ (spoilers: do the exercises first)."""
import ast
import importlib
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.exercises.conftest import untouched_stub
from tests.spoilers import plugin, reference, wrong

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ROOT / "tests" / "exercises"
ROUNDS = max(len(v) for v in wrong.VARIANTS.values())


def student_checks(exercise):
    """The checks of a student's work: test functions taking `attempt` or `probe` (they skip on the stub)."""
    tree = ast.parse((CHECKS / f"test_{exercise}.py").read_text())
    return {f.name for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")
            and {"attempt", "probe"} & {a.arg for a in f.args.args}}


def run_checks(tmp_path, exercises, spoilers=""):
    """Run the exercises' checks with the solutions swapped in: {(exercise, test id): outcome}."""
    xml = tmp_path / "junit.xml"
    env = {**os.environ, "SPOILERS": spoilers, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    files = [str(CHECKS / f"test_{e}.py") for e in exercises]
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.spoilers.plugin",
                        f"--junitxml={xml}", *files], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert xml.exists(), p.stdout + p.stderr
    outcomes = {}
    for case in ET.parse(xml).iter("testcase"):
        kind = next((k for k in ("failure", "error", "skipped") if case.find(k) is not None), "passed")
        exercise = case.get("classname").rsplit(".", 1)[-1].removeprefix("test_")
        outcomes[(exercise, case.get("name"))] = kind
    return outcomes, p.stdout


def test_every_check_passes_with_the_reference_solutions(tmp_path):
    outcomes, out = run_checks(tmp_path, list(wrong.VARIANTS))
    assert {e for e, _ in outcomes} == set(wrong.VARIANTS)
    assert set(outcomes.values()) == {"passed"}, out     # nothing fails, nothing skips


@pytest.mark.parametrize("round", range(ROUNDS))
def test_each_wrong_solution_fails_the_checks_it_names(tmp_path, round):
    """Round k puts every exercise's k-th wrong solution in place (exercises do not share code)."""
    chosen = {e: v[round] for e, v in wrong.VARIANTS.items() if round < len(v)}
    spoilers = ",".join(f"{e}:{name}" for e, (name, _, _) in chosen.items())
    outcomes, out = run_checks(tmp_path, list(chosen), spoilers)
    for exercise, (name, _, must_fail) in chosen.items():
        for test in must_fail:
            got = outcomes.get((exercise, test))
            assert got == "failure", f"{exercise}:{name} is not caught by {test} ({got})\n{out}"


def test_every_check_of_a_students_work_catches_some_wrong_solution():
    for exercise, variants in wrong.VARIANTS.items():
        caught = {test.split("[")[0] for _, _, must_fail in variants for test in must_fail}
        checks = student_checks(exercise)
        assert checks <= caught, f"{exercise}: no wrong solution for {checks - caught}"
        assert caught <= checks, f"{exercise}: named checks that do not exist: {caught - checks}"


def test_only_an_untouched_stub_skips():
    for exercise, names in plugin.FUNCTIONS.items():
        module = importlib.import_module(f"exercises.{exercise}")
        for name in names:
            assert untouched_stub(getattr(module, name)), f"exercises/{exercise}.py: {name} ships as a stub"
            assert not untouched_stub(getattr(reference, name))
    assert not untouched_stub(wrong.min_p_half_written)   # started, still raising: it runs and fails
