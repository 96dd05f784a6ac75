"""Benchmarks of the hot paths and the pipeline: `python -m benchmarks`."""
