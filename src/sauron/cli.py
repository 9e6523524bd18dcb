"""The ``sauron`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from sauron import SauronError, __version__
from sauron.config import Settings, load_settings
from sauron.logs import redact, setup_logging

log = logging.getLogger("sauron")

#: ``sauron worker --processes N``: seconds a worker has to finish its batch and leave
#: its group after SIGTERM/SIGINT before it is killed.
WORKER_STOP_S = 20.0


def _camera(spec: str) -> dict[str, Any]:
    name, sep, source = spec.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"expected NAME=SOURCE, got {spec!r}")
    return {"name": name, "source": source}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", type=Path, help="YAML configuration file")
    p.add_argument("--bus", choices=["embedded", "kafka"], help="override bus.type")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (implies --bus kafka)")
    p.add_argument("--topic-prefix", help="override topics.prefix")
    p.add_argument("--partitions", type=int, help="override topics.partitions")
    p.add_argument("--partitioning", choices=["camera", "frame"], help="camera or frame")


def _cameras(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--camera",
        action="append",
        type=_camera,
        default=[],
        metavar="NAME=SRC",
        help="a camera (repeatable): video file, image folder, webcam index, URL",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="read files as fast as possible instead of at their own frame rate",
    )
    p.add_argument("--max-width", type=int, help="shrink frames to this width")
    p.add_argument("--max-fps", type=float, help="cap each camera's frame rate")
    p.add_argument("--loop", action="store_true", help="loop files and folders")


def _reliability(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics and /healthz here (0 = off; process i: port + i)",
    )
    p.add_argument(
        "--exactly-once",
        action="store_true",
        help="Kafka transactions: annotated frames, sightings and dead letters exactly once",
    )
    p.add_argument(
        "--max-frame-age",
        type=float,
        help="stay live: drop (and count) frames older than this many seconds",
    )


def _web(p: argparse.ArgumentParser) -> None:
    p.add_argument("--web-host", help="address of the web app (default 127.0.0.1)")
    p.add_argument("--web-port", type=int, help="port of the web app (0 = any free port)")
    p.add_argument("--db", help="store database URL (default: SQLite in store.data_dir)")


#: Options that set one setting when given: (option's attribute, section, key).
_SETTINGS_OPTIONS = (
    ("bus", "bus", "type"),
    ("topic_prefix", "topics", "prefix"),
    ("partitions", "topics", "partitions"),
    ("partitioning", "topics", "partitioning"),
    ("metrics_port", "metrics", "port"),
    ("max_frame_age", "detect", "max_frame_age_s"),
    ("web_host", "web", "host"),
    ("web_port", "web", "port"),
    ("db", "store", "url"),
    ("watchlist", "match", "watchlist"),
    ("tolerance", "match", "tolerance"),
    ("model", "detect", "model"),
    ("embedder", "detect", "embedder"),
    ("upsample", "detect", "upsample"),
)
#: Switches: (option's attribute, section, key, the setting's value when switched on).
_SETTINGS_SWITCHES = (
    ("exactly_once", "bus", "exactly_once", True),
    ("largest", "match", "largest_face", True),
    ("no_tracking", "detect", "tracking", False),
)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            o.setdefault(section, {})[key] = value

    if getattr(args, "bootstrap", None):
        put("bus", "type", "kafka")
        put("bus", "bootstrap_servers", args.bootstrap)
    for attr, section, key in _SETTINGS_OPTIONS:  # --bus, when given, wins over --bootstrap
        put(section, key, getattr(args, attr, None))
    for attr, section, key, value in _SETTINGS_SWITCHES:
        if getattr(args, attr, False):
            put(section, key, value)
    cams = getattr(args, "camera", None)
    if cams:
        extra: dict[str, Any] = {}
        if args.fast:
            extra["realtime"] = False
        if args.max_width is not None:
            extra["max_width"] = args.max_width
        if args.max_fps is not None:
            extra["max_fps"] = args.max_fps
        if args.loop:
            extra["loop"] = True
        o["cameras"] = [{**c, **extra} for c in cams]
    return o


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None), _overrides(args))


def _print_summary(summary: Any) -> None:
    fields = {
        "frames_in": summary.frames_in,
        "frames_out": summary.frames_out,
        "named_faces": summary.named,
        "duplicates": summary.duplicates,
        "late": summary.late,
        "dropped": summary.dropped,
        "dropped_stale": getattr(summary, "dropped_stale", 0),
        "failed": summary.dead_letters,
        "lost": summary.lost,
        "unfinished": summary.unfinished,
        "restarts": summary.restarts,
        "camera_errors": summary.camera_errors,
        "seconds": round(summary.seconds, 2),
        "stopped_by_signal": summary.stopped,
    }
    if summary.error is not None:
        fields["error"] = summary.error
    print(redact(json.dumps(fields, indent=2)), flush=True)
    for cam, err in summary.camera_errors.items():
        print(redact(f"error: camera {cam}: {err}"), file=sys.stderr)
    if summary.error is not None:
        print(redact(f"error: {summary.error}"), file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from sauron.pipeline import RunOptions, run

    clips: list[Any] = []
    results = args.results
    if args.demo:
        from sauron.demo.run import demo_settings

        settings, clips, default_results = demo_settings(
            bus=args.bus or "embedded", bootstrap=args.bootstrap
        )
        results = results or default_results
        if args.web_port is not None:
            settings = settings.model_copy(
                update={"web": settings.web.model_copy(update={"port": args.web_port})}
            )
    else:
        settings = settings_from(args)
    until_done = args.until_done or args.demo
    # Scripts that process files to their end get no web app unless they ask for one.
    want_web = not args.no_web and (args.demo or not args.until_done or args.web_port is not None)
    opts = RunOptions(processes=args.processes, until_done=until_done, results=results)
    # The record stage stores sightings and alerts whether or not the web app runs; a
    # script without the web app records only into a database it names (or for MQTT).
    recording = want_web or settings.store.url is not None or settings.mqtt.host is not None
    record = _start_record(settings) if recording else None
    web = _start_web(settings, pipeline=True, record=record) if want_web else None
    if record is not None:
        opts.on_result.append(record.on_result)
        opts.on_watchlist.append(record.attach_watchlist)
    if web is not None:
        opts.on_result.append(web[0].on_result)
        opts.on_watchlist.append(web[0].attach_watchlist)
        opts.on_parts.append(web[0].attach_parts)
    try:
        summary = run(settings, opts)
        if args.demo:
            from sauron.demo.run import print_report

            print_report(clips, results, summary.seconds)
            if summary.error is not None:
                print(redact(f"error: {summary.error}"), file=sys.stderr)
            elif web is not None and not args.until_done:
                # Keep the cameras going (looped) so the web app shows them live.
                print(f"web: serving the demo at {web[1].url}; Ctrl-C to stop", flush=True)
                looped = [c.model_copy(update={"loop": True}) for c in settings.cameras]
                live = settings.model_copy(update={"cameras": looped})
                run(
                    live,
                    RunOptions(
                        processes=args.processes,
                        on_result=opts.on_result,
                        on_watchlist=opts.on_watchlist,
                        on_parts=opts.on_parts,
                    ),
                )
        else:
            _print_summary(summary)
    finally:
        if web is not None:
            web[1].stop()
        if record is not None:  # stores what is queued (the web app shares its store)
            record.stop()
        if web is not None:
            web[0].stop()
    return 0 if summary.ok else 1


def cmd_ingest(args: argparse.Namespace) -> int:
    from sauron.pipeline import RunOptions, run_ingest_only

    settings = settings_from(args)
    return run_ingest_only(settings, RunOptions(until_done=True))


def cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.stage == "detect":
        from sauron.detect.kafka_worker import DetectProcesses, run_detect_worker
        from sauron.match.kafka_worker import topic_namer

        if args.processes > 1:
            import signal

            workers = DetectProcesses(
                settings, args.processes, namer=topic_namer, metrics_base=settings.metrics.port
            )
            asked: list[float] = []

            def forward(signum: int, _frame: object) -> None:
                asked.append(time.monotonic())
                workers.send(signum)  # each finishes its batch, commits, leaves the group

            signal.signal(signal.SIGTERM, forward)
            signal.signal(signal.SIGINT, forward)
            while workers.alive() or not (asked or workers.failure):
                workers.check()  # one that died is replaced
                if workers.failure is not None:
                    workers.stop()
                    raise SauronError(workers.failure)
                for p in workers.procs:
                    p.join(0.2 / len(workers.procs))
                if asked and time.monotonic() - asked[0] > WORKER_STOP_S:
                    for p in workers.procs:  # one that is stuck does not hold the command
                        if p.is_alive():
                            log.warning("worker %s did not stop; terminating it", p.pid)
                            p.kill()
            return 0
        run_detect_worker(settings, namer=topic_namer)
    elif args.stage == "record":
        from sauron.record.kafka_worker import run_record_worker

        if settings.bus.type != "kafka":
            raise SauronError("`sauron worker record` reads Kafka: give --bootstrap HOST:PORT")
        if args.processes != 1:
            raise SauronError(
                "`sauron worker record` runs one process: start more workers for more"
            )
        run_record_worker(settings)
    else:
        from sauron.match.kafka_worker import run_match_worker

        run_match_worker(settings)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from sauron.status import collect, read_parts, render, render_parts

    settings = settings_from(args)
    if args.url or settings.bus.type == "embedded":
        # a running `sauron run` / `sauron web`: which of its parts are alive
        url = args.url or f"http://{settings.web.host}:{settings.web.port}"
        health = read_parts(url)
        print(json.dumps(health, indent=2) if args.json else render_parts(url, health))
        return 0 if health.get("ok") else 1
    status = collect(settings, interval=args.interval)
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(render(status, partitions=args.per_partition))
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from sauron.bus.admin import delete_topics, ensure_topics, topic_specs
    from sauron.bus.client import check_reachable

    settings = settings_from(args)
    if args.action == "create":
        for name, parts in ensure_topics(settings).items():
            print(f"{name}\t{parts} partitions")
    elif args.action == "delete":
        for name in delete_topics(settings):
            print(f"deleted {name}")
    else:
        existing = check_reachable(settings.bus)
        for name, (parts, conf) in topic_specs(settings).items():
            state = f"{existing[name]} partitions" if name in existing else "missing"
            print(f"{name}\t{state}\t(configured: {parts} partitions, {conf})")
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    from sauron.detect.models import FaceModel
    from sauron.match.enroll import enroll_into_dir, load_watchlist_dir, person_from_photos

    settings = settings_from(args)
    model = FaceModel(detector="dlib-hog", embedder=settings.detect.embedder)
    kafka = settings.bus.type == "kafka"
    if args.from_dir:
        people = load_watchlist_dir(model, args.from_dir, largest=args.largest)
    elif kafka:
        people = [person_from_photos(model, args.name, args.photos, largest=args.largest)]
    else:
        root = settings.match.watchlist or Path("watchlist")
        people = [enroll_into_dir(model, root, args.name, args.photos, largest=args.largest)]
    if kafka:
        from sauron.bus.admin import ensure_topics
        from sauron.match.watchlist_topic import publish_person

        ensure_topics(settings)
        for person in people:
            publish_person(settings, person, person.name)
    for person in people:
        print(f"enrolled {person.name} ({len(person.embeddings)} photo(s))")
    return 0


def cmd_unenroll(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if settings.bus.type == "kafka":
        from sauron.match.watchlist_topic import publish_person

        publish_person(settings, None, args.name)
        print(f"removed {args.name}")
        return 0
    from sauron.match.enroll import remove_from_dir

    if not remove_from_dir(settings.match.watchlist or Path("watchlist"), args.name):
        print(f"error: {args.name} is not enrolled", file=sys.stderr)
        return 1
    print(f"removed {args.name}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    print(f"{args.file}: OK ({len(settings.cameras)} camera(s), bus {settings.bus.type})")
    return 0


def _start_record(settings: Settings) -> Any:
    """Start the record stage (store, recorder, alert delivery, retention)."""
    from sauron.record.stage import RecordStage

    record = RecordStage(settings).start()
    print(f"record: storing sightings and alerts in {record.store.safe_url}", file=sys.stderr)
    return record


def _start_web(settings: Settings, *, pipeline: bool, record: Any = None) -> tuple[Any, Any]:
    """Start the web app (the store it reads, the server) beside ``sauron run``'s record
    stage, if any; print its address and, on first start, the generated admin password."""
    from sauron.serve.web.server import WebServer, WebServices

    services = WebServices(
        settings, pipeline=pipeline, store=record.store if record is not None else None
    )
    if record is not None:
        services.attach_record(record)
    password = services.bootstrap_admin()
    services.start()
    server = WebServer(services.app, settings.web.host, settings.web.port).start()
    print(f"web: {server.url}  (store: {services.store.safe_url})", file=sys.stderr)
    if password is not None:
        print(
            f"web: created the admin account {settings.web.admin_user!r} with password "
            f"{password}  (shown once: keep it, or set SAURON_WEB__ADMIN_PASSWORD before "
            "the first start)",
            file=sys.stderr,
        )
    return services, server


def cmd_web(args: argparse.Namespace) -> int:
    import signal
    import threading

    settings = settings_from(args)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before starting: a signal during start-up
        signal.signal(sig, lambda *_: stop.set())  # still ends in a clean stop
    services, server = _start_web(settings, pipeline=False)
    try:
        while not stop.wait(0.5):
            if not server.thread.is_alive():
                return 1
    finally:
        server.stop()
        services.stop()
    return 0


#: Commands other packages add to ``sauron``: entry points of this group, named after the
#: command, each a function taking the command's arguments and returning the exit status.
COMMANDS_GROUP = "sauron.commands"

#: Commands that come with a package of their own: their help line, and how to get them.
OPTIONAL_COMMANDS = {
    "bench": (
        "benchmarks (see docs/benchmarks.md)",
        "the sauron-bench package, in the benchmarks/ folder of Sauron's repository: "
        "`scripts/bootstrap --dev` installs it, or `pip install -e benchmarks` there",
    ),
}


def extra_commands() -> dict[str, EntryPoint]:
    """The installed commands of the ``sauron.commands`` group, by name."""
    return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}


def cmd_extra(args: argparse.Namespace) -> int:
    ep = args.entry_point
    try:
        run = ep.load()
    except ImportError as exc:  # a package installed in part, or for another Sauron
        raise SauronError(f"`sauron {ep.name}` ({ep.value}) cannot be loaded: {exc}") from None
    return int(run(args.rest))


def cmd_missing(args: argparse.Namespace) -> int:
    print(
        f"error: `sauron {args.command}` is not installed; it comes with "
        f"{OPTIONAL_COMMANDS[args.command][1]}",
        file=sys.stderr,
    )
    return 2


def _extras(sub: Any, builtin: set[str]) -> None:
    """A sub-command for each installed extra command (its arguments pass through as they
    are), and one that says how to install each optional command that is not."""
    found = extra_commands()
    for name in sorted(found.keys() | OPTIONAL_COMMANDS.keys()):
        ep = found.get(name)
        if name in builtin:
            log.warning("ignoring the extra command %r (%s): a built-in one", name, ep)
            continue
        if ep is None:
            help_text = f"{OPTIONAL_COMMANDS[name][0]} (not installed)"
        elif name in OPTIONAL_COMMANDS:
            help_text = OPTIONAL_COMMANDS[name][0]
        else:
            help_text = ep.dist.metadata["Summary"] if ep.dist else ep.value
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.set_defaults(func=cmd_extra if ep else cmd_missing, entry_point=ep, takes_rest=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sauron", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sauron {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run every stage on this machine")
    _common(p)
    _cameras(p)
    _web(p)
    p.add_argument("--no-web", action="store_true", help="do not start the web app")
    p.add_argument("--demo", action="store_true", help="fetch samples, make clips, run")
    p.add_argument("--watchlist", type=Path, help="folder with one sub-folder per person")
    p.add_argument("--results", type=Path, help="write one JSON line per processed frame")
    p.add_argument("--until-done", action="store_true", help="exit when sources end")
    p.add_argument("--processes", type=int, default=0, help="detect processes (0 = cores)")
    p.add_argument("--tolerance", type=float, help="match tolerance (default 0.6)")
    p.add_argument(
        "--model", help="detector plugin (centerface, dlib-hog, dlib-cnn, opencv-people)"
    )
    p.add_argument("--embedder", help="face embedder (auto, onnx, dlib)")
    p.add_argument("--upsample", type=int, help="upsample frames before detection (0-3)")
    p.add_argument("--no-tracking", action="store_true", help="embed every face every frame")
    _reliability(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("ingest", help="publish camera frames to Kafka")
    _common(p)
    _cameras(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("worker", help="run a stage as a Kafka consumer-group member")
    p.add_argument("stage", choices=["detect", "match", "record"])
    _common(p)
    p.add_argument("--processes", type=int, default=1, help="worker processes to start")
    p.add_argument("--db", help="record: store database URL (default: SQLite in store.data_dir)")
    _reliability(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "status", help="each Kafka stage's workers, lag and throughput; or a run's parts"
    )
    _common(p)
    p.add_argument(
        "--interval", type=float, default=2.0, help="seconds between the samples (throughput)"
    )
    p.add_argument("--per-partition", action="store_true", help="lag and owner of each partition")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--url",
        help="the web app of a running `sauron run`/`sauron web`: show which of its parts "
        "are alive (the default with the embedded bus, at web.host:web.port)",
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("topics", help="create, describe or delete the Kafka topics")
    p.add_argument("action", choices=["create", "describe", "delete"])
    _common(p)
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("enroll", help="add a person to the watchlist")
    p.add_argument("name", nargs="?", help="person name")
    p.add_argument("photos", nargs="*", type=Path, help="photos of the person")
    p.add_argument("--from-dir", type=Path, help="enroll every sub-folder of this folder")
    p.add_argument("--watchlist", type=Path, help="watchlist folder (embedded mode)")
    p.add_argument("--largest", action="store_true", help="take the largest face of a photo")
    _common(p)
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("unenroll", help="remove a person from the watchlist")
    p.add_argument("name")
    p.add_argument("--watchlist", type=Path, help="watchlist folder (embedded mode)")
    _common(p)
    p.set_defaults(func=cmd_unenroll)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="action", required=True)
    c = csub.add_parser("check", help="validate a configuration file")
    c.add_argument("file", type=Path)
    c.set_defaults(func=cmd_config)

    p = sub.add_parser("web", help="the operator's web app and API (docs/web.md)")
    _common(p)
    _web(p)
    _cameras(p)  # listed in the live views (the cameras themselves run elsewhere)
    p.set_defaults(func=cmd_web)

    _extras(sub, set(sub.choices))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)  # the rest: an extra command's arguments
    if rest and not getattr(args, "takes_rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    setup_logging(args.log_level)
    if args.command == "enroll" and not args.from_dir and (not args.name or not args.photos):
        print("error: give NAME and at least one PHOTO, or --from-dir DIR", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except SauronError as exc:
        print(redact(f"error: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
