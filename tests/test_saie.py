"""The training driver end to end on tiny models: SFT and SAIE runs, kill-and-resume, DDP, bad flags."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import data
import discuss
import saie
from model import GPT, GPTConfig, load_checkpoint, save_checkpoint

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
        {(m, d) for m in ("warmup", "sft", "saie") for d in ("alone", "honest", "fixed")}
    from tests.test_eval import assert_rows_match   # the report's table shows results.json, row by row
    assert_rows_match((tmp_path / "report.html").read_text(), results["results"])
    # The same number of steps from the same warm-up (tests/test_invariants.py checks the start), yet they differ.
    sft, saie_ = weights(tmp_path / "sft" / "ckpt.pt"), weights(tmp_path / "saie" / "ckpt.pt")
    assert any(not torch.equal(sft[k], saie_[k]) for k in sft)


def test_each_method_gets_the_learning_rate_the_study_chose_unless_lr_is_given():
    a = saie.parse_args([])
    assert a.lr == {"sft": 5e-4, "saie": 1e-3, "scripted": 1e-3, "oracle": 1e-3}
    assert a.plain_weight == 3.0
    assert (a.steps, a.max_turn_tokens, a.discussions) == (100, 24, ["honest", "fixed"])
    assert set(saie.parse_args(["--lr", "2e-3"]).lr.values()) == {2e-3}
    a = saie.parse_args(["--task", "gsm8k"])  # pretrained models keep one rate and weight 1
    assert set(a.lr.values()) == {2e-5} and a.plain_weight == 1.0
    a = saie.parse_args(["--init", "HuggingFaceTB/SmolLM2-135M-Instruct"])  # pretrained, on arith
    assert set(a.lr.values()) == {1e-4} and (a.partner_temperature, a.max_turn_tokens) == (0.0, 64)
    assert saie.parse_args([]).partner_temperature == 1.0  # arith's tiny partner samples
    assert saie.parse_args(["--partner-temperature", "0.5"]).partner_temperature == 0.5


def test_no_eval_warmup_evaluates_the_method_alone_with_the_warmup_as_fixed_partner(tmp_path):
    saie.main(TINY + ["--method", "sft", "--no-eval-warmup", "--discussions", "fixed", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [(r["method"], r["discussion"], r["config"]["partner"]) for r in results] == \
        [("sft", "alone", None), ("sft", "fixed", "warm-up")]


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
    """Two ranks, two micro-batches a step: gradients sync on each step's last backward only."""
    p = run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "saie.py", *TINY,
             "--method", "saie", "--grad-accum", "2", "--device", "cpu", "--out", str(tmp_path)])
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


# -----------------------------------------------------------------------------
# Paths end to end: gradient accumulation, resume in every phase, a partner with its own tokenizer


class Crash(Exception):
    pass


def crash_when(path, lines):
    """A GPT.forward that raises, as a kill would stop the run, once `path` holds `lines` lines."""
    forward = GPT.forward

    def spy(self, idx, targets=None, weights=None):
        if targets is not None and path.exists() and len(path.read_text().splitlines()) >= lines:
            raise Crash(str(path))
        return forward(self, idx, targets, weights)
    return spy


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_grad_accum_gives_the_step_of_a_batch_twice_the_size(tmp_path, monkeypatch):
    flags = TINY + ["--method", "sft", "--warmup-steps", "0", "--steps", "3"]
    starts, train = [], saie.train

    def spy(phase, model, *a, **k):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        return train(phase, model, *a, **k)
    monkeypatch.setattr(saie, "train", spy)
    saie.main(flags + ["--batch-size", "4", "--out", str(tmp_path / "one")])
    saie.main(flags + ["--batch-size", "2", "--grad-accum", "2", "--out", str(tmp_path / "two")])
    a, b = weights(tmp_path / "one" / "sft" / "ckpt.pt"), weights(tmp_path / "two" / "sft" / "ckpt.pt")
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-5) for k in a)
    start = starts[-1]   # where SFT started: the tolerance is far below how far training moved the weights
    assert same_weights(starts[1], starts[-1]) and max((a[k] - start[k]).abs().max() for k in a) > 1e-3
    losses = [[json.loads(l)["loss"] for l in (tmp_path / d / "sft" / "metrics.jsonl").read_text().splitlines()]
              for d in ("one", "two")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)   # the step's loss: the same weighted mean


def test_saie_with_grad_accum_resumes_to_the_same_run(tmp_path, monkeypatch):
    """Crashed in the middle of a step (its first micro-batch's transcripts already written), resumed:
    the same weights and the same transcripts as a run that was never stopped."""
    flags = TINY + ["--method", "saie", "--grad-accum", "2", "--ckpt-every", "1"]
    saie.main(flags + ["--out", str(tmp_path / "ref")])
    transcripts = tmp_path / "run" / "saie" / "transcripts.jsonl"
    with monkeypatch.context() as m:  # 6 micro-batches of 4 written: in step 2's second micro-batch
        m.setattr(GPT, "forward", crash_when(transcripts, 6 * 4))
        with pytest.raises(Crash):
            saie.main(flags + ["--out", str(tmp_path / "run")])
    assert load_checkpoint(tmp_path / "run" / "saie" / "ckpt.pt")["step"] == 2
    assert [json.loads(l)["step"] for l in transcripts.read_text().splitlines()][::4] == [0, 1, 2, 3, 4, 5]
    saie.main(flags + ["--out", str(tmp_path / "run"), "--resume"])
    for name in ("saie/transcripts.jsonl", "saie/metrics.jsonl"):
        assert (tmp_path / "ref" / name).read_text() == (tmp_path / "run" / name).read_text(), name
    steps = [json.loads(l)["step"] for l in transcripts.read_text().splitlines()]
    assert steps == [i // 4 for i in range(4 * 4 * 2)]   # micro-batches 0..7, each once
    assert same_weights(weights(tmp_path / "ref" / "saie" / "ckpt.pt"), weights(tmp_path / "run" / "saie" / "ckpt.pt"))


def test_compare_resumes_after_a_kill_in_warmup_and_one_in_saie(tmp_path, monkeypatch, capsys):
    """Each kill comes a step after a checkpoint (every 2 steps), so a metrics line and SAIE transcripts
    written since must be dropped on resume."""
    flags = TINY
    saie.main(flags + ["--out", str(tmp_path / "ref")])
    run_dir = tmp_path / "run"
    for phase, resume in (("warmup", []), ("saie", ["--resume"])):
        with monkeypatch.context() as m:
            m.setattr(GPT, "forward", crash_when(run_dir / phase / "metrics.jsonl", 3))
            with pytest.raises(Crash):
                saie.main(flags + ["--out", str(run_dir)] + resume)
        assert load_checkpoint(run_dir / phase / "ckpt.pt")["step"] == 2
    assert len((run_dir / "saie" / "transcripts.jsonl").read_text().splitlines()) == 4 * 4
    capsys.readouterr()
    saie.main(flags + ["--out", str(run_dir), "--resume"])
    printed = capsys.readouterr().out
    assert "sft: resuming at step 4/4" in printed and "saie: resuming at step 2/4" in printed
    for phase in ("warmup", "sft", "saie"):
        assert same_weights(weights(tmp_path / "ref" / phase / "ckpt.pt"), weights(run_dir / phase / "ckpt.pt"))
        assert (tmp_path / "ref" / phase / "metrics.jsonl").read_text() == \
            (run_dir / phase / "metrics.jsonl").read_text()
    assert (tmp_path / "ref" / "saie" / "transcripts.jsonl").read_text() == \
        (run_dir / "saie" / "transcripts.jsonl").read_text()
    ref, got = (json.loads((d / "results.json").read_text())["results"] for d in (tmp_path / "ref", run_dir))
    assert got == ref   # every evaluated row, warm-up included


def test_a_partner_with_its_own_model_and_tokenizer(tmp_path, monkeypatch):
    """--partner: a byte-level model beside the arith learner. Turns pass as text: the partner reads the
    learner's answers in bytes, the learner reads the remarks in its own tokens."""
    byte = data.get_tokenizer("byte")
    torch.manual_seed(0)
    partner = GPT(GPTConfig(family="llama", vocab_size=byte.n_vocab, block_size=512, n_layer=1, n_head=2,
                            n_kv_head=1, n_embd=32))
    partner.tokenizer_spec = "byte"
    save_checkpoint(tmp_path / "partner.pt", partner, remarks=True)
    prompts, generate = [], GPT.generate

    def spy(self, ps, *a, **k):
        out = generate(self, ps, *a, **k)
        for p, o in zip(ps, out):
            prompts.append((self.config.vocab_size, p, o))
        return out
    monkeypatch.setattr(GPT, "generate", spy)
    saie.main(TINY + ["--method", "saie", "--rounds", "2", "--partner", str(tmp_path / "partner.pt"),
                      "--out", str(tmp_path / "run")])
    lines = (tmp_path / "run" / "saie" / "transcripts.jsonl").read_text().splitlines()
    trs = [discuss.Transcript.from_json(l) for l in lines]
    assert len(trs) == 4 * 4 and all(len(tr.turns) == 4 for tr in trs)
    tok = data.get_tokenizer("arith")
    asked = {v: {tuple(p) for vv, p, _ in prompts if vv == v} for v in (tok.n_vocab, byte.n_vocab)}
    assert len(asked[byte.n_vocab]) == 2 * len(trs)   # two remarks per question, all by the byte model
    for tr in trs:
        assert all(t.text.startswith(discuss.OPENER[tr.stance]) for t in tr.turns[1::2])
        for k in (1, 3):   # before each remark, the partner read the transcript so far in bytes
            view = discuss.Transcript(tr.question, tr.gold, tr.stance, tr.id, tr.turns[:k])
            assert tuple(discuss.encode(byte, discuss.render(byte, view, "partner"))) in asked[byte.n_vocab]
        # before its second turn, the learner read the byte model's remark in its own arith tokens
        view = discuss.Transcript(tr.question, tr.gold, tr.stance, tr.id, tr.turns[:2])
        assert tuple(discuss.encode(tok, discuss.render(tok, view, "learner"))) in asked[tok.n_vocab]


@pytest.mark.parametrize("load, preset, policy", [(0.1, None, "unset"), (1.2, None, "PASSIVE"),
                                                  (0.1, "PASSIVE", "PASSIVE"),
                                                  (1.2, "ACTIVE", "ACTIVE")])
def test_idle_threads_spin_only_on_an_idle_machine(load, preset, policy):
    """The saie.py command sets OpenMP's wait policy before torch loads, from the load average at
    the start; a policy the user set stands; importing saie changes nothing."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    policy_now = "print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    fake = f"import os, runpy, sys; os.getloadavg = lambda: ({load}, 0.0, 0.0)"
    command = (f"{fake}; sys.argv = ['saie.py', '--help']\ntry: runpy.run_path('saie.py', "
               f"run_name='__main__')\nexcept SystemExit: pass\n{policy_now}")
    for code, expected in ((command, policy), (f"{fake}; import saie; {policy_now}", preset)):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.split()[-1] == (expected or "unset"), out.stderr


def test_train_limit_and_select_best_keep_the_best_validation_step(tmp_path):
    """The data-limited regime: the oracle control trains on its N questions only, and the
    evaluated weights are those of the step with the best validation accuracy alone."""
    saie.main(TINY + ["--method", "oracle", "--train-limit", "16", "--eval-every", "1",
                      "--select-best", "--curve-limit", "8", "--out", str(tmp_path)])
    rows = [json.loads(l) for l in (tmp_path / "oracle" / "metrics.jsonl").read_text().splitlines()]
    best = json.loads((tmp_path / "oracle" / "best.json").read_text())
    accs = [r["val_alone"] for r in rows]
    assert best["step"] == accs.index(max(accs)) + 1 and "train_alone" in rows[0]
    assert saie.load_checkpoint(tmp_path / "oracle" / "best.pt")["step"] == best["step"]
    assert json.loads((tmp_path / "results.json").read_text())["selected"]["oracle"] == best
    questions = {json.loads(l)["id"] for l in (tmp_path / "oracle" / "transcripts.jsonl").open()}
    assert len(questions) <= 16  # every discussion from the 16 drawn questions


def test_float16_steps_scale_the_loss_and_unscale_before_clipping(tmp_path, monkeypatch):
    """--dtype float16 trains through a GradScaler (its gradients would underflow otherwise): each
    loss is scaled before backward and the gradients unscaled before clipping; its state resumes."""
    calls = []

    class Spy(torch.amp.GradScaler):
        def scale(self, loss):
            calls.append("scale")
            return super().scale(loss)

        def unscale_(self, opt):
            calls.append("unscale")
            return super().unscale_(opt)
    monkeypatch.setattr(torch.amp, "GradScaler", Spy)
    saie.main(TINY + ["--method", "sft", "--dtype", "float16", "--discussions", "--out",
                      str(tmp_path)])
    assert calls.count("unscale") == 4 + 4 and calls.index("scale") < calls.index("unscale")
    assert saie.load_checkpoint(tmp_path / "sft" / "ckpt.pt")["scaler"]["scale"] > 0
