"""discuss.py (work in progress)."""
