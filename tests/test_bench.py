"""The benchmarks still run, at their tiny shapes, and agree with their Hugging Face peer where they compare.

Timings are not asserted (they belong to bench/, on a quiet machine); what is asserted could break silently:
the bench scripts' imports and arguments, our greedy rows equal to HF's under left padding at both families'
shapes, and the tables being printed.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("transformers")


def bench(*args):
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.parametrize("shape", ["tiny-gpt2", "tiny-llama"])
def test_generate_bench_matches_hf_rows(shape):
    out = bench("bench/generate.py", "--shape", shape, "--batch", "1,5", "--new", "6", "--prompt", "12",
                "--repeat", "1")
    same = re.findall(r"same greedy rows as HF: (\d+)/(\d+)", out)
    assert same == [("1", "1"), ("5", "5")], out


@pytest.mark.parametrize("shape", ["tiny-gpt2", "tiny-llama"])
def test_train_bench_prints_speed_memory_and_mfu(shape):
    out = bench("bench/train.py", "--shape", shape, "--batch", "2", "--seq", "16", "--steps", "1")
    assert re.search(r"^ours +[\d.]+ +[\d.]+ +\d+% +\d+", out, re.M), out
    assert re.search(r"^ratio [\d.]+x speed, [\d.]+x memory", out, re.M), out


def test_discuss_bench_prints_the_overhead():
    out = bench("bench/discuss.py", "--shapes", "tiny", "--tasks", "arith", "--steps", "1", "--batch-size", "2",
                "--turn-tokens", "4")
    assert re.search(r"tiny \| arith .* overhead SAIE/SFT [\d.]+x", out), out


def test_saie_step_profile_adds_up():
    out = bench("bench/saie_step.py", "--steps", "1", "--batch-size", "4", "--max-turn-tokens", "6")
    shares = dict(re.findall(r"^(\S.*?) +[\d.]+ +(\d+)%", out, re.M))
    assert shares["total"] == "100" and {"generation", "update: forward + backward"} <= shares.keys(), out
    assert re.search(r"decode steps past a turn's 20th token: 0.0", out), out  # turns of 6 tokens


def test_matmul_bench_compares_the_kernels():
    out = bench("bench/matmul.py", "--layers", "arith", "--rows", "2")
    rows = re.findall(r"^ +2 +(\S+) +[\d.]+ +[\d.]+ \([\d.]+x\) +[\d.]+ \([\d.]+x\)", out, re.M)
    assert rows == ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj", "lm_head"], out


def test_gpu_script_runs_every_step_and_logs_each_status(tmp_path):
    """bench/gpu.sh runs unattended on a lent GPU's few minutes: a failing step must not stop the rest, and the
    log must say how each ended. A stand-in python records the calls and fails the second one."""
    calls = tmp_path / "calls"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nn=$(wc -l < {calls})\necho "ran $1"\n'
                    '[ "$n" -eq 2 ] && exit 3\nexit 0\n')
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(fake), "OUT": str(tmp_path)}
    out = subprocess.run(["sh", "bench/gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    ran = calls.read_text().splitlines()
    assert len(ran) == 7 and all("--device cuda --dtype bfloat16" in c for c in ran), ran
    assert ran[0].startswith("bench/generate.py") and "--compile" in ran[1], ran  # #6's targets first
    log = (tmp_path / "gpu.log").read_text()
    status = re.findall(r"^rc (\d+), \d+ s: (\S+)", log, re.M)
    assert [rc for rc, _ in status] == ["0", "3", "0", "0", "0", "0", "0"], log
    assert [script for _, script in status] == [c.split()[0] for c in ran], log
