"""Benchmark of migrate-job: `python bench/run.py` (see bench/run.py)."""
