"""Sift trainer: `python -m trainer --manifest PATH --config PATH --out RUN_DIR` (see trainer/main.py)."""
