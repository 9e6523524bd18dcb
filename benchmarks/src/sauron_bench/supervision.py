"""Measures of the embedded bus (docs/reliability.md, docs/benchmarks.md).

``kills``: a paced ``sauron run`` of looping cameras over 2 detect processes; a busy
detect process is killed with SIGKILL ``--kills`` times, each after the previous
replacement's standby is ready; for each kill and each camera, the seconds from the kill
until the first result of a frame captured after the kill reaches the results file.

``cpu``: ``sauron run --fast --until-done`` of 3 cameras named ``cam1``-``cam3`` (all
three hash to the same process of 2) over 2 processes: the CPU used by the whole process
tree and by each process (% of one core) from its first result to 90 % of them. With
``--baseline SRC`` the same run first with the package at SRC (e.g. an export of an
earlier commit's ``src``).

Run as ``sauron bench supervision kills`` (or ``cpu``). Prints a summary and writes the
figures as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from sauron.demo.samples import sample_photos
from sauron.demo.synth import demo_clips


def _clips(root: Path, frames: int) -> list[Path]:
    return [c.path for c in demo_clips(root / "clips", frames=frames)]


def _watchlist(root: Path) -> Path:
    person = root / "watchlist" / "obama"
    person.mkdir(parents=True, exist_ok=True)
    (person / "obama.jpg").write_bytes(sample_photos()["obama.jpg"].read_bytes())
    return root / "watchlist"


def _start(
    cams: dict[str, Path], root: Path, extra: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    err, results = root / "stderr.log", root / "results.jsonl"
    args = [a for name, clip in cams.items() for a in ("--camera", f"{name}={clip}")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sauron.cli", "run", *args, "--watchlist", str(_watchlist(root)),
         "--results", str(results), "--no-web", *extra],
        stdout=subprocess.PIPE, stderr=err.open("wb"), env={**os.environ, **(env or {})},
    )  # fmt: skip
    return proc, err, results


def _detect_children(pid: int) -> list[psutil.Process]:
    out = []
    for k in psutil.Process(pid).children():
        try:
            if any("spawn_main" in a for a in k.cmdline()):
                out.append(k)
        except psutil.Error:
            pass
    return out


def _busiest(pid: int, window: float = 1.0) -> psutil.Process:
    """The detect process that used the most CPU over ``window`` s: one serving cameras
    (a standby idles)."""
    kids = _detect_children(pid)
    before = {k.pid: sum(k.cpu_times()[:2]) for k in kids}
    time.sleep(window)
    used = {}
    for k in kids:
        with contextlib.suppress(psutil.Error):
            used[k.pid] = sum(k.cpu_times()[:2]) - before[k.pid]
    best = max(used, key=lambda p: used[p])
    return next(k for k in kids if k.pid == best)


class Tail:
    """New complete lines of the results file, with the time each was first seen."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def poll(self) -> list[tuple[float, dict[str, Any]]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        now = time.time()
        return [(now, json.loads(line)) for line in data[:end].splitlines() if line]


def bench_kills(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="sauron-kills-"))
    clips = _clips(root, 60)
    cams = {f"cam{i + 1}": clips[i % len(clips)] for i in range(args.cameras)}
    env = {"SAURON_BUS__MAX_RESTARTS": "1000"}  # this benchmark kills on purpose
    proc, err, results = _start(cams, root, ["--loop", "--processes", "2"], env)
    tail = Tail(results)
    kills: list[dict[str, Any]] = []
    try:
        while err.read_text().count(" ready") < 4:  # 2 serving, the bus, 1 standby
            if proc.poll() is not None:
                raise SystemExit(err.read_text()[-3000:])
            time.sleep(0.2)
        time.sleep(3)
        for i in range(args.kills):
            ready_lines = err.read_text().count(" ready")
            tail.poll()
            before: list[float] = []  # capture -> results file while healthy, for scale
            until = time.monotonic() + 1.0
            while time.monotonic() < until:
                before += [seen - rec["ts"] for seen, rec in tail.poll()]
                time.sleep(0.01)
            victim = _busiest(proc.pid, 0.5)
            tail.poll()
            t_kill = time.time()
            os.kill(victim.pid, signal.SIGKILL)
            back: dict[str, float] = {}  # camera -> its first result after the kill
            fresh: dict[str, float] = {}  # ... of a frame captured after the kill
            while len(fresh) < len(cams) and time.time() - t_kill < 30:
                for seen, rec in tail.poll():
                    back.setdefault(rec["camera"], seen - t_kill)
                    if rec["ts"] > t_kill:
                        fresh.setdefault(rec["camera"], seen - t_kill)
                time.sleep(0.01)
            kills.append(
                {
                    "kill": i + 1,
                    "pid": victim.pid,
                    "resume_s": back,
                    "fresh_s": fresh,
                    "delay_before_s": statistics.median(before) if before else None,
                }
            )
            slowest = max(back.values()) if len(back) == len(cams) else float("inf")
            print(
                f"kill {i + 1}: pid {victim.pid}, every camera's results back after "
                f"{slowest:.2f} s, fresh frames after {max(fresh.values(), default=0):.2f} s"
            )
            # the next kill once a new standby has loaded its models
            deadline = time.monotonic() + 60
            while err.read_text().count(" ready") < ready_lines + 1:
                if time.monotonic() > deadline:
                    raise SystemExit("no new standby within 60 s\n" + err.read_text()[-3000:])
                time.sleep(0.2)
            time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    summary = json.loads(proc.stdout.read() if proc.stdout else b"{}")

    def worst(key: str) -> list[float | None]:
        return [max(k[key].values()) if len(k[key]) == len(cams) else None for k in kills]

    out: dict[str, Any] = {"cameras": len(cams), "kills": kills}
    for key in ("resume_s", "fresh_s"):
        values = worst(key)
        done = [w for w in values if w is not None]
        out[key] = {
            "every_camera": values,
            "median": round(statistics.median(done), 3) if done else None,
            "max": round(max(done), 3) if done else None,
            "within_2s": sum(w <= 2.0 for w in done),
            "stalled": sum(w is None for w in values),
        }
    delays = [k["delay_before_s"] for k in kills if k["delay_before_s"] is not None]
    out["delay_before_median_s"] = round(statistics.median(delays), 3) if delays else None
    out["summary"] = summary
    out["load_average"] = os.getloadavg()
    return out


def _tree_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds used so far by each process of the tree under ``pid``, with its role
    (main, detect, other)."""
    out: dict[int, tuple[str, float]] = {}
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return out
    for p in procs:
        with contextlib.suppress(psutil.Error):
            args = " ".join(p.cmdline())
            role = "main" if p.pid == pid else "detect" if "spawn_main" in args else "other"
            out[p.pid] = (role, sum(p.cpu_times()[:2]))
    return out


def _cpu_run(clips: list[Path], src: str | None, frames: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="sauron-cpu-"))
    cams = {f"cam{i + 1}": clips[i % len(clips)] for i in range(3)}
    env = {"PYTHONPATH": src} if src else {}
    proc, err, results = _start(cams, root, ["--fast", "--until-done", "--processes", "2"], env)
    tail = Tail(results)
    samples: list[tuple[float, dict[int, tuple[str, float]], int]] = []  # time, cpu, results
    count = 0
    while proc.poll() is None:
        count += len(tail.poll())
        samples.append((time.monotonic(), _tree_cpu(proc.pid), count))
        time.sleep(0.25)
    if proc.returncode != 0:
        raise SystemExit(err.read_text()[-3000:])
    # from the first result to 90 % of them: every process alive at both ends
    busy = [s for s in samples if 0 < s[2] <= 0.9 * 3 * frames]
    (t0, c0, n0), (t1, c1, n1) = busy[0], busy[-1]
    dt = t1 - t0
    used = {
        pid: (role, 100 * (cpu - c0.get(pid, (role, 0.0))[1]) / dt)
        for pid, (role, cpu) in c1.items()
    }
    return {
        "package": src or "this checkout",
        "cpu_percent": round(sum(u for _, u in used.values()), 1),
        "main_cpu_percent": round(sum(u for r, u in used.values() if r == "main"), 1),
        "detect_cpu_percent": sorted(
            (round(u, 1) for r, u in used.values() if r == "detect"), reverse=True
        ),
        "frames_per_s": round((n1 - n0) / dt, 1),
        "seconds_measured": round(dt, 2),
        "load_average_1m": os.getloadavg()[0],
    }


def bench_cpu(args: argparse.Namespace) -> dict[str, Any]:
    clips = _clips(Path(tempfile.mkdtemp(prefix="sauron-clips-")), args.frames)
    runs = []
    for _ in range(args.repeat):
        if args.baseline:
            runs.append(_cpu_run(clips, args.baseline, args.frames))
            print(runs[-1])
        runs.append(_cpu_run(clips, None, args.frames))
        print(runs[-1])
    return {"runs": runs, "load_average": os.getloadavg(), "cores": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sauron bench supervision", description=(__doc__ or "").split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="what", required=True)
    k = sub.add_parser("kills", help="resume time after kill -9 of a detect process")
    k.add_argument("--kills", type=int, default=20)
    k.add_argument("--cameras", type=int, default=3)
    c = sub.add_parser("cpu", help="CPU of 3 cameras over 2 processes, --fast")
    c.add_argument("--frames", type=int, default=300, help="frames per clip")
    c.add_argument("--repeat", type=int, default=1)
    c.add_argument("--baseline", help="PYTHONPATH of the package to compare with")
    for p in (k, c):
        p.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    out = bench_kills(args) if args.what == "kills" else bench_cpu(args)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    if args.what == "kills":
        for key, what in (("resume_s", "results"), ("fresh_s", "fresh frames' results")):
            r = out[key]
            print(
                f"{len(out['kills'])} kills: every camera's {what} back after median "
                f"{r['median']} s, max {r['max']} s; {r['within_2s']} within 2 s; "
                f"{r['stalled']} stalled"
            )
        print(f"delay capture -> results file while healthy: {out['delay_before_median_s']} s")
    return 0
