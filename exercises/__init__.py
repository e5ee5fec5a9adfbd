"""Classroom exercises (docs/exercises.md). One module per exercise: fill in the functions that
raise NotImplementedError; `python -m pytest tests/exercises -k <name>` checks them (skipped until
then). Nothing here changes the five main modules: each exercise runs them with one piece swapped
(see harness.py)."""
