"""Play the partner (python discuss.py): scripted sessions on the shipped warm-up, through a pipe as a
student's terminal would feed them, and the pieces that turn typed lines into remarks."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import data
import discuss
from model import GPT, GPTConfig, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
WARMUP = ROOT / "assets" / "arith-warmup.pt"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
TASK = data.get_task("arith")
TESTS = TASK.load(TASK.splits[-1])  # what the command picks its questions from


def session(lines, *flags):
    out = subprocess.run([sys.executable, "discuss.py", *map(str, flags)], input="".join(l + "\n" for l in lines),
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    return out.returncode, out.stdout, out.stderr


def check_verdicts(lines, gold):
    """Every '=> A: right/wrong; kept/changed (X -> Y)' line agrees with the gold and the answer before."""
    before, seen = None, 0
    for line in lines:
        m = re.match(r"=> (\S+): (right|wrong)"
                     r"(?:; (kept its answer|changed its mind \((\S+) -> (\S+)\)))?$", line)
        if not m:
            continue
        answer, verdict, change, x, y = m.groups()
        assert (answer == gold) == (verdict == "right"), line
        assert (change is None) == (before is None), line  # only a first answer has no change to report
        if change == "kept its answer":
            assert answer == before, line
        elif change:
            assert (x, y) == (before, answer) and x != y, line
        before, seen = answer, seen + 1
    return seen


def test_scripted_session_on_the_shipped_warmup():
    ex = TESTS[2]
    rc, out, err = session(["agree", "disagree 35", "I disagree. 17 * 2 = 36 #### 36", ":partner oppose",
                            ":partner support", ":bogus", ":partner", ":help"], "--question", "2")
    assert rc == 0 and err == "", err
    assert f"Question {ex.id}: {ex.question}  (gold answer: {ex.answer})" in out
    # The piped lines are echoed after the prompt, as a terminal shows them.
    assert "you> agree\npartner: I agree. " in out and "you> disagree 35\n" in out
    assert check_verdicts(out.splitlines(), ex.answer) == 6  # the first answer and one per remark
    assert "no command :bogus" in out and "which stance?" in out and out.count(":partner support|oppose") == 2
    assert out.rstrip().endswith("you>")  # Ctrl-D (the end of the pipe) ends the session


def test_vs_and_swap_show_two_checkpoints_on_the_same_remarks():
    # The same checkpoint twice, greedy: both columns must read the same, row by row.
    rc, out, err = session(["disagree 5", "agree", ":swap", "agree", f":swap {WARMUP}", "disagree"],
                           "--question", "0", "--vs", WARMUP)
    assert rc == 0 and err == "", err
    two, one, again = re.split(r"you> :swap.*\n", out.split(f"Question {TESTS[0].id}")[1])
    for part in (two, again):
        rows = [l.split(" | ") for l in part.splitlines() if " | " in l]
        assert rows[0][0].strip() == "[arith-warmup]" and len(rows) > 8
        assert all(left.rstrip() == right.rstrip() for left, right in rows)
    assert one.startswith("back to one learner: arith-warmup") and " | " not in one
    assert "partner: I agree." in one
    assert again.count("=> ") == 2 * (1 + 3 + 1)  # replayed: the first answer, three remarks; then one more


def test_own_question_unknown_words_a_bad_swap_and_a_mute_partner_are_one_line_each(tmp_path):
    mute = tmp_path / "mute.pt"  # a checkpoint that never learned to remark
    tok = data.get_tokenizer("arith")
    gpt = GPT(GPTConfig(family="gpt2", vocab_size=tok.n_vocab, block_size=64, n_layer=1, n_head=1, n_embd=8))
    gpt.tokenizer_spec = tok.name
    save_checkpoint(mute, gpt)
    rc, out, err = session([":new Ann has 7 pens . She buys 5 more . How many pens does Ann have ?",
                            "you are so wrong! #### 13", ":swap nope.pt", f":new {len(TESTS)}",
                            ":partner oppose", ":quit", "agree"], "--partner", mute)
    assert rc == 0 and err == "", err
    assert f"{mute} never learned to remark (no 'remarks' in its checkpoint)" in out
    assert "Question (yours): Ann has 7 pens" in out and "no gold answer to check it against" in out
    assert "note: arith-warmup has no token for you, so, wrong!: it reads them as raw bytes" in out
    assert re.search(r"^error: nope\.pt: .*", out, re.M)
    assert f"the test split has questions 0 to {len(TESTS) - 1}" in out
    assert out.rstrip().endswith("you> :quit")  # nothing after :quit is read


def test_ctrl_c_ends_the_session_cleanly():
    # SIGINT at its default in the child, whatever the suite's own (a background job ignores it)
    p = subprocess.Popen([sys.executable, "discuss.py", "--question", "1"], cwd=ROOT, env=ENV, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out, deadline = "", time.time() + 120
    while not out.endswith("you> ") and time.time() < deadline:
        out += p.stdout.read(1)
    assert out.endswith("you> "), out
    # A signal that lands between the prompt's write and input()'s read is only acted on at the next
    # one (Python runs its handler between bytecodes, and input() is then blocked in C): press again, as
    # a user would. stdin stays open: an EOF would end the session with 0 before the signal is seen.
    for _ in range(6):  # each wait long enough for the exit itself (seconds on a busy machine)
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            pass
    else:
        p.kill()  # never ended: the assertion below says so
        p.wait()
    err = p.stderr.read()
    assert p.returncode == 130 and "Traceback" not in err, err


def test_a_bad_checkpoint_is_one_line():
    rc, out, err = session([], "--ckpt", "README.md")
    assert rc == 1 and err.splitlines() == ["discuss.py: error: README.md: not a checkpoint: torch.save "
                                            "writes a zip archive, and this file is not one"]


def test_unseen_words_are_the_ones_the_arith_tokenizer_spells_in_bytes():
    tok = data.get_tokenizer("arith")
    assert discuss.unseen_words(tok, "I disagree. 9 - 5 = 3\n#### 3") == []
    assert discuss.unseen_words(tok, "Ann has 1000 pens, héllo! (3)") == ["1000", "héllo!"]


def test_typed_lines_become_remarks_in_the_trained_format():
    assert discuss.typed_remark("disagree") == "I disagree."
    assert discuss.typed_remark("Disagree 35") == "I disagree.\n#### 35"
    assert discuss.typed_remark(r"I disagree. 12 / 2 = 7\n7 + 20 = 27 #### 27") == \
        "I disagree. 12 / 2 = 7\n7 + 20 = 27\n#### 27"
    assert discuss.typed_remark("you are wrong") == "you are wrong"
