"""
The discussion: a trainable learner and a frozen partner talk about one question.

One round = the learner answers with reasoning, then the partner remarks with its
stance: supportive ("I agree." and a derivation reaching the learner's answer) or
adversarial ("I disagree." and a derivation reaching another answer). Turns pass
between the two models as text, so they may use different tokenizers: each side
renders the transcript in its own format before it speaks.

Two formats:
- plain text, for base and from-scratch models (the partner learned the remark
  format in warm-up: the "trained" partner mode);
- a chat template (Llama 3's or ChatML, as tok.chat says), for instruct models (the
  partner is told its stance in a system message: the "prompted" mode, the paper's
  setting).

    Question: Ann has 7 pens . She buys 5 more . How many pens does Ann have ?
    Answer: 7 + 5 = 12
    #### 12<eot>
    Partner: I disagree. 7 + 6 = 13
    #### 13<eot>
    Answer: ...
"""

import json
import random
from dataclasses import asdict, dataclass, field

import torch

import data

STANCES = ("support", "oppose")
OPENER = {"support": "I agree.", "oppose": "I disagree."}
# Prompts for instruction-following models (chat mode). The partner's shows the form of a remark:
# of three prompts tried on arith validation with SmolLM2-135M-Instruct, the one whose remarks
# carried their stance most often (experiments/smollm2.py).
LEARNER_SYSTEM = "Solve the problem step by step. End with a final line '#### <answer>'."
PARTNER_SYSTEM = {
    "support": "Reply to the student's answer in this form:\nI agree. 7 + 5 = 12\n12 * 2 = 24\n"
               "#### 24\nRedo the student's steps for this problem and keep the student's final "
               "answer.",
    "oppose": "Reply to the student's answer in this form:\nI disagree. 7 + 5 = 12\n12 * 2 = 24\n"
              "#### 24\nSolve this problem yourself, step by step, and reach a final answer "
              "different from the student's.",
}
# A base model that never emits its end-of-turn token would run on into the next turn: cut there.
TURN_MARKERS = ("\nQuestion:", "\nAnswer:", "\nPartner:")


@dataclass
class Turn:
    speaker: str                 # "learner" | "partner"
    text: str
    answer: str | None = None    # the final answer extracted from text
    stance: str | None = None    # partner turns only


@dataclass
class Transcript:
    question: str
    gold: str                    # the gold final answer (never shown to either model)
    stance: str | None = None    # the partner's stance for this question
    id: str = ""
    turns: list[Turn] = field(default_factory=list)

    def to_json(self, **extra):
        return json.dumps({**extra, **asdict(self)})

    @classmethod
    def from_json(cls, line):
        d = json.loads(line)  # other keys (the step) are the writer's, not the transcript's
        return cls(d["question"], d["gold"], d["stance"], d["id"], [Turn(**t) for t in d["turns"]])


def stances_for(n, mode, rng):
    """The partner's stance for each of n questions: 'both' mixes them 50/50 with rng."""
    if mode == "both":
        return [rng.choice(STANCES) for _ in range(n)]
    if mode not in STANCES:
        raise ValueError(f"unknown stance {mode!r}: expected both, support or oppose")
    return [mode] * n


def partner_mode(tok, remarks, stance="both"):
    """How a model remarks as partner, decided here only. honest: it answers on its own and its
    opener follows (any model can); prompted: a chat model is told its stance; trained: it learned
    the remark format in warm-up (`remarks`); reflect: neither, so no remark at all."""
    if stance == "honest":
        return "honest"
    return "prompted" if tok.chat else "trained" if remarks else "reflect"


# -----------------------------------------------------------------------------
# Rendering: what a role sees before its turn, as segments (text, or token ids for
# special tokens) that data.make_batch and encode() understand.

def render(tok, tr, role):
    """The transcript as `role` ("learner" or "partner") sees it, up to its next turn."""
    return _render_chat(tok, tr, role) if tok.chat else _render_plain(tok, tr, role)


def _render_plain(tok, tr, role):
    segs = [f"Question: {tr.question}\n"]
    for t in tr.turns:
        segs += [f"{'Answer' if t.speaker == 'learner' else 'Partner'}: {t.text}", [tok.eot], "\n"]
    # The partner's opener is forced: the stance is given, the derivation is the model's own.
    segs.append("Answer:" if role == "learner" else f"Partner: {OPENER[tr.stance]}")
    return segs


def _render_chat(tok, tr, role):
    def message(who, text, close=True):
        """One message in the model's chat format; close=False leaves it open to continue."""
        if tok.chat == "llama3":
            segs = [[tok.special("<|start_header_id|>")], who,
                    [tok.special("<|end_header_id|>")], "\n\n" + text]
            return segs + ([[tok.special("<|eot_id|>")]] if close else [])
        segs = [[tok.special("<|im_start|>")], f"{who}\n{text}"]  # ChatML
        return segs + ([[tok.special("<|im_end|>")], "\n"] if close else [])

    segs = [] if tok.bos is None else [[tok.bos]]
    if role == "learner":   # own turns are the assistant's, remarks come from the user
        segs += message("system", LEARNER_SYSTEM) + message("user", tr.question)
        for t in tr.turns:
            segs += (message("assistant", t.text) if t.speaker == "learner" else
                     message("user", f"My partner says: {t.text}\n\nAnswer the question again."))
        prefill = ""
    else:                   # learner turns come from the user, own remarks are the assistant's
        segs += (message("system", PARTNER_SYSTEM[tr.stance])
                 + message("user", f"Question: {tr.question}"))
        for t in tr.turns:
            segs += (message("user", f"The student answers: {t.text}") if t.speaker == "learner"
                     else message("assistant", t.text))
        prefill = OPENER[tr.stance]
    return segs + message("assistant", prefill, close=False)  # the turn continues it


def turn_segments(tok, text):
    """A turn's own segments after render(): a plain turn starts with a space after 'Answer:'."""
    return [(text if tok.chat else " " + text, True), ([tok.eot], True)]


def encode(tok, segments):
    """Token ids of render()'s segments."""
    return [i for s in segments for i in data.encode_part(tok, s)]


# -----------------------------------------------------------------------------
# Speaking: one batched generate call for all transcripts of a round.

class Speaker:
    """One side of the discussion: a model, its tokenizer, and how it samples a turn."""

    def __init__(self, model, tok, max_new_tokens=256, temperature=0.0, top_p=None, remarks=False):
        self.model, self.tok, self.remarks = model, tok, remarks  # remarks: learned the role
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.stop = set(getattr(tok, "stop_ids", ())) | {tok.eot}

    def speak(self, transcripts, role, seed=None):
        """The next turn's text for every transcript (the partner's includes its opener)."""
        room = self.model.config.block_size - self.max_new_tokens
        prompts = [encode(self.tok, render(self.tok, tr, role))[-room:] for tr in transcripts]
        texts = []
        for tr, out in zip(transcripts, self.generate(prompts, seed)):
            text = self.tok.decode(out)
            for marker in TURN_MARKERS:
                text = text.split(marker)[0]
            text = text.strip()
            texts.append(f"{OPENER[tr.stance]} {text}" if role == "partner" else text)
        return texts

    def generate(self, prompts, seed):
        """model.generate, halving the batch (and saying so) when it runs out of memory."""
        try:
            return self.model.generate(prompts, self.max_new_tokens, temperature=self.temperature,
                                       top_p=self.top_p, stop=self.stop, seed=seed)
        except torch.OutOfMemoryError:
            if len(prompts) == 1:
                raise SystemExit("out of memory generating a single turn: lower --max-turn-tokens "
                                 "or use a smaller model") from None
            half = len(prompts) // 2
            print(f"out of memory generating {len(prompts)} turns at once; retrying as {half} + "
                  f"{len(prompts) - half} (lower --batch-size to avoid this)", flush=True)
            return self.generate(prompts[:half], seed) + self.generate(prompts[half:], seed)


def add_turns(transcripts, speaker, role, task, seed=None):
    for tr, text in zip(transcripts, speaker.speak(transcripts, role, seed)):
        tr.turns.append(Turn(role, text, task.extract(text),
                             tr.stance if role == "partner" else None))


def discuss(learner, partner, task, examples, stances, rounds, final_answer=False, seed=0):
    """Run `rounds` rounds of (learner answer, partner remark) on a batch of examples.

    partner=None: the learner reflects on its own previous answer, no remark in between.
    final_answer: the learner answers once more after the last remark (evaluation);
    in training its next turn is the gold answer instead.
    """
    trs = [Transcript(ex.question, ex.answer, s, ex.id) for ex, s in zip(examples, stances)]
    for r in range(rounds):
        add_turns(trs, learner, "learner", task, seed=seed + 2 * r)
        if partner is not None:
            add_turns(trs, partner, "partner", task, seed=seed + 2 * r + 1)
    if final_answer:
        add_turns(trs, learner, "learner", task, seed=seed + 2 * rounds)
    return trs


# -----------------------------------------------------------------------------
# Training sequences: (segments, trainable) lists for data.make_batch.

def answer_sequence(tok, task, ex):
    """Plain fine-tuning: question -> gold reasoning and answer (the warm-up and SFT example)."""
    return learner_sequence(tok, Transcript(ex.question, ex.answer), task.target(ex))


def learner_sequence(tok, tr, target):
    """The discussion so far as context, then the learner's next turn as the only target."""
    return [(s, False) for s in render(tok, tr, "learner")] + turn_segments(tok, target)


def gold_remark(task, ex, answer, right, stance, rng):
    """The remark of a partner that knows the gold answer: `support` restates the learner's
    derivation, `oppose` derives another answer (the gold one when the learner was wrong, a slipped
    one when it was right)."""
    if stance == "support":
        return answer
    return task.wrong_target(ex, rng) if right else task.target(ex)


def scripted_discussion(task, ex, rng):
    """A pre-written round, no model involved: the learner's answer is the gold one or a plausible
    wrong one, then a gold_remark with a random stance."""
    right = rng.random() < 0.5
    answer = task.target(ex) if right else task.wrong_target(ex, rng)
    stance = rng.choice(STANCES)
    remark = gold_remark(task, ex, answer, right, stance, rng)
    return Transcript(ex.question, ex.answer, stance, ex.id, [Turn("learner", answer)]), remark


class OraclePartner:
    """A control, not the method: a partner that knows the gold answer and makes gold_remarks, so
    that SAIE's learner speaks on-policy beside an oracle partner.
    Speaks like a Speaker; `examples` are the questions it may be asked."""

    def __init__(self, task, examples):
        self.task, self.gold = task, {ex.id: ex for ex in examples}

    def speak(self, transcripts, role, seed=None):
        rng, texts = random.Random(seed), []
        for tr in transcripts:
            ex, turn = self.gold[tr.id], tr.turns[-1].text
            right = self.task.is_correct(turn, ex)
            texts.append(f"{OPENER[tr.stance]} "
                         f"{gold_remark(self.task, ex, turn, right, tr.stance, rng)}")
        return texts


def remark_sequences(tok, task, examples, rng):
    """Teach a base partner the remark format (the 'trained' partner mode) on scripted rounds."""
    rounds = [scripted_discussion(task, ex, rng) for ex in examples]
    return [[(s, False) for s in render(tok, tr, "partner")] + turn_segments(tok, remark)
            for tr, remark in rounds]


def scripted_sequences(tok, task, examples, rng):
    """Gold-scripted discussions (a control): SAIE's shape (a round, then the learner's next turn
    with the gold target), but an oracle wrote the learner's turn and the remark."""
    seqs = []
    for ex in examples:
        tr, remark = scripted_discussion(task, ex, rng)
        text = f"{OPENER[tr.stance]} {remark}"
        tr.turns.append(Turn("partner", text, task.extract(remark), tr.stance))
        seqs.append(learner_sequence(tok, tr, task.target(ex)))
    return seqs


def stance_alignment(transcripts):
    """Share of remarks that carry their stance (support: the learner's answer, oppose: another)."""
    hits = n = 0
    for tr in transcripts:
        for prev, t in zip(tr.turns, tr.turns[1:]):
            if t.speaker == "partner" and prev.speaker == "learner":
                n += 1
                same = t.answer is not None and t.answer == prev.answer
                hits += same if t.stance == "support" else (t.answer is not None and not same)
    return hits / max(n, 1)


# =============================================================================
# Play the partner: python discuss.py [--ckpt PATH] [--vs PATH]
# You make the remarks (or have the trained partner make them) and watch the learner react.
# Nothing above this line depends on what follows.

import argparse  # noqa: E402 (the command's own imports)
import functools  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

from model import load_model, method_name  # noqa: E402

HELP = """Type a remark and the learner answers again. Shortcuts and commands:
  agree                    "I agree." and the learner's own derivation: a supportive remark
  disagree [N]             "I disagree." (with N, then "#### N": an answer to push)
  any other text           your remark as typed; \\n starts a new line, "#### N" states an answer
  :partner support|oppose  the trained partner (--partner) remarks instead, with that stance
  :swap [PATH]             side by side with a second checkpoint (default --vs): it answers the
                           same question and hears the same remarks; :swap again for one column
  :new [N | question]      a random test question, test question N, or a question of your own
  :help    :quit (or Ctrl-D)"""


class Table:
    """One question discussed by one or two learners. Each hears the same moves, replayed for it:
    ("say", text) a remark as typed, ("agree", None), or ("partner", stance)."""

    def __init__(self, task, tests, args):
        self.task, self.tests, self.args, self.rng = task, tests, args, random.Random(args.seed)
        self.load = functools.cache(lambda path: load_model(path, args.device))
        self.learners = [self.learner(path) for path in (args.ckpt, args.vs) if path]
        self.partner, self.ex, self.moves, self.trs = None, None, [], []

    def speaker(self, path, temperature):
        model, tok, remarks = self.load(path)
        return Speaker(model, tok, self.args.max_turn_tokens, temperature, remarks=remarks)

    def learner(self, path):
        """(name, Speaker): 'sft' for out/sft/ckpt.pt, 'arith-warmup' for the shipped warm-up."""
        return method_name(path), self.speaker(path, self.args.temperature)

    def act_on(self, line):
        """Do what one typed line says: a command, or a remark for the learners. False on :quit."""
        command, _, rest = line.partition(" ")
        rest = rest.strip()
        if command in (":quit", ":q"):
            return False
        if command == ":help":
            print(HELP)
        elif command == ":new":
            self.start(rest)
        elif command == ":partner" and rest not in STANCES:
            print("which stance? :partner support, or :partner oppose")
        elif command == ":partner":
            self.partner = self.speaker(self.args.partner, self.args.partner_temperature)
            if partner_mode(self.partner.tok, self.partner.remarks) != "reflect":
                self.hear(("partner", rest))
            else:
                print(f"{self.args.partner} never learned to remark (no 'remarks' in its "
                      f"checkpoint) and cannot follow instructions: pick another --partner")
        elif command == ":swap":
            self.swap(rest)
        elif command.startswith(":"):
            print(f"no command {command}; :help lists them")
        elif line.lower() == "agree":
            self.hear(("agree", None))
        elif line:
            self.note_unseen(text := typed_remark(line))
            self.hear(("say", text))
        return True

    def start(self, which=""):
        """Start on a random test question, test question N, or a question the student typed."""
        if which.isdecimal() and int(which) >= len(self.tests):
            print(f"the test split has questions 0 to {len(self.tests) - 1}")
            return
        if which.isdecimal():
            self.ex = self.tests[int(which)]
        elif which:
            self.note_unseen(which)
            self.ex = data.Example(which, rationale="", answer="", id="(yours)")
        else:
            self.ex = self.rng.choice(self.tests)
        gold = f"  (gold answer: {self.ex.answer})" if self.ex.answer else ""
        print(f"\nQuestion {self.ex.id}: {self.ex.question}{gold}")
        self.moves, self.trs = [], []
        self.catch_up()
        self.show(0)

    def hear(self, move):
        """Every learner hears one more remark, then answers again."""
        self.moves.append(move)
        self.catch_up()
        self.show(len(self.trs[0].turns) - 2, typed=move[0] == "say")

    def catch_up(self):
        """Each learner hears the moves it has not heard, answering after each; a learner new to the
        question answers it first (so one put beside another hears the discussion replayed)."""
        for _, speaker in self.learners[len(self.trs):]:
            self.trs.append(Transcript(self.ex.question, self.ex.answer, id=self.ex.id))
            self.answer(self.trs[-1], speaker)
        for (_, speaker), tr in zip(self.learners, self.trs):
            for kind, arg in self.moves[len(tr.turns) // 2:]:  # turns: an answer, then pairs
                if kind == "partner":
                    tr.stance = arg
                    seed = self.args.seed + len(tr.turns)
                    add_turns([tr], self.partner, "partner", self.task, seed)
                else:
                    text = f"{OPENER['support']} {tr.turns[-1].text}" if kind == "agree" else arg
                    tr.turns.append(Turn("partner", text, self.task.extract(text)))
                self.answer(tr, speaker)

    def answer(self, tr, speaker):
        room = speaker.model.config.block_size - speaker.max_new_tokens
        if len(encode(speaker.tok, render(speaker.tok, tr, "learner"))) > room:
            print(f"note: the discussion is longer than the learner's context ({room} tokens): it "
                  f"sees only the end of it, maybe not the question. :new starts over")
        add_turns([tr], speaker, "learner", self.task, seed=self.args.seed + len(tr.turns))

    def swap(self, path):
        """Put a second learner (path, else --vs) beside the first; with neither, back to one."""
        if not path and len(self.learners) == 2:
            del self.learners[1:], self.trs[1:]
            print(f"back to one learner: {self.learners[0][0]}")
        elif path or self.args.vs:
            self.learners[1:] = [self.learner(path or self.args.vs)]
            del self.trs[1:]
            self.catch_up()
            self.show(0)
        else:
            print("beside which checkpoint? :swap PATH (or start with --vs PATH)")

    def note_unseen(self, text):
        for name, speaker in self.learners:
            if unseen := unseen_words(speaker.tok, text):
                print(f"note: {name} has no token for {', '.join(unseen)}: it reads them as raw "
                      f"bytes it never saw in training")

    def show(self, start, typed=False):
        """Turns from `start` on, a column per learner; a remark you typed is not repeated."""
        blocks = [[] for _ in self.trs]
        for tr, lines in zip(self.trs, blocks):
            for i, t in enumerate(tr.turns[start:], start):
                if t.speaker == "learner":
                    lines += labelled("learner: ", t.text) + [self.verdict(tr.turns, i)]
                elif not typed:
                    lines += labelled("partner: ", t.text)
        if len(blocks) == 1:
            print("\n".join(blocks[0]))
            return
        width = max(30, (shutil.get_terminal_size().columns - 3) // 2)
        columns = [[w for line in [f"[{name}]"] + block for w in textwrap.wrap(line, width) or [""]]
                   for (name, _), block in zip(self.learners, blocks)]
        for left, right in itertools.zip_longest(*columns, fillvalue=""):
            print(f"{left:<{width}} | {right}".rstrip())

    def verdict(self, turns, i):
        """'=> 34: right; changed its mind (35 -> 34)': learner turn i against the gold answer and
        the learner's answer before it."""
        answer = turns[i].answer
        if answer is None:
            said = "=> no final answer"
        elif not self.ex.answer:
            said = f"=> {answer} (no gold answer to check it against)"
        else:
            right = self.task.is_correct(turns[i].text, self.ex)
            said = f"=> {answer}: {'right' if right else 'wrong'}"
        if i > 0:
            before = turns[i - 2].answer
            said += ("; kept its answer" if answer == before else
                     f"; changed its mind ({before} -> {answer})")
        return said


def labelled(label, text):
    lines = text.splitlines() or [""]
    return [label + lines[0]] + [" " * len(label) + line for line in lines[1:]]


def unseen_words(tok, text):
    """Words of text the arith tokenizer has no token for: they reach the model as raw bytes it
    never saw in training. (Tokenizers of pretrained models cover all text.)"""
    if tok.name != "arith":
        return []
    parts = re.compile(r"[A-Za-z]+|\d+|#+|[^A-Za-z\d#]")  # as the tokenizer splits a word
    return [w for w in text.split() if any(len(tok.encode(" " + p)) > 1 for p in parts.findall(w))]


def typed_remark(line):
    """The remark a typed line stands for, written as the trained remarks are: a step per line (a
    typed \\n), the answer on a line of its own. 'disagree 5' is "I disagree." and "#### 5"."""
    if m := re.fullmatch(r"disagree(?:\s+(\S+))?", line, re.IGNORECASE):
        return OPENER["oppose"] + (f"\n#### {m[1]}" if m[1] else "")
    return re.sub(r"\s*####\s*", "\n#### ", line.replace("\\n", "\n"))


def read_line(prompt):
    """A line typed at the terminal or read from a pipe (echoed, as a terminal shows it), stripped;
    None at the end of the input (Ctrl-D)."""
    try:
        line = input(prompt)
    except EOFError:
        print()
        return None
    if not sys.stdin.isatty():
        print(line)
    return line.strip()


def main(argv=None):
    warmup = os.path.join(os.path.dirname(__file__), "assets", "arith-warmup.pt")
    p = argparse.ArgumentParser(description="Play the partner: you remark, the learner reacts.",
                                epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=warmup, help="the learner (default: assets/arith-warmup.pt)")
    p.add_argument("--vs", help="a second learner, side by side (out/sft/... beside out/saie/...)")
    p.add_argument("--partner", default=warmup, help="who remarks on :partner (default: the "
                   "shipped warm-up, the partner of saie.py's default run)")
    p.add_argument("--task", default="arith", choices=data.TASKS)
    p.add_argument("--data-dir", help="the task's local files (else downloaded)")
    p.add_argument("--question", type=int, help="start on test question N (default: a random one)")
    p.add_argument("--max-turn-tokens", type=int, help="longest turn (24 on arith, else 256)")
    p.add_argument("--temperature", type=float, default=0.0, help="learner sampling (0: greedy)")
    p.add_argument("--partner-temperature", type=float, default=1.0,
                   help="partner sampling (default as in saie.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    task = data.get_task(args.task)
    args.max_turn_tokens = args.max_turn_tokens or task.turn_tokens
    tests = task.load(task.splits[-1], args.data_dir)
    if args.question is not None and not 0 <= args.question < len(tests):
        p.error(f"--question: the {task.name} test split has questions 0 to {len(tests) - 1}")
    table = Table(task, tests, args)
    sys.stdin.reconfigure(errors="replace")  # a non-UTF-8 byte becomes a character, not a crash
    if sys.stdin.isatty():
        import readline  # noqa: F401 (line editing and history for input())
    shown = [os.path.relpath(path) for path in (args.ckpt, args.vs) if path]
    print(f"learner: {' beside '.join(shown)}\n{HELP}")
    table.start("" if args.question is None else str(args.question))
    # Ctrl-C anywhere ends the session through data.cli: exit status 130, no traceback.
    while (line := read_line("you> ")) is not None:
        try:
            if not table.act_on(line):
                break
        except data.DataError as e:  # a bad :swap path (WeightsError is one) ends nothing
            print(f"error: {e}")


if __name__ == "__main__":
    data.cli(main, "discuss.py")
