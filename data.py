"""data.py (work in progress)."""
