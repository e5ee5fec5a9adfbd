"""model.py (work in progress)."""
