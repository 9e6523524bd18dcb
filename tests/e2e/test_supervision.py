"""The embedded bus under faults: real ``sauron run`` processes, real detect processes
killed with SIGKILL by pid, real models on the demo clips (docs/reliability.md,
"The embedded bus under faults")."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil
import pytest

from sauron.bus.embedded import EmbeddedBus
from sauron.config import CameraConfig, load_settings
from sauron.demo.synth import ClipTruth
from sauron.detect.stage import worker_stage
from sauron.ingest.producer import camera_frames
from sauron.types import Frame

pytestmark = pytest.mark.slow


def _frames(name: str, clip: Path, n: int) -> list[Frame]:
    cam = CameraConfig(name=name, source=str(clip), realtime=False)
    return [f for f, _ in zip(camera_frames(cam), range(n), strict=False)]


def _wait_for(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_three_cameras_spread_over_two_processes(clips: list[ClipTruth]) -> None:
    """Cameras go to the process with the fewest cameras and stay there; a camera that
    ends frees its place for the next one."""
    a, b = clips[0].path, clips[1].path
    cams = {"cam1": a, "cam2": b, "cam3": a, "cam4": b}  # cam1-3 all hash to one of 2
    frames = {name: _frames(name, clip, 8) for name, clip in cams.items()}
    out: list[Frame] = []
    bus = EmbeddedBus(
        load_settings(None, {}),
        processes=2,
        make_stage=worker_stage,
        block=True,
        on_output=lambda item: out.append(item[0]),
        standby=0,
    ).start()
    try:
        for i in range(8):
            for name in ("cam1", "cam2", "cam3"):
                bus.submit(frames[name][i])
        _wait_for(lambda: bus.outstanding == 0, 120, "frames did not come back")
        placement = bus.placement
        assert sorted(Counter(placement.values()).values()) == [1, 2], placement
        # each process handled exactly the frames of the cameras placed on it
        assert bus.handled == Counter({(placement[c], c): 8 for c in ("cam1", "cam2", "cam3")})
        assert Counter(f.camera for f in out) == {"cam1": 8, "cam2": 8, "cam3": 8}

        alone = next(c for c, s in placement.items() if list(placement.values()).count(s) == 1)
        bus.release(alone)
        for f in frames["cam4"]:
            bus.submit(f)
        _wait_for(lambda: bus.outstanding == 0, 120, "cam4's frames did not come back")
        assert bus.placement["cam4"] == placement[alone], "the freed place is taken"
        assert {c: bus.placement[c] for c in placement if c != alone} == {
            c: s for c, s in placement.items() if c != alone
        }, "running cameras keep their process"
    finally:
        bus.close()


# ------------------------------------------------------------------ sauron run


@dataclass
class Run:
    """A ``sauron run`` in a process group of its own, its stderr in a file."""

    proc: subprocess.Popen[bytes]
    err: Path
    results: Path
    kills: list[int] = field(default_factory=list)

    def log(self) -> str:
        return self.err.read_text(errors="replace")

    def detect_pids(self) -> list[int]:
        """The live detect processes (serving or standby): the spawned children."""
        kids = psutil.Process(self.proc.pid).children()
        return [
            k.pid for k in kids if k.is_running() and any("spawn_main" in a for a in _cmdline(k))
        ]

    def wait_ready(self, timeout: float = 180) -> None:
        _wait_for(
            lambda: "detect process(es) ready" in self.log() or self.proc.poll() is not None,
            timeout,
            "the run did not get ready",
        )
        assert self.proc.poll() is None, self.log()[-3000:]

    def kill_one(self, rng: random.Random) -> int:
        pids = self.detect_pids()
        assert pids, self.log()[-3000:]
        pid = rng.choice(pids)
        os.kill(pid, signal.SIGKILL)
        self.kills.append(pid)
        return pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, dict[str, object]]:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        assert self.proc.stdout is not None
        return rc, json.loads(self.proc.stdout.read() or b"{}")


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


@pytest.fixture
def start_run(clips: list[ClipTruth], watchlist_dir: Path, tmp_path: Path) -> Iterator[object]:
    runs: list[Run] = []
    handles: list[IO[bytes]] = []

    def start(*extra: str, env: dict[str, str] | None = None, cameras: int = 3) -> Run:
        names = ["lobby", "gate", "hall", "yard"][:cameras]
        cams = [f"{n}={clips[i % len(clips)].path}" for i, n in enumerate(names)]
        err = tmp_path / f"stderr-{len(runs)}.log"
        results = tmp_path / f"results-{len(runs)}.jsonl"
        fh = err.open("wb")
        handles.append(fh)
        proc = subprocess.Popen(
            [sys.executable, "-m", "sauron.cli", "run",
             *(a for c in cams for a in ("--camera", c)),
             "--watchlist", str(watchlist_dir), "--results", str(results), *extra,
             *([] if "--web-port" in extra else ["--no-web"])],
            stdout=subprocess.PIPE, stderr=fh, env={**os.environ, **(env or {})},
        )  # fmt: skip
        run = Run(proc, err, results)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(10)
        if run.proc.stdout is not None:
            run.proc.stdout.close()
    for fh in handles:
        fh.close()


def _arrivals(path: Path, seen: int) -> tuple[int, Counter[str]]:
    """Lines of the results file after the first ``seen``: (lines now, per camera)."""
    if not path.exists():
        return seen, Counter()
    lines = path.read_text().splitlines()
    complete = [ln for ln in lines if ln.endswith("}")]
    return len(complete), Counter(json.loads(ln)["camera"] for ln in complete[seen:])


def test_chaos_kill_random_detect_processes(start_run: object) -> None:
    """Every 4 s a random detect process is killed (SIGKILL) during a paced run of three
    looping cameras: every camera keeps producing results, none stalls for long, and the
    run ends (SIGTERM) with a summary that counts the lost frames."""
    run: Run = start_run("--loop", "--processes", "2")  # type: ignore[operator]
    run.wait_ready()
    rng = random.Random(20)
    seen, last, worst = 0, dict[str, float](), defaultdict[str, float](float)
    t0 = time.monotonic()
    next_kill = t0 + 3
    while time.monotonic() - t0 < 22:
        now = time.monotonic()
        seen, new = _arrivals(run.results, seen)
        for cam in new:
            if cam in last:
                worst[cam] = max(worst[cam], now - last[cam])
            last[cam] = now
        for cam, at in last.items():
            worst[cam] = max(worst[cam], now - at)
        if now >= next_kill and now - t0 < 18:
            run.kill_one(rng)
            next_kill = now + 4
        assert run.proc.poll() is None, run.log()[-3000:]
        time.sleep(0.1)
    rc, summary = run.stop()
    log = run.log()
    assert rc == 0, log[-3000:]
    assert len(run.kills) == 4
    assert log.count("died: killed by signal 9 (SIGKILL)") == 4, log[-4000:]
    assert set(last) == {"lobby", "gate", "hall"}, "every camera produced results"
    # no camera went without a result for more than a few seconds (a stall), kills or not
    assert max(worst.values()) < 8, worst
    assert isinstance(summary["lost"], int) and summary["lost"] >= 0
    assert summary["restarts"] >= 1  # at least one kill hit a serving process
    frames_out = summary["frames_out"]
    assert isinstance(frames_out, dict) and min(frames_out.values()) > 0
    assert "Traceback" not in log, log[-4000:]


def test_sigterm_after_the_only_detect_process_was_killed(start_run: object) -> None:
    """No standby: the replacement is still loading its models when SIGTERM arrives; the
    run still ends at once, cleanly, with its summary."""
    run: Run = start_run(  # type: ignore[operator]
        "--loop", "--processes", "1", env={"SAURON_BUS__STANDBY_PROCESSES": "0"}, cameras=2
    )
    run.wait_ready()
    time.sleep(2)
    (pid,) = run.detect_pids()
    os.kill(pid, signal.SIGKILL)
    _wait_for(lambda: "died: killed by signal 9" in run.log(), 10, "the death went unnoticed")
    rc, summary = run.stop(timeout=20)
    log = run.log()
    assert rc == 0, log[-3000:]
    assert summary["restarts"] == 1 and "lost" in summary
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.kafka
def test_kafka_run_replaces_a_killed_detect_process(
    start_run: object, kafka_bootstrap: str
) -> None:
    """Over Kafka too, ``sauron run`` keeps its detect processes at their number: a
    killed one is logged with how it died and replaced, every camera keeps producing
    results, and the summary counts the restart."""
    prefix = f"sup-{uuid.uuid4().hex[:8]}"
    run: Run = start_run(  # type: ignore[operator]
        "--loop", "--processes", "2", "--bootstrap", kafka_bootstrap,
        env={"SAURON_TOPICS__PREFIX": prefix},
    )  # fmt: skip
    _wait_for(
        lambda: "detect workers ready" in run.log() or run.proc.poll() is not None,
        180,
        "the detect workers did not get ready",
    )
    assert run.proc.poll() is None, run.log()[-3000:]
    time.sleep(2)  # frames flowing
    before = run.detect_pids()
    assert len(before) == 2, run.log()[-3000:]
    os.kill(before[0], signal.SIGKILL)
    seen, _ = _arrivals(run.results, 0)
    _wait_for(lambda: "died: killed by signal 9 (SIGKILL)" in run.log(), 10, "death unnoticed")
    _wait_for(lambda: len(set(run.detect_pids()) - set(before)) == 1, 30, "no replacement started")
    _wait_for(
        lambda: set(_arrivals(run.results, seen)[1]) == {"lobby", "gate", "hall"},
        90,
        "a camera stopped producing results after the kill",
    )
    # the replacement joins the group like the first two did
    _wait_for(lambda: run.log().count("as group " + prefix) >= 3, 90, "it never joined")
    rc, summary = run.stop()
    log = run.log()
    assert rc == 0, log[-3000:]
    assert summary["restarts"] == 1, summary
    assert "Traceback" not in log, log[-3000:]


def test_crash_loop_ends_in_one_error(start_run: object) -> None:
    """More deaths than ``bus.max_restarts`` within a minute: one error, non-zero exit,
    the summary still written."""
    run: Run = start_run(  # type: ignore[operator]
        "--loop", "--processes", "1", env={"SAURON_BUS__MAX_RESTARTS": "1"}, cameras=1
    )
    run.wait_ready()
    rng = random.Random(1)
    run.kill_one(rng)
    _wait_for(lambda: len(run.detect_pids()) >= 1, 30, "no process after the first death")
    run.kill_one(rng)
    rc = run.proc.wait(30)
    assert run.proc.stdout is not None
    summary = json.loads(run.proc.stdout.read())
    log = run.log()
    assert rc == 1, log[-3000:]
    errors = [ln for ln in log.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "detect processes keep dying" in errors[0], log[-3000:]
    assert "keep dying" in str(summary["error"])
    assert "Traceback" not in log, log[-3000:]


def test_detect_process_that_cannot_load_its_model_fails_the_run_at_once(
    clips: list[ClipTruth], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-centerface.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "sauron.cli", "run", "--camera", f"a={clips[0].path}",
         "--until-done", "--no-web", "--processes", "2"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SAURON_DETECT__MODEL_PATH": str(missing)},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "could not start" in errors[0] and str(missing) in errors[0], errors
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_status_names_each_live_part_of_a_run(start_run: object, tmp_path: Path) -> None:
    """``sauron status --url`` (and the web app's /api/health it reads) list the cameras,
    the detect processes and the web app's own threads, each with its state."""
    run: Run = start_run(  # type: ignore[operator]
        "--loop", "--processes", "1", "--web-port", "0",
        env={"XDG_DATA_HOME": str(tmp_path / "data")}, cameras=2,
    )  # fmt: skip
    run.wait_ready()
    _wait_for(lambda: "web: http://" in run.log(), 30, "no web address")
    url = run.log().split("web: ", 1)[1].split()[0]
    want = {
        "camera-lobby": "running",
        "camera-gate": "running",
        "detect-0": "running",
        "recorder": "alive",
        "retention": "alive",
        "clips": "alive",
        "index": "alive",
    }

    def status() -> dict[str, object]:
        proc = subprocess.run(
            [sys.executable, "-m", "sauron.cli", "status", "--url", url, "--json"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        got: dict[str, object] = json.loads(proc.stdout)
        return got

    _wait_for(lambda: status()["parts"] == want, 30, f"parts not as expected: {status()}")
    assert status()["ok"] is True
    table = subprocess.run(
        [sys.executable, "-m", "sauron.cli", "status", "--url", url],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert f"{url}: ok" in table.stdout and "detect-0" in table.stdout, table.stdout
    rc, summary = run.stop()
    assert rc == 0 and summary["restarts"] == 0, run.log()[-3000:]
