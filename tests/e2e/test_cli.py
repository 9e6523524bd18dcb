"""The command line as scripts use it: the results-file contract in both bus modes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sauron.demo.synth import ClipTruth

pytestmark = pytest.mark.slow


def sauron(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sauron.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env} if env else None,
    )


def _check_contract(path: Path, clips: list[ClipTruth]) -> None:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == sum(c.frames for c in clips)
    fields = {"camera", "frame", "ts", "latency_ms", "faces"}
    for rec in records:
        assert set(rec) in (fields, fields | {"late"})
        for one in [rec, *rec.get("late", [])]:
            if one is not rec:  # an earlier frame of the camera, decided late
                assert set(one) == fields and one["camera"] == rec["camera"]
                assert one["frame"] < rec["frame"] and one["faces"]
            assert isinstance(one["frame"], int) and one["frame"] >= 0
            assert isinstance(one["ts"], float) and one["ts"] > 1.6e9
            assert one["latency_ms"] >= 0
            for face in one["faces"]:
                assert set(face) == {"box", "person", "distance", "votes"}
                top, right, bottom, left = face["box"]
                assert 0 <= left < right and 0 <= top < bottom
                assert face["person"] in (None, "obama")
                assert isinstance(face["distance"], float)
    for clip in clips:
        frames = [r["frame"] for r in records if r["camera"] == clip.camera]
        assert frames == list(range(clip.frames)), "one line per frame, in frame order"
    assert any(f["person"] == "obama" for r in records for f in r["faces"])


def _camera_args(clips: list[ClipTruth]) -> list[str]:
    return [a for c in clips for a in ("--camera", f"{c.camera}={c.path}")]


def bus_args(bus: str, request: pytest.FixtureRequest) -> list[str]:
    """The options of a run on ``bus``: with Kafka, the session's broker and a fresh prefix."""
    if bus != "kafka":
        return []
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    prefix = request.getfixturevalue("topic_prefix")
    return ["--bus", "kafka", "--bootstrap", bootstrap, "--topic-prefix", prefix]


@pytest.mark.parametrize("bus", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def test_run_results_file(
    bus: str,
    clips: list[ClipTruth],
    watchlist_dir: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    out = tmp_path / "results.jsonl"
    proc = sauron(
        "run",
        *_camera_args(clips),
        *bus_args(bus, request),
        "--watchlist",
        str(watchlist_dir),
        "--results",
        str(out),
        "--until-done",
        "--fast",
        "--processes",
        "2",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_contract(out, clips)
    summary = json.loads(proc.stdout)
    assert summary["frames_out"] == {c.camera: c.frames for c in clips}


def test_ctrl_c_stops_run_cleanly(
    clips: list[ClipTruth], watchlist_dir: Path, tmp_path: Path
) -> None:
    """Ctrl-C in a terminal sends SIGINT to every process of the foreground group: the
    main process and its detect processes. ``sauron run`` stops without a traceback."""
    err, out = tmp_path / "stderr.log", tmp_path / "stdout.log"
    with err.open("wb") as fh, out.open("wb") as oh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sauron.cli", "run", *_camera_args(clips),
             "--watchlist", str(watchlist_dir), "--no-web", "--processes", "2"],
            stdout=oh, stderr=fh, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while b"detect process(es) ready" not in err.read_bytes():
            assert proc.poll() is None, err.read_text()[-2000:]
            assert time.monotonic() < deadline, err.read_text()[-2000:]
            time.sleep(0.2)
        time.sleep(2)  # frames flowing
        os.killpg(proc.pid, signal.SIGINT)  # the group this test created, as a terminal would
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = err.read_text()
    assert rc == 0, text[-2000:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    assert '"stopped_by_signal": true' in out.read_text(), "the summary says why it ended"


def test_config_check_names_the_bad_key(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("cameras:\n  - {name: door, source: '0'}\nmatch: {tolerance: 0.5}\n")
    proc = sauron("config", "check", str(good))
    assert proc.returncode == 0 and "OK" in proc.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - {name: door, source: '0', max_fps: -1}\nmatch: {tolerence: 1}\n")
    proc = sauron("config", "check", str(bad))
    assert proc.returncode == 1
    assert "cameras.0.max_fps" in proc.stderr
    assert "match.tolerence" in proc.stderr


def test_bench_comes_from_the_benchmarks_package() -> None:
    """``sauron bench`` is the benchmarks' package's command, found by its entry point."""
    listed = sauron("bench", "--help")
    assert listed.returncode == 0, listed.stderr
    assert "search" in listed.stdout and "pipeline" in listed.stdout
    run = sauron("bench", "search", "--rows", "2000", "--queries", "3", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["rows"] == 2000 and doc["queries"] == 3


def test_bench_not_installed_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sauron import cli

    monkeypatch.setattr(cli, "extra_commands", dict)  # as if sauron-bench were not installed
    assert cli.main(["bench", "pipeline", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "not installed" in err and "pip install -e benchmarks" in err


def test_unknown_options_of_a_built_in_command_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sauron import cli

    with pytest.raises(SystemExit) as stop:
        cli.main(["config", "check", "sauron.yaml", "--bogus"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_model_and_upsample_flags_pick_the_detector(tmp_path: Path) -> None:
    from sauron import cli
    from sauron.config import CenterFaceSettings, DlibHogSettings

    config = tmp_path / "s.yaml"
    config.write_text("detect:\n  detector:\n    type: centerface\n    input_scale: 1.0\n")
    args = cli.build_parser().parse_args(
        ["run", "--config", str(config), "--model", "dlib-hog", "--upsample", "1"]
    )
    assert cli.settings_from(args).detect.detector == DlibHogSettings(upsample=1)
    args = cli.build_parser().parse_args(["run", "--config", str(config), "--upsample", "1"])
    expected = CenterFaceSettings(input_scale=1.0, upsample=1)
    assert cli.settings_from(args).detect.detector == expected


def test_an_extra_command_that_cannot_load_is_an_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib.metadata import EntryPoint

    from sauron import cli

    broken = EntryPoint("bench", "sauron_bench_gone.commands:main", cli.COMMANDS_GROUP)
    monkeypatch.setattr(cli, "extra_commands", lambda: {"bench": broken})
    assert cli.main(["bench", "pipeline"]) == 1
    err = capsys.readouterr().err
    assert "`sauron bench` (sauron_bench_gone.commands:main) cannot be loaded" in err


def test_camera_passwords_are_never_shown(tmp_path: Path) -> None:
    """A camera URL's password appears in no log line, error or summary of a run, while
    the camera is retried (nothing listens where it points)."""
    with socket.socket() as probe:  # a free loopback port, nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"rtsp://admin:s3cretpw@127.0.0.1:{port}/stream1"
    err, out = tmp_path / "stderr.log", tmp_path / "stdout.log"
    with err.open("wb") as fe, out.open("wb") as fo:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sauron.cli", "run", "--camera", f"door={url}",
             "--no-web", "--processes", "1"],
            stdout=fo, stderr=fe,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while err.read_text().count("reconnect attempt") < 2:
            assert proc.poll() is None, err.read_text()[-2000:]
            assert time.monotonic() < deadline, err.read_text()[-2000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = err.read_text() + out.read_text()
    assert "s3cretpw" not in text
    assert f"admin:***@127.0.0.1:{port}" in text, text[-2000:]


@pytest.mark.kafka
def test_sigterm_while_kafka_workers_start_ends_the_run_with_a_summary(
    clips: list[ClipTruth],
    watchlist_dir: Path,
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_prefix: str,
) -> None:
    """SIGTERM as the detect workers come up (models loaded, the group forming) stops
    ``sauron run --bus kafka`` within seconds, cleanly, with its summary."""
    err = tmp_path / "stderr.log"
    with err.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sauron.cli", "run", *_camera_args(clips),
             "--bus", "kafka", "--bootstrap", kafka_bootstrap, "--topic-prefix", topic_prefix,
             "--watchlist", str(watchlist_dir), "--no-web", "--processes", "2"],
            stdout=subprocess.PIPE, stderr=fh, text=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "models loaded" not in err.read_text():
            assert proc.poll() is None, err.read_text()[-2000:]
            assert time.monotonic() < deadline, err.read_text()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        stdout, _ = proc.communicate(timeout=60)
        stopped_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = err.read_text()
    assert proc.returncode == 0, text[-2000:]
    assert "Traceback" not in text, text[-3000:]
    assert stopped_s < 30, text[-2000:]
    assert set(json.loads(stdout)["frames_out"]) <= {c.camera for c in clips}
