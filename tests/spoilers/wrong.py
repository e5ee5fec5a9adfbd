"""SPOILERS: plausible wrong solutions, the mistakes a student could make, each with the checks that
must catch it. VARIANTS[exercise] = [(name, {function: wrong version}, [checks that must fail]), ...];
the exercise's other functions stay the reference ones (reference.py)."""
import itertools
import random

import torch

import data
import discuss
import saie
from tests.spoilers import reference

# -----------------------------------------------------------------------------
# 1. min_p


def min_p_absolute(logits, min_p):
    """Keeps p >= min_p, forgetting 'times the most probable token's'."""
    probs = logits.float().softmax(-1)
    return logits.masked_fill(probs < min_p, float("-inf"))


def min_p_in_place(logits, min_p):
    """Right tokens, but writes -inf into the caller's tensor."""
    probs = logits.float().softmax(-1)
    logits[probs < min_p * probs.max(-1, keepdim=True).values] = float("-inf")
    return logits

def min_p_half_written(logits, min_p):
    """Started, then left with the stub's raise at the end: a failure, not a skip."""
    probs = logits.float().softmax(-1)
    threshold = min_p * probs.max(-1, keepdim=True).values
    raise NotImplementedError(f"exercise 1: mask probs below the threshold, shape {tuple(threshold.shape)}")

# -----------------------------------------------------------------------------
# 2. own_turns


def verified_answer_only(task, ex, text):
    """Trusts the final number: right answers with false steps pass."""
    return bool(task.is_correct(text, ex))


def own_turns_in_discussion(tok, task, transcripts, examples):
    """The learner's own first turn as target, but after the whole discussion instead of the question."""
    return [discuss.learner_sequence(tok, tr, tr.turns[0].text) for tr, ex in zip(transcripts, examples)
            if reference.verified(task, ex, tr.turns[0].text)]

# -----------------------------------------------------------------------------
# 3. every_round


def rounds_without_the_last(tok, tr, target):
    """range(R) instead of range(R + 1): the sequence after the whole discussion is missing."""
    return [discuss.learner_sequence(tok, discuss.Transcript(tr.question, tr.gold, tr.stance, tr.id,
                                                             tr.turns[: 2 * k]), target)
            for k in range(len(tr.turns) // 2)]


def rounds_own_turn_as_target(tok, tr, target):
    """After round k, trains the learner's own answer of round k instead of the gold one."""
    return [discuss.learner_sequence(tok, discuss.Transcript(tr.question, tr.gold, tr.stance, tr.id,
                                                             tr.turns[: 2 * k]),
                                     target if k == 0 else tr.turns[2 * k - 2].text)
            for k in range(len(tr.turns) // 2 + 1)]

# -----------------------------------------------------------------------------
# 4. question_stance


def question_quotes_every_step(learner_text, rng):
    """Ignores rng and quotes every step."""
    steps = [m.group(0) for m in data.STEP.finditer(learner_text)]
    return f"Is {' and '.join(steps)} right ?" if steps else "How did you get that ?"


def question_global_random(learner_text, rng):
    """Picks the step with the random module instead of the rng it was given."""
    steps = [m.group(0) for m in data.STEP.finditer(learner_text)]
    return f"Is {random.choice(steps)} right ?" if steps else "How did you get that ?"


def remarks_opener_in_target(tok, task, examples, rng):
    """The forced opener trained as part of the remark."""
    seqs = []
    for seq in reference.remark_sequences(tok, task, examples, rng):
        context, target = [s for s, t in seq if not t], [s for s, t in seq if t]
        opener = context[-1].removeprefix("Partner: ")
        seqs.append([(s, False) for s in context[:-1]] + [("Partner:", False), (" " + opener + target[0], True),
                                                          (target[1], True)])
    return seqs


def alignment_any_question(transcripts):
    """Counts every question remark as aligned, answers and missing '?' included."""
    hits = n = 0
    for tr in transcripts:
        for prev, t in zip(tr.turns, tr.turns[1:]):
            if t.speaker == "partner" and prev.speaker == "learner":
                n += 1
                same = t.answer is not None and t.answer == prev.answer
                hits += True if t.stance == "question" else same if t.stance == "support" else (
                    t.answer is not None and not same)
    return hits / max(n, 1)

# -----------------------------------------------------------------------------
# 5. cheap_schedule


def cheap_restarts_on_resume(learner, partner, tok, task, examples, args, rank, world, start, transcripts_path,
                             every):
    """Counts batches from `start` when resuming, so the schedule shifts."""
    for i in itertools.count(start):
        if (i - start) % every == 0:
            yield next(saie.saie_batches(learner, partner, tok, task, examples, args, rank, world, i,
                                         transcripts_path))
        else:
            yield next(saie.sft_batches(tok, task, examples, args, rank, world, i, False))


def cheap_discusses_then_discards(learner, partner, tok, task, examples, args, rank, world, start,
                                  transcripts_path, every):
    """Right batches, but every batch still pays for (and logs) a discussion."""
    discussed = saie.saie_batches(learner, partner, tok, task, examples, args, rank, world, start,
                                  transcripts_path)
    plain = saie.sft_batches(tok, task, examples, args, rank, world, start, False)
    for i, d, p in zip(itertools.count(start), discussed, plain):
        yield d if i % every == 0 else p


def cheap_equal_weights(learner, partner, tok, task, examples, args, rank, world, start, transcripts_path, every):
    """Right rows, but every row at weight 1: --plain-weight lost in discussion batches."""
    for seqs, weights, stats in reference.cheap_batches(learner, partner, tok, task, examples, args, rank, world,
                                                        start, transcripts_path, every):
        yield seqs, [1.0] * len(seqs), stats

# -----------------------------------------------------------------------------
# 6. ema_partner


@torch.no_grad()
def ema_swapped(partner, learner, decay):
    """decay weighs the learner instead of the partner."""
    for p, q in zip(partner.parameters(), learner.parameters()):
        p.mul_(1 - decay).add_(q, alpha=decay)


@torch.no_grad()
def ema_state_dict_twice(partner, learner, decay):
    """Walks state_dict(): a tied tensor is listed twice and moved twice."""
    ls = learner.state_dict()
    for k, p in partner.state_dict().items():
        p.mul_(decay).add_(ls[k], alpha=1 - decay)

# -----------------------------------------------------------------------------
# 7. qwen2


def qwen2_without_bias(path, dtype=torch.float32):
    """Loads it as plain Llama: the q/k/v biases are dropped."""
    model = reference.load_qwen2(path, dtype)
    for block in model.h:
        block.attn.c_attn.bias = None
    return model


VARIANTS = {
    "min_p": [
        ("absolute", {"min_p_filter": min_p_absolute},
         ["test_min_p_keeps_exactly_the_tokens_above_the_threshold", "test_min_p_edges",
          "test_min_p_sampling_only_draws_kept_tokens"]),
        ("in_place", {"min_p_filter": min_p_in_place}, ["test_min_p_keeps_exactly_the_tokens_above_the_threshold"]),
        ("half_written", {"min_p_filter": min_p_half_written},
         ["test_min_p_keeps_exactly_the_tokens_above_the_threshold", "test_min_p_edges",
          "test_min_p_sampling_only_draws_kept_tokens"]),
    ],
    "own_turns": [
        ("answer_only", {"verified": verified_answer_only},
         ["test_verified", "test_own_turn_sequences_are_masked_like_answer_sequence"]),
        ("in_discussion", {"own_turn_sequences": own_turns_in_discussion},
         ["test_own_turn_sequences_are_masked_like_answer_sequence"]),
    ],
    "every_round": [
        ("without_last", {"round_sequences": rounds_without_the_last},
         ["test_one_sequence_per_round", "test_every_sequence_is_masked_to_the_gold_turn"]),
        ("own_turn_target", {"round_sequences": rounds_own_turn_as_target},
         ["test_one_sequence_per_round", "test_every_sequence_is_masked_to_the_gold_turn"]),
    ],
    "question_stance": [
        ("quotes_every_step", {"question_remark": question_quotes_every_step},
         ["test_question_remark_quotes_a_step"]),
        ("global_random", {"question_remark": question_global_random}, ["test_question_remark_quotes_a_step"]),
        ("opener_in_target", {"remark_sequences": remarks_opener_in_target},
         ["test_three_stance_remark_sequences_are_masked"]),
        ("any_question", {"stance_alignment": alignment_any_question}, ["test_alignment_with_three_stances"]),
    ],
    "cheap_schedule": [
        ("restarts_on_resume", {"cheap_batches": cheap_restarts_on_resume},
         ["test_every_1_is_saie_and_resume_continues_the_schedule"]),
        ("discusses_then_discards", {"cheap_batches": cheap_discusses_then_discards},
         ["test_discusses_every_kth_batch_only", "test_transcripts_are_written_for_discussion_batches_only"]),
        ("equal_weights", {"cheap_batches": cheap_equal_weights},
         ["test_discusses_every_kth_batch_only", "test_every_1_is_saie_and_resume_continues_the_schedule"]),
    ],
    "ema_partner": [
        ("swapped", {"ema_update": ema_swapped}, ["test_ema_formula", "test_ema_edges"]),
        ("state_dict_twice", {"ema_update": ema_state_dict_twice},
         ["test_ema_formula", "test_ema_partner_follows_each_saie_step_only"]),
    ],
    "qwen2": [
        ("without_bias", {"load_qwen2": qwen2_without_bias},
         ["test_qwen2_matches_transformers[True]", "test_qwen2_matches_transformers[False]"]),
    ],
}
