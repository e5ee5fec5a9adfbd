"""eval.py (work in progress)."""
