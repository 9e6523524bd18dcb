"""``sauron bench pipeline``: the seed's scaling study, reproduced and beaten, in one run.

    sauron bench pipeline [--workers 1,2] [--out DIR] [--bootstrap HOST:PORT] [--quick]

One run, on one machine, with one workload (``--workload realistic``, the default: faces
walking over real footage, see :mod:`sauron_bench.realistic`; ``light``: a generated scene
with 1-3 persistent faces, see :mod:`sauron_bench.workload`), measures:

1. the floor: the frames through a bare single-process loop (decode, detect, embed,
   match), with tracking and with per-frame embedding (and the same with dlib's embedder),
   scored against the ground truth, and the bare face_recognition-style baseline loop;
2. throughput (frames as fast as they are taken) of the Kafka pipeline over a real broker
   and of the embedded bus, with 1..cores detect workers, and the per-frame mode (frame
   partitioning, no tracking) over Kafka;
3. the seed's way as a baseline over the same broker (base64 JSON of raw pixels, flush and
   commit after every message);
4. latency from capture to annotated frame available, with cameras paced like live ones
   at a fixed offered load of ``--load`` (80 %) of the measured capacity of the most
   workers, for every worker count (fewer workers: overload) through Kafka, and through
   the embedded bus with its drop-oldest policy at the same load on one worker.

It prints a table, writes ``pipeline.json`` and ``pipeline.png`` (latency box plot against the
number of workers, like the seed's figure, and throughput) into ``--out``. Without
``--bootstrap`` it starts (and stops) its own broker with ``scripts/kafka-broker``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sauron_bench.measure import allowed_cores
from sauron_bench.pipeline_runs import Bench
from sauron_bench.report import assemble, render


def _workers(text: str) -> list[int]:
    try:
        out = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected worker counts like 1,2,4, got {text!r}"
        ) from None
    if not out or out[0] < 1:
        raise argparse.ArgumentTypeError("worker counts must be >= 1")
    return out


def build_parser() -> argparse.ArgumentParser:
    cores = len(allowed_cores())
    p = argparse.ArgumentParser(
        prog="sauron bench pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=list(range(1, cores + 1)),
        help=f"detect worker counts to measure (default 1..{cores}, the cores)",
    )
    p.add_argument(
        "--cameras",
        type=int,
        default=max(4, 2 * cores),
        help="cameras of the throughput runs (one partition each)",
    )
    p.add_argument("--embedder", default="auto", choices=["auto", "onnx", "dlib"])
    p.add_argument("--bootstrap", help="use this Kafka broker instead of starting one")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("sauron-bench"),
        help="folder for pipeline.json and pipeline.png (default ./sauron-bench)",
    )
    p.add_argument("--seconds", type=float, default=6.0, help="length of a throughput run")
    p.add_argument(
        "--paced-seconds", type=float, default=12.0, help="length of a paced (latency) run"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="paced runs: latency percentiles of the frames captured after the first this "
        "many seconds (the first seconds are reported apart)",
    )
    p.add_argument("--camera-fps", type=float, default=10.0, help="rate of a paced camera")
    p.add_argument(
        "--load",
        type=float,
        default=0.8,
        help="offered load of the paced runs, as a share of measured capacity",
    )
    p.add_argument(
        "--warm-broker",
        type=float,
        default=10.0,
        help="seconds of traffic through the broker before the first Kafka run (0 = none)",
    )
    p.add_argument(
        "--overload",
        type=float,
        default=1.5,
        help="offered load of the overload runs, as a share of one worker's capacity "
        "(0 = skip them)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="detect.batch_size of the Kafka workers (default: the configured default)",
    )
    p.add_argument(
        "--max-frame-age",
        type=float,
        default=0.5,
        help="detect.max_frame_age_s of the overloaded Kafka run (0 = skip it)",
    )
    p.add_argument(
        "--floor-frames",
        type=int,
        default=None,
        help="floor frames per camera (default: a whole realistic clip, 60 light)",
    )
    p.add_argument(
        "--dlib-frames", type=int, default=15, help="floor frames per camera with dlib's embedder"
    )
    p.add_argument(
        "--workload",
        choices=["realistic", "light"],
        default="realistic",
        help="realistic: faces over real footage (see sauron_bench.realistic); light: the "
        "generated scene of sauron_bench.workload",
    )
    p.add_argument(
        "--clips", type=int, default=None, help="distinct clips (default: 3 realistic, 4 light)"
    )
    p.add_argument(
        "--clip-frames",
        type=int,
        default=None,
        help="frames of each clip (default: 300 realistic, 60 light)",
    )
    p.add_argument(
        "--baseline-frames",
        type=int,
        default=20,
        help="frames per camera of the bare face_recognition-style loop (HOG upsample 1, "
        "dlib embedding of every face, one core); 0 = skip it",
    )
    p.add_argument(
        "--min-frames", type=int, default=20, help="least frames per camera of a throughput run"
    )
    p.add_argument(
        "--no-kafka",
        dest="kafka",
        action="store_false",
        help="skip every run over Kafka (and the seed baseline)",
    )
    p.add_argument(
        "--no-embedded", dest="embedded", action="store_false", help="skip the embedded-bus runs"
    )
    p.add_argument("--no-seed", dest="seed", action="store_false", help="skip the seed")
    p.add_argument(
        "--no-separate-match",
        dest="separate_match",
        action="store_false",
        help="skip the Kafka runs with a match worker of its own (match.in_detect off)",
    )
    p.add_argument(
        "--no-dlib",
        dest="dlib",
        action="store_false",
        help="skip the floor runs with dlib's embedder",
    )
    p.add_argument(
        "--no-per-frame",
        dest="per_frame",
        action="store_false",
        help="skip the per-frame (frame partitioning) Kafka run",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke-size run (seconds): tiny workload, 1 worker, short runs",
    )
    return p


def _quick(args: argparse.Namespace) -> None:
    args.workers = [1]
    args.cameras = 2
    args.clips, args.clip_frames = 2, 12
    args.baseline_frames = 2
    args.seconds, args.paced_seconds, args.warmup = 1.0, 3.0, 1.0
    args.floor_frames, args.dlib_frames, args.min_frames = 8, 3, 8
    args.per_frame = False
    args.overload = 0.0
    args.warm_broker = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        _quick(args)
    realistic = args.workload == "realistic"
    args.clips = args.clips or (3 if realistic else 4)
    args.clip_frames = args.clip_frames or (300 if realistic else 60)
    args.floor_frames = args.floor_frames or (args.clip_frames - 5 if realistic else 60)
    if not 0 < args.load <= 3 or args.cameras < 1 or args.seconds <= 0:
        parser.error("--load must be in (0, 3], --cameras >= 1, --seconds > 0")
    bench = Bench(args)
    bench.run()
    result = assemble(bench)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(render(result, args.out / "pipeline.png"))
    print(f"wrote {args.out / 'pipeline.json'} and {args.out / 'pipeline.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
