"""``sauron bench``: the benchmarks' commands, added to ``sauron`` by this package.

The ``sauron`` command finds this function through the ``sauron.commands`` entry-point
group (see this package's pyproject.toml); the product itself imports nothing of the
benchmarks. Each benchmark is a module with a ``main(argv)``, loaded only when it runs.
"""

from __future__ import annotations

import argparse
import importlib

#: ``sauron bench NAME`` runs ``sauron_bench.<module>.main``.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "detectors": ("detectors", "face detectors on the realistic workload, one core"),
    "embedder": ("embedder", "dlib's ResNet against the same network in ONNX Runtime"),
    "frame-cost": ("frame_cost", "where a detect process's CPU time per frame goes"),
    "pipeline": ("pipeline_command", "the pipeline against the floor and the seed's way"),
    "scale": ("scale", "live cameras over both buses: latency against offered load, the knee"),
    "search": ("search", "query time of the search-by-photo index at a given size"),
    "security": ("security", "the web server under a flood of log-ins and photo uploads"),
    "supervision": ("supervision", "the embedded bus: resume after kill -9, CPU of 3 cameras"),
    "storage": ("storage", "bytes a camera writes to the store a day (database, snapshots, clips)"),
    "startup": ("startup", "`sauron run --bus kafka` from a cold start"),
    "threads": ("threads", "models under threads: shared with a lock, or one set each"),
    "visitors": ("visitors", "visitor grouping purity and completeness, single-shot recall"),
}


def build_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:10} {text}" for name, (_, text) in BENCHMARKS.items())
    parser = argparse.ArgumentParser(
        prog="sauron bench",
        description="Benchmarks (see docs/benchmarks.md); `sauron bench NAME --help` for "
        "the options of one.",
        epilog=f"benchmarks:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("what", choices=sorted(BENCHMARKS), help="the benchmark to run")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="options of that benchmark")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"sauron_bench.{BENCHMARKS[args.what][0]}")
    return int(module.main(args.rest))
