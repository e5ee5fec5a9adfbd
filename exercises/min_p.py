"""Exercise 1: min-p sampling (docs/exercises.md#1-min_p).

Top-p keeps the most probable tokens until their mass reaches p; min-p keeps every token whose
probability is at least min_p times the most probable one's. A confident distribution then keeps
few tokens, a flat one many. Fill in min_p_filter; min_p_sampling() (given) plugs it into
model.generate, and the command below measures what it does to the partner's remarks:

    python -m exercises.min_p --min-p 0 0.05 0.2
"""
import argparse
import contextlib
import random
from pathlib import Path

import model as M
from data import cli


def min_p_filter(logits, min_p):
    """logits (B, V) -> a new tensor of the same shape and dtype where every token whose probability
    (softmax of its row) is below min_p * (the row's highest probability) is -inf; the others keep their
    logit. min_p = 0 keeps every token. The input is not modified.
    No renormalising step: model._sample takes the softmax of what this returns, which gives a -inf
    logit probability 0 and shares the whole mass among the kept tokens. So return logits, not
    probabilities, and -inf, not 0 (a logit of 0 is an ordinary token)."""
    raise NotImplementedError  # exercise 1


@contextlib.contextmanager
def min_p_sampling(min_p):
    """Inside this block every sampled generate call (temperature > 0) applies min_p_filter to the
    temperature-scaled logits first (as Hugging Face orders its logits warpers). Given code."""
    original = M._sample

    def sample(logits, temperature, top_k, top_p, gen):
        if temperature == 0:
            return original(logits, temperature, top_k, top_p, gen)
        return original(min_p_filter(logits.float() / temperature, min_p), 1.0, top_k, top_p, gen)

    M._sample = sample  # generate looks _sample up in model.py at every step
    try:
        yield
    finally:
        M._sample = original


def main(argv=None):
    import data
    import discuss
    from model import GPT
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(root / "assets" / "arith-warmup.pt"))
    p.add_argument("--n", type=int, default=200, help="test questions")
    p.add_argument("--temperature", type=float, default=1.0, help="the partner's (as saie.py's default)")
    p.add_argument("--min-p", type=float, nargs="+", default=[0.0, 0.05, 0.2])
    args = p.parse_args(argv)
    model = GPT.from_pretrained(args.model)
    tok, task = data.get_tokenizer(model.tokenizer_spec), data.get_task("arith")
    examples = task.load("test")[: args.n]
    stances = discuss.stances_for(len(examples), "both", random.Random(0))
    learner = discuss.Speaker(model, tok, 40, temperature=0.7)
    partner = discuss.Speaker(model, tok, 40, temperature=args.temperature)
    answers = discuss.discuss(learner, None, task, examples, stances, rounds=1, seed=1)  # the same for every min_p
    for mp in args.min_p:
        trs = [discuss.Transcript(tr.question, tr.gold, tr.stance, tr.id, list(tr.turns)) for tr in answers]
        with min_p_sampling(mp):  # only the partner's remarks are filtered
            discuss.add_turns(trs, partner, "partner", task, seed=2)
        by = {s: discuss.stance_alignment([tr for tr in trs if tr.stance == s]) for s in discuss.STANCES}
        right = sum(task.is_correct(tr.turns[1].text, ex) for tr, ex in zip(trs, examples)) / len(trs)
        parsed = sum(tr.turns[1].answer is not None for tr in trs) / len(trs)
        print(f"min_p {mp:.2f}: aligned {discuss.stance_alignment(trs):.0%} (support {by['support']:.0%}, "
              f"oppose {by['oppose']:.0%}); remark right {right:.0%}; remark parses {parsed:.0%}")


if __name__ == "__main__":
    cli(main, "exercises.min_p")
