"""Camera sources read real files, folders and a local HTTP stream; no mocks."""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from sauron.config import CameraConfig
from sauron.ingest.producer import IngestGroup
from sauron.ingest.sources import (
    FolderSource,
    SourceError,
    SourceOptions,
    StreamSource,
    VideoFileSource,
    expand_secrets,
    open_source,
)
from sauron.types import Frame

FPS = 25
N_FRAMES = 30
W, H = 320, 240


def _level(i: int) -> int:
    return 20 + 7 * i  # frame i is a flat grey of this level: order survives compression


def _write_clip(path: Path, *, fps: int = FPS, frames: int = N_FRAMES) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps), options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(frames):
            image = np.full((H, W, 3), _level(i), np.uint8)
            cv2.rectangle(image, (10 + 5 * i, 50), (60 + 5 * i, 100), (0, 0, 255), -1)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def _read(spec: str | Path, **kw: object) -> list[np.ndarray]:
    src = open_source(str(spec), SourceOptions(**kw))  # type: ignore[arg-type]
    try:
        return list(src.frames())
    finally:
        src.close()


def test_video_file_round_trip(clip: Path) -> None:
    src = open_source(str(clip), SourceOptions(realtime=False))
    assert isinstance(src, VideoFileSource) and not src.is_live
    frames = list(src.frames())
    assert len(frames) == N_FRAMES
    for f in frames:
        assert f.shape == (H, W, 3) and f.dtype == np.uint8 and f.flags["C_CONTIGUOUS"]
    levels = [float(np.median(f[150:, :, 1])) for f in frames]
    assert levels == pytest.approx([_level(i) for i in range(N_FRAMES)], abs=3)
    assert frames[0][75, 35, 2] > 200 and frames[0][75, 35, 0] < 60  # red square, BGR order
    src.close()


def test_max_width_shrinks_but_never_enlarges(clip: Path) -> None:
    small = _read(clip, realtime=False, max_width=160)
    assert len(small) == N_FRAMES and small[0].shape == (120, 160, 3)
    same = _read(clip, realtime=False, max_width=1000)
    assert same[0].shape == (H, W, 3)


def test_max_fps_drops_on_source_timestamps(clip: Path) -> None:
    # 30 frames at 25 fps span 1.2 s; a 10 fps cap keeps one frame per 0.1 s slot.
    assert len(_read(clip, realtime=False, max_fps=10)) == 12
    assert len(_read(clip, realtime=False, max_fps=12.5)) == 15
    assert len(_read(clip, realtime=False, max_fps=100)) == N_FRAMES


def test_realtime_pacing(clip: Path) -> None:
    t0 = time.monotonic()
    frames = _read(clip, realtime=True)
    elapsed = time.monotonic() - t0
    assert len(frames) == N_FRAMES
    assert 0.95 * (N_FRAMES - 1) / FPS <= elapsed < 2.5  # 1.16 s of media


def test_loop_starts_again(clip: Path) -> None:
    src = open_source(str(clip), SourceOptions(realtime=False, loop=True, max_width=160))
    frames = list(itertools.islice(src.frames(), 2 * N_FRAMES + 10))
    src.close()
    assert len(frames) == 2 * N_FRAMES + 10
    med = [float(np.median(f[80:, :, 1])) for f in frames]
    assert med[N_FRAMES] == pytest.approx(med[0], abs=3)
    assert med[2 * N_FRAMES + 5] == pytest.approx(med[5], abs=3)


def test_loop_keeps_the_rate_cap_across_passes(clip: Path) -> None:
    src = open_source(str(clip), SourceOptions(realtime=False, loop=True, max_fps=12.5))
    frames = list(itertools.islice(src.frames(), 45))  # 15 per 1.2 s pass
    src.close()
    med = [float(np.median(f[150:, :, 1])) for f in frames]
    assert med[15] == pytest.approx(med[0], abs=3) and med[30] == pytest.approx(med[0], abs=3)


def test_image_folder_skips_unreadable_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for i, ext in enumerate(["jpg", "png", "bmp", "jpeg"]):
        cv2.imwrite(str(tmp_path / f"img{i}.{ext}"), np.full((60, 80, 3), 50 * (i + 1), np.uint8))
    (tmp_path / "img1b.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="sauron.ingest.sources"):
        src = open_source(str(tmp_path), SourceOptions(realtime=False))
        assert isinstance(src, FolderSource)
        frames = list(src.frames())
    assert [int(f[0, 0, 0]) for f in frames] == [50, 100, 150, 200]
    assert all(f.shape == (60, 80, 3) and f.flags["C_CONTIGUOUS"] for f in frames)
    assert any("img1b.jpg" in r.getMessage() for r in caplog.records)


def test_image_folder_pacing_and_loop(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 20, 3), 10 * i, np.uint8))
    t0 = time.monotonic()
    frames = _read(tmp_path, folder_fps=20)
    assert len(frames) == 3 and time.monotonic() - t0 >= 0.09
    src = open_source(str(tmp_path), SourceOptions(realtime=False, loop=True))
    looped = [int(f[0, 0, 0]) for f in itertools.islice(src.frames(), 7)]
    src.close()
    assert looped == [0, 10, 20, 0, 10, 20, 0]


def test_missing_and_unreadable_sources_name_themselves(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match=r"nope\.mp4"):
        open_source(str(missing))
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"definitely not a video")
    with pytest.raises(SourceError, match=r"cannot open camera source .*bogus\.mp4"):
        _read(bogus, realtime=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="empty"):
        _read(tmp_path / "empty")
    with pytest.raises(SourceError, match="ftp://x"):
        open_source("ftp://x/cam")


def test_unreachable_stream_fails_fast() -> None:
    url = "rtsp://127.0.0.1:1/x"
    src = open_source(url, SourceOptions(timeout_s=2, max_reconnects=0))
    assert isinstance(src, StreamSource) and src.is_live
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=r"cannot open camera source 'rtsp://127\.0\.0\.1:1/x'"):
        next(src.frames())
    assert time.monotonic() - t0 < 3
    src.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle(self) -> None:  # the client hanging up mid-file is expected here
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()


@pytest.fixture
def http_ts(tmp_path: Path) -> Iterator[tuple[str, http.server.ThreadingHTTPServer]]:
    """An MPEG-TS clip served over HTTP on localhost: a live source that ends."""
    _write_clip(tmp_path / "cam.ts")
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cam.ts", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_stream_without_reconnect_ends(
    http_ts: tuple[str, http.server.ThreadingHTTPServer],
) -> None:
    url, _ = http_ts
    frames = _read(url, reconnect=False, max_width=160)
    assert 1 <= len(frames) <= N_FRAMES  # a slow consumer gets the newest frames only
    assert frames[0].shape == (120, 160, 3) and frames[0].flags["C_CONTIGUOUS"]


def test_http_stream_reconnects_then_gives_up(
    http_ts: tuple[str, http.server.ThreadingHTTPServer], caplog: pytest.LogCaptureFixture
) -> None:
    url, server = http_ts
    opts = SourceOptions(max_reconnects=2, backoff_initial_s=0.05, timeout_s=2)
    src = open_source(url, opts)
    seen, after_reconnect = 0, 0
    t0 = time.monotonic()
    with (
        caplog.at_level(logging.INFO, logger="sauron.ingest.sources"),
        pytest.raises(SourceError, match=r"127\.0\.0\.1.*after 2 reconnect attempts") as err,
    ):
        for _ in src.frames():
            seen += 1
            if any("reconnected" in r.getMessage() for r in caplog.records):
                after_reconnect += 1
                if after_reconnect == 1:  # the stream came back; now take the server away
                    server.shutdown()
                    server.server_close()
            assert time.monotonic() - t0 < 20
    src.close()
    assert seen >= 2 and after_reconnect >= 1, str(err.value)
    assert time.monotonic() - t0 < 20


def test_close_from_another_thread_stops_a_paced_loop(clip: Path) -> None:
    src = open_source(str(clip), SourceOptions(realtime=True, loop=True))
    timer = threading.Timer(0.3, src.close)
    timer.start()
    t0 = time.monotonic()
    n = sum(1 for _ in src.frames())
    timer.join()
    assert 3 <= n <= 15 and time.monotonic() - t0 < 1.5


def test_options_are_validated() -> None:
    for bad in ({"max_fps": 0}, {"max_width": -1}, {"folder_fps": 0}, {"max_reconnects": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SourceOptions(**bad)  # type: ignore[arg-type]


def test_live_camera_down_at_start_is_picked_up_when_it_comes(tmp_path: Path) -> None:
    """A stream that is not there yet is retried like one that dropped: the camera says
    ``reconnecting``, then delivers frames once the server is up."""
    _write_clip(tmp_path / "cam.ts")
    with socket.socket() as probe:  # a free loopback port, nothing listening on it yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    frames: list[Frame] = []
    cam = CameraConfig(name="door", source=f"http://127.0.0.1:{port}/cam.ts", max_width=160)
    group = IngestGroup([cam], sink=frames.append).start()
    server = None
    try:
        deadline = time.monotonic() + 10
        while group.status["door"].state != "reconnecting":
            assert time.monotonic() < deadline, group.status["door"]
            time.sleep(0.05)
        assert not frames and group.status["door"].error is None
        handler = functools.partial(_Quiet, directory=str(tmp_path))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        deadline = time.monotonic() + 15
        while not frames:
            assert time.monotonic() < deadline, group.status["door"]
            time.sleep(0.05)
        assert group.status["door"].state in ("running", "reconnecting")  # the clip ends
        assert frames[0].camera == "door" and frames[0].number == 0
    finally:
        group.stop.set()
        group.join(15)
        if server is not None:
            server.shutdown()
            server.server_close()
    assert group.status["door"].state == "stopped"


def test_camera_thread_that_fails_is_restarted_and_reported(clip: Path) -> None:
    frames: list[Frame] = []
    failed = []

    def sink(frame: Frame) -> None:
        if len(frames) == 2 and not failed:  # a bug somewhere downstream, once
            failed.append(frame)
            raise RuntimeError("sink broke")
        frames.append(frame)

    cam = CameraConfig(name="desk", source=str(clip), realtime=False)
    ended: list[str] = []
    group = IngestGroup([cam], sink=sink, on_end=ended.append).start()
    group.join(30)
    st = group.status["desk"]
    assert st.finished and st.error is None and st.restarts == 1
    assert ended == ["desk"]
    # the restarted camera read its file again and numbered on: no number twice
    assert [f.number for f in frames] == list(range(2 + N_FRAMES))


class _Guarded(_Quiet):
    """Serves files only with HTTP basic auth as ``cam`` / ``PASSWORD``."""

    PASSWORD = "p@ss:w0rd/é"

    def do_GET(self) -> None:
        creds = base64.b64encode(f"cam:{self.PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {creds}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.end_headers()
            return
        super().do_GET()


def test_stream_password_from_the_environment_reaches_the_camera_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``${SAURON_...}`` in a URL is the camera's password (any characters); it opens the
    stream and is never shown. A wrong password fails with the URL redacted."""
    _write_clip(tmp_path / "cam.ts")
    handler = functools.partial(_Guarded, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        monkeypatch.setenv("SAURON_TEST_CAMERA_PASSWORD", _Guarded.PASSWORD)
        url = f"http://cam:${{SAURON_TEST_CAMERA_PASSWORD}}@127.0.0.1:{port}/cam.ts"
        frames = _read(url, reconnect=False, max_width=160)
        assert frames and frames[0].shape == (120, 160, 3)

        wrong = f"http://cam:s3cretpw@127.0.0.1:{port}/cam.ts"
        src = open_source(wrong, SourceOptions(timeout_s=2, max_reconnects=1))
        with (
            caplog.at_level(logging.INFO, logger="sauron.ingest.sources"),
            pytest.raises(SourceError) as err,
        ):
            next(src.frames())
        src.close()
    finally:
        server.shutdown()
        server.server_close()
    shown = [str(err.value), repr(src), *(r.getMessage() for r in caplog.records)]
    assert all("s3cretpw" not in line for line in shown), shown
    assert "cam:***@127.0.0.1" in str(err.value)


def test_a_missing_secret_is_named() -> None:
    with pytest.raises(SourceError, match=r"\$\{SAURON_NO_SUCH_SECRET\}, which is not set"):
        expand_secrets("rtsp://admin:${SAURON_NO_SUCH_SECRET}@192.0.2.1/s1")
    assert expand_secrets("rtsp://192.0.2.1/${NOT_OURS}") == "rtsp://192.0.2.1/${NOT_OURS}"
