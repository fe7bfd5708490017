"""Benchmarks of siku against baselines measured in the same run: `python -m tests.bench`."""
