"""SPOILERS. A pytest plugin: `python -m pytest -p tests.spoilers.plugin tests/exercises` runs the exercise
checks with reference.py's solutions in place of the stubs; SPOILERS="exercise:variant,..." swaps in the
named wrong versions of wrong.py on top. Only the imported modules change, never a file in exercises/."""
import importlib
import os
import types

from tests.spoilers import reference, wrong

FUNCTIONS = {"min_p": ["min_p_filter"], "own_turns": ["verified", "own_turn_sequences"],
             "every_round": ["round_sequences"],
             "question_stance": ["question_remark", "remark_sequences", "stance_alignment"],
             "cheap_schedule": ["cheap_batches"], "ema_partner": ["ema_update"], "qwen2": ["load_qwen2"]}


def _names(code):
    yield from code.co_names
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _names(c)


def install(module, name, fn):
    """module.name = fn, as if fn were written in module: the names it uses resolve there (a solution's
    own_turn_sequences calls the module's `verified`), and those the module lacks (fn's imports) are added."""
    home = importlib.import_module(fn.__module__)
    for n in set(_names(fn.__code__)):
        if not hasattr(module, n) and hasattr(home, n):
            setattr(module, n, getattr(home, n))
    if not hasattr(fn, "__wrapped__"):  # a decorated function (torch.no_grad) keeps its wrapper's globals
        fn = types.FunctionType(fn.__code__, vars(module), name, fn.__defaults__, fn.__closure__)
    setattr(module, name, fn)


def pytest_configure(config):
    variants = dict(v.split(":") for v in os.environ.get("SPOILERS", "").split(",") if v)
    for exercise, names in FUNCTIONS.items():
        module = importlib.import_module(f"exercises.{exercise}")
        for name in names:
            install(module, name, getattr(reference, name))
        if exercise in variants:
            (patches,) = [p for v, p, _ in wrong.VARIANTS[exercise] if v == variants[exercise]]
            for name, fn in patches.items():
                install(module, name, fn)
