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
- the Llama 3 chat template, for instruct models (the partner is told its stance
  in a system message: the "prompted" mode, the paper's setting).

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
# Prompts for instruction-following models (chat mode).
LEARNER_SYSTEM = "Solve the problem step by step. End with a final line '#### <answer>'."
PARTNER_SYSTEM = {
    "support": "You are discussing a problem with a student. Agree with the student's latest answer "
               "and justify it step by step. Begin with 'I agree.' and end with a final line '#### <answer>'.",
    "oppose": "You are discussing a problem with a student. Argue against the student's latest answer: "
              "show step by step why a different answer is right. Begin with 'I disagree.' and end with "
              "a final line '#### <answer>'.",
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

    def answers(self, speaker):
        return [t.answer for t in self.turns if t.speaker == speaker]

    def to_json(self, **extra):
        return json.dumps({**extra, **asdict(self)})

    @classmethod
    def from_json(cls, line):
        d = json.loads(line)
        d = {k: d[k] for k in ("question", "gold", "stance", "id", "turns")}
        d["turns"] = [Turn(**t) for t in d["turns"]]
        return cls(**d)


def stances_for(n, mode, rng):
    """The partner's stance for each of n questions: 'both' mixes them 50/50 with rng."""
    if mode == "both":
        return [rng.choice(STANCES) for _ in range(n)]
    if mode not in STANCES:
        raise ValueError(f"unknown stance {mode!r}: expected both, support or oppose")
    return [mode] * n


# -----------------------------------------------------------------------------
# Rendering: what a role sees before its turn, as segments (text, or token ids for
# special tokens) that data.make_batch and encode() understand.

def render(tok, tr, role):
    """The transcript as `role` ("learner" or "partner") sees it, ending where its next turn starts."""
    return _render_chat(tok, tr, role) if tok.chat else _render_plain(tok, tr, role)


def _render_plain(tok, tr, role):
    segs = [f"Question: {tr.question}\n"]
    for t in tr.turns:
        segs += [f"{'Answer' if t.speaker == 'learner' else 'Partner'}: {t.text}", [tok.eot], "\n"]
    # The partner's opener is forced: the stance is given, the derivation is the model's own.
    segs.append("Answer:" if role == "learner" else f"Partner: {OPENER[tr.stance]}")
    return segs


def _render_chat(tok, tr, role):
    def message(who, text):
        return [[tok.special("<|start_header_id|>")], who, [tok.special("<|end_header_id|>")],
                "\n\n" + text, [tok.special("<|eot_id|>")]]

    segs = [[tok.bos]]
    if role == "learner":   # own turns are the assistant's, remarks come from the user
        segs += message("system", LEARNER_SYSTEM) + message("user", tr.question)
        for t in tr.turns:
            segs += (message("assistant", t.text) if t.speaker == "learner" else
                     message("user", f"My partner says: {t.text}\n\nAnswer the question again."))
        prefill = ""
    else:                   # learner turns come from the user, own remarks are the assistant's
        segs += message("system", PARTNER_SYSTEM[tr.stance]) + message("user", f"Question: {tr.question}")
        for t in tr.turns:
            segs += (message("user", f"The student answers: {t.text}") if t.speaker == "learner" else
                     message("assistant", t.text))
        prefill = OPENER[tr.stance]
    return segs + [[tok.special("<|start_header_id|>")], "assistant",
                   [tok.special("<|end_header_id|>")], "\n\n" + prefill]


def turn_segments(tok, text):
    """A turn's own tokens, as they follow render(): plain turns start after 'Answer:' with a space."""
    return [(text if tok.chat else " " + text, True), ([tok.eot], True)]


def encode(tok, segments):
    """Token ids of render()'s segments."""
    return [i for s in segments for i in data.encode_part(tok, s)]


# -----------------------------------------------------------------------------
# Speaking: one batched generate call for all transcripts of a round.

class Speaker:
    """One side of the discussion: a model, its tokenizer, and how it samples a turn."""

    def __init__(self, model, tok, max_new_tokens=256, temperature=0.0, top_p=None):
        self.model, self.tok = model, tok
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
        tr.turns.append(Turn(role, text, task.extract(text), tr.stance if role == "partner" else None))


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


def remark_sequences(tok, task, examples, rng):
    """Teach a base partner the remark format (the 'trained' partner mode).

    The learner's answer is the gold one or a plausible wrong one; `support` restates
    the derivation that reaches the learner's answer, `oppose` gives one that reaches
    another answer: the gold one when the learner was wrong, a slipped one when it was right.
    """
    seqs = []
    for ex in examples:
        right = rng.random() < 0.5
        answer = task.target(ex) if right else task.wrong_target(ex, rng)
        stance = rng.choice(STANCES)
        remark = answer if stance == "support" else (task.wrong_target(ex, rng) if right else task.target(ex))
        tr = Transcript(ex.question, ex.answer, stance, ex.id, [Turn("learner", answer)])
        seqs.append([(s, False) for s in render(tok, tr, "partner")] + turn_segments(tok, remark))
    return seqs


def stance_alignment(transcripts):
    """Share of remarks that carry their stance: support = same answer as the learner's, oppose = another."""
    hits = n = 0
    for tr in transcripts:
        for prev, t in zip(tr.turns, tr.turns[1:]):
            if t.speaker == "partner" and prev.speaker == "learner":
                n += 1
                same = t.answer is not None and t.answer == prev.answer
                hits += same if t.stance == "support" else (t.answer is not None and not same)
    return hits / max(n, 1)
