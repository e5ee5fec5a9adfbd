"""The training driver end to end on tiny models: SFT and SAIE runs, kill-and-resume, DDP, bad flags."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import saie
from model import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--init", "scratch", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "160", "--batch-size", "4",
        "--warmup-steps", "4", "--steps", "4", "--eval-limit", "4", "--max-turn-tokens", "12",
        "--log-every", "2", "--ckpt-every", "2", "--seed", "7"]


def run(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def weights(path):
    return load_checkpoint(path)["model"]


def test_compare_run_end_to_end(tmp_path, capsys):
    saie.main(TINY + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "| warmup |" in printed and "| sft |" in printed and "| saie |" in printed
    for phase in ("warmup", "sft", "saie"):
        ck = load_checkpoint(tmp_path / phase / "ckpt.pt")
        assert ck["step"] == 4 and ck["remarks"] is True
        lines = (tmp_path / phase / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(l)["step"] for l in lines] == [0, 1, 2, 3]
    trs = (tmp_path / "saie" / "transcripts.jsonl").read_text().splitlines()
    assert len(trs) == 4 * 4 and all(json.loads(t)["turns"][1]["speaker"] == "partner" for t in trs)
    results = json.loads((tmp_path / "results.json").read_text())
    assert {(r["method"], r["discussion"]) for r in results["results"]} == \
        {(m, d) for m in ("warmup", "sft", "saie") for d in ("alone", "honest", "fixed", "forced")}
    assert (tmp_path / "report.html").stat().st_size > 1000
    # Both methods started from the same warm-up and took the same number of steps, yet differ.
    sft, saie_ = weights(tmp_path / "sft" / "ckpt.pt"), weights(tmp_path / "saie" / "ckpt.pt")
    assert any(not torch.equal(sft[k], saie_[k]) for k in sft)


def test_existing_checkpoints_are_never_overwritten_without_resume(tmp_path):
    (tmp_path / "warmup").mkdir()
    (tmp_path / "warmup" / "ckpt.pt").write_bytes(b"precious")
    with pytest.raises(SystemExit, match="--resume"):
        saie.main(TINY + ["--out", str(tmp_path)])
    assert (tmp_path / "warmup" / "ckpt.pt").read_bytes() == b"precious"


@pytest.mark.parametrize("flags", [["--method", "sft", "--stance", "oppose"], ["--rounds", "0"],
                                   ["--batch-size", "0"], ["--task", "nope"], ["--warmup-frac", "1.5"],
                                   ["--bogus"]])
def test_bad_flag_combinations_exit_2(flags, capsys):
    with pytest.raises(SystemExit) as e:
        saie.parse_args(flags)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    args = ["saie.py", *TINY, "--method", "saie", "--steps", "8", "--ckpt-every", "1"]
    ref = run(args + ["--out", str(tmp_path / "ref")])
    assert ref.wait(timeout=300) == 0, ref.stdout.read()

    # SIGKILL somewhere in the SAIE phase, after its third checkpoint.
    killed = run(args + ["--out", str(tmp_path / "run")])
    metrics = tmp_path / "run" / "saie" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and killed.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert killed.poll() is None, "the run ended before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    step_at_kill = load_checkpoint(tmp_path / "run" / "saie" / "ckpt.pt")["step"]
    assert 0 < step_at_kill < 8

    resumed = run(args + ["--out", str(tmp_path / "run"), "--resume"])
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert "saie: resuming at step" in out
    a, b = weights(tmp_path / "ref" / "saie" / "ckpt.pt"), weights(tmp_path / "run" / "saie" / "ckpt.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Transcripts and metrics are neither lost nor duplicated.
    for name in ("metrics.jsonl", "transcripts.jsonl"):
        ref_lines = (tmp_path / "ref" / "saie" / name).read_text().splitlines()
        run_lines = (tmp_path / "run" / "saie" / name).read_text().splitlines()
        assert [json.loads(l)["step"] for l in ref_lines] == [json.loads(l)["step"] for l in run_lines]
    assert (tmp_path / "ref" / "saie" / "transcripts.jsonl").read_text() == \
        (tmp_path / "run" / "saie" / "transcripts.jsonl").read_text()


def test_two_process_gloo_ddp_run_agrees_on_weights(tmp_path):
    p = run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "saie.py", *TINY,
             "--method", "saie", "--device", "cpu", "--out", str(tmp_path)])
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 0, out
    assert out.count("ranks agree on weights: True") == 2  # warm-up and saie
    assert "ranks agree on weights: False" not in out


def test_same_seed_same_transcripts_and_losses(tmp_path):
    for name in ("a", "b"):
        saie.main(TINY + ["--method", "saie", "--out", str(tmp_path / name)])
    for f in ("saie/transcripts.jsonl", "saie/metrics.jsonl", "warmup/metrics.jsonl"):
        assert (tmp_path / "a" / f).read_text() == (tmp_path / "b" / f).read_text()


def test_nan_loss_stops_with_the_last_good_checkpoint_intact(tmp_path, monkeypatch):
    calls, micro_step = [], saie.micro_step

    def poisoned(*args, **kwargs):
        loss, tokens = micro_step(*args, **kwargs)
        calls.append(1)
        return (float("nan") if len(calls) == 7 else loss), tokens  # warm-up takes 4 steps, then sft 2 good ones
    monkeypatch.setattr(saie, "micro_step", poisoned)
    with pytest.raises(SystemExit, match=r"sft: loss is nan at step 2; stopping\. The last good checkpoint"):
        saie.main(TINY + ["--method", "sft", "--out", str(tmp_path)])
    assert load_checkpoint(tmp_path / "sft" / "ckpt.pt")["step"] == 2


def test_length_groups_give_the_gradient_of_the_whole_padded_batch():
    """micro_step splits discussions from short plain pairs; the gradient must not change."""
    import data
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    model = GPT(GPTConfig(family="gpt2", vocab_size=50, block_size=64, n_layer=2, n_head=2, n_embd=16))
    idx = torch.randint(0, 50, (6, 40))
    targets = torch.full((6, 40), -100)
    for r, end in enumerate([40, 38, 9, 8, 30, 7]):  # three long rows, three short ones
        targets[r, end - 4:end] = idx[r, end - 4:end]
    weights = torch.tensor([1.0, 1.0, 0.5, 0.5, 1.0, 0.5])
    groups = data.length_groups(targets)
    assert sorted(map(sorted, (rows for rows, _ in groups))) == [[0, 1, 4], [2, 3, 5]]
    assert [T for _, T in groups] == [9, 40]
    loss, tokens = saie.micro_step(model, idx, targets, weights, "cpu", accum=2)
    assert tokens == 3 * 9 + 3 * 40
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    _, ref = model(idx, targets, weights)  # one forward over the fully padded batch
    (ref / 2).backward()
    assert abs(loss - ref.item()) < 1e-5
    for g, p in zip(grads, model.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)


def test_ctrl_c_writes_a_checkpoint_and_exits_cleanly(tmp_path):
    p = run(["saie.py", *TINY, "--method", "sft", "--steps", "400", "--ckpt-every", "1000",
             "--out", str(tmp_path)])
    metrics = tmp_path / "sft" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out = p.communicate(timeout=120)[0]
    assert p.returncode == 130, out
    assert "interrupted; checkpoint written at step" in out and "Traceback" not in out
    step = load_checkpoint(tmp_path / "sft" / "ckpt.pt")["step"]
    assert 2 <= step < 400


def test_the_default_starts_from_the_shipped_warmup():
    args = saie.parse_args([])
    assert args.init == str(saie.SHIPPED_WARMUP) and args.warmup_steps == 0
    assert saie.SHIPPED_WARMUP.stat().st_size <= 5 * 2**20
    ck = load_checkpoint(saie.SHIPPED_WARMUP)
    assert ck["remarks"] is True and ck["tokenizer"] == "arith" and "optimizer" not in ck
    assert saie.parse_args(["--init", "scratch"]).warmup_steps == 1000
