"""Sauron's benchmarks: ``sauron bench NAME`` (see :mod:`sauron_bench.commands`), or a
module run as ``python -m sauron_bench.<name> --help``."""
