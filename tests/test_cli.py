"""Every error the project raises on purpose reaches a user of the command line as one line on stderr
('saie.py: error: ...') and a non-zero exit; a bug keeps its traceback; nothing already written is lost."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import model
from model import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--init", "scratch", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "160",
        "--batch-size", "4", "--warmup-steps", "4", "--steps", "4", "--eval-limit", "4",
        "--max-turn-tokens", "12", "--log-every", "2", "--ckpt-every", "2", "--seed", "7"]


def command(*args, env=None):
    """(exit status, stdout, stderr) of `python *args` in the repository."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    out = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    return out.returncode, out.stdout, out.stderr


def one_error_line(rc, err, prog="saie.py"):
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


@pytest.fixture
def tiny_gsm8k(tmp_path):
    """Well-formed GSM8K files of 100 lines: loaded in no time, unlike the generated arith set."""
    d = tmp_path / "gsm8k"
    d.mkdir()
    for split in ("train", "test"):
        lines = [f'{{"question": "{i} + 1?", "answer": "{i} + 1 = {i + 1}\\n#### {i + 1}"}}\n'
                 for i in range(100)]
        (d / f"{split}.jsonl").write_text("".join(lines))
    return ["--task", "gsm8k", "--data-dir", d]


@pytest.fixture
def out_with_checkpoint(tmp_path):
    """An --out that already holds a checkpoint: every failing command must leave it as it was."""
    out = tmp_path / "out"
    (out / "warmup").mkdir(parents=True)
    ck = out / "warmup" / "ckpt.pt"
    ck.write_bytes(b"precious")
    return out, ck


def test_a_bad_data_line_names_file_line_and_field(tmp_path, out_with_checkpoint):
    out, ck = out_with_checkpoint
    (tmp_path / "train.jsonl").write_text('{"question": "q", "answer": "1 + 1 = 2\\n#### 2"}\n'
                                          '{"question": 5}\n')
    (tmp_path / "test.jsonl").write_text('{"question": "q", "answer": "1 + 1 = 2\\n#### 2"}\n')
    rc, _, err = command("saie.py", "--task", "gsm8k", "--init", "scratch", "--data-dir", tmp_path,
                         "--out", out, "--resume")
    line = one_error_line(rc, err)
    where = tmp_path / "train.jsonl"
    assert line.endswith(f"{where}:2: field 'question' should be a non-empty str, got int '5'")
    assert ck.read_bytes() == b"precious"


def test_no_network_and_no_data_dir(tmp_path):
    unreachable = "http://127.0.0.1:9"  # nothing listens there: the fetch fails at once
    env = {"SAIE_CACHE": str(tmp_path / "cache"), "HTTPS_PROXY": unreachable, "https_proxy": unreachable,
           "NO_PROXY": "", "no_proxy": ""}
    rc, _, err = command("saie.py", "--task", "gsm8k", "--init", "scratch", "--out", tmp_path / "out",
                         env=env)
    line = one_error_line(rc, err)
    assert "could not fetch https://" in line and "--data-dir" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind, says", [
    ("text", "not a checkpoint: torch.save writes a zip archive, and this file is not one"),
    ("dir", "has neither config.json (Hugging Face) nor params.json (Meta)"),
])
def test_an_init_that_is_not_a_model(kind, says, tmp_path, tiny_gsm8k, out_with_checkpoint):
    out, ck = out_with_checkpoint
    init = tmp_path / "init"
    if kind == "text":
        init.write_text("hello\n")
    else:
        init.mkdir()
    rc, _, err = command("saie.py", *tiny_gsm8k, "--init", init, "--out", out, "--resume")
    assert says in one_error_line(rc, err)
    assert ck.read_bytes() == b"precious"


def test_what_an_unreadable_checkpoint_is_in_plain_words(tmp_path):
    torch.save({"a": torch.zeros(2)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    torch.save({"a": torch.zeros(2)}, tmp_path / "whole.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:300])
    torch.save({"a": Path("any object")}, tmp_path / "objects.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    for name, says in [("empty.pt", "an empty file, not a checkpoint"),
                       ("old.pt", "torch.save writes a zip archive, and this file is not one"),
                       ("cut.pt", "a zip archive, but not a whole torch.save checkpoint"),
                       ("objects.pt", "holds Python objects besides tensors"),
                       ("whole.pt", "not a saie checkpoint of version 1")]:
        with pytest.raises(model.WeightsError) as e:
            load_checkpoint(tmp_path / name)
        assert str(e.value).startswith(f"{tmp_path / name}: ") and says in str(e.value)
        assert "mmap" not in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("under", [False, True])
def test_an_out_that_cannot_be_written(under, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    rc, _, err = command("saie.py", "--out", blocker / "sub" if under else blocker)
    assert one_error_line(rc, err).endswith(f"{blocker} is not a directory")
    assert blocker.read_text() == "keep me"


def test_out_of_memory_is_advice_and_keeps_what_was_written(tmp_path):
    # A GPU would run out of memory in SAIE's discussions; here the SAIE batches raise it, after the
    # warm-up and SFT have written their checkpoints and metrics.
    code = ("import sys, torch, saie\n"
            "def oom(*a, **k):\n"
            "    raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 ...')\n"
            "    yield\n"
            "saie.saie_batches = oom\n"
            "saie.data.cli(lambda: saie.main(sys.argv[1:]), 'saie.py')\n")
    rc, _, err = command("-c", code, *TINY, "--out", tmp_path)
    line = one_error_line(rc, err)
    assert "out of memory (CUDA out of memory. Tried to allocate 2.00 GiB)" in line and "--batch-size" in line
    for phase in ("warmup", "sft"):
        assert load_checkpoint(tmp_path / phase / "ckpt.pt")["step"] == 4
        steps = [json.loads(l)["step"] for l in (tmp_path / phase / "metrics.jsonl").read_text().splitlines()]
        assert steps == [0, 1, 2, 3]
    assert not (tmp_path / "saie" / "ckpt.pt").exists()


def test_a_bug_keeps_its_traceback(tmp_path, tiny_gsm8k):
    code = ("import sys, saie\n"
            "saie.build_model = lambda args: 1 / 0\n"
            "saie.data.cli(lambda: saie.main(sys.argv[1:]), 'saie.py')\n")
    rc, _, err = command("-c", code, *tiny_gsm8k, "--out", tmp_path / "out")
    assert rc == 1 and "Traceback" in err and err.strip().endswith("ZeroDivisionError: division by zero")


def test_a_message_that_already_names_its_command_is_not_prefixed_twice(out_with_checkpoint):
    out, ck = out_with_checkpoint
    rc, _, err = command("saie.py", "--out", out)
    assert one_error_line(rc, err) == (f"saie.py: error: {out} already holds checkpoints; pass --resume "
                                       f"to continue them or choose another --out")
    assert ck.read_bytes() == b"precious"


def test_bench_and_exercise_entry_points_answer_in_one_line(tmp_path, tiny_gsm8k):
    bad = tmp_path / "bad.pt"
    bad.write_text("not weights")
    rc, _, err = command("bench/partner_temperature.py", "--model", bad)
    assert "not a checkpoint" in one_error_line(rc, err, "bench/partner_temperature.py")
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = command("-m", "exercises.every_round", *tiny_gsm8k, "--init", empty,
                         "--out", tmp_path / "out")
    assert "has neither config.json" in one_error_line(rc, err, "exercises.every_round")
