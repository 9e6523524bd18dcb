"""Benchmarks, run as modules: ``python -m sauron.bench.<name> --help``."""
