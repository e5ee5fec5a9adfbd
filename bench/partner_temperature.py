"""
How often the partner's remarks carry their stance, by the partner's sampling temperature.

A greedy partner told to oppose a *right* answer tends to restate the right derivation: its
slips are spread over many wrong values, so none of them wins the argmax. Sampling lets
them through. This is why saie.py samples arith's remarks at --partner-temperature 1.0. Measured on
validation questions: a setting is chosen there, never on test.

    python bench/partner_temperature.py                                  # the shipped arith warm-up
    python bench/partner_temperature.py --model out/saie/ckpt.pt --n 300
"""
import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import data
import discuss
from model import GPT
from data import cli


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(Path(__file__).resolve().parent.parent / "assets" / "arith-warmup.pt"))
    p.add_argument("--task", default="arith")
    p.add_argument("--n", type=int, default=200, help="validation questions")
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.0, 0.7, 1.0])
    args = p.parse_args()
    model = GPT.from_pretrained(args.model)
    tok, task = data.get_tokenizer(model.tokenizer_spec), data.get_task(args.task)
    examples = data.load_splits(task)["validation"][: args.n]
    stances = discuss.stances_for(len(examples), "both", random.Random(0))
    learner = discuss.Speaker(model, tok, 40, temperature=0.7)  # as in training
    print(f"{args.model}: {len(examples)} validation questions, learner at temperature 0.7")
    for t in args.temperatures:
        partner = discuss.Speaker(model, tok, 40, temperature=t)
        trs = discuss.discuss(learner, partner, task, examples, stances, rounds=1, seed=1)
        by = {s: discuss.stance_alignment([tr for tr in trs if tr.stance == s]) for s in discuss.STANCES}
        right = sum(task.is_correct(tr.turns[1].text, ex) for tr, ex in zip(trs, examples)) / len(examples)
        print(f"partner temperature {t:.1f}: aligned {discuss.stance_alignment(trs):.0%} "
              f"(support {by['support']:.0%}, oppose {by['oppose']:.0%}); remark's answer right {right:.0%}")


if __name__ == "__main__":
    cli(main, "bench/partner_temperature.py")
