"""saie.py (work in progress)."""
