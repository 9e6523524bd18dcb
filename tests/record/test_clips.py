"""Event clips: a real face photo as the frames of a camera, an appearance in the middle;
the clip is a private H.264 MP4 from pre-roll before to post-roll after, found by its
alert, with faces not on the watchlist blurred when asked."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from sauron.config import ClipsConfig
from sauron.demo.samples import sample_photos
from sauron.imaging import encode_jpeg
from sauron.record import clips as clips_module
from sauron.record.clips import ClipRecorder, h264_encoder
from sauron.store.db import Store
from sauron.types import NUM_LANDMARKS, Detections, Frame, Result

FPS = 10
BOX = (60, 50, 200, 230)  # the face in the cropped photo (x0, y0, x1, y1)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    img = cv2.imread(str(sample_photos()["obama.jpg"]))
    assert img is not None
    return np.ascontiguousarray(cv2.resize(img, (321, 241)))  # odd sides on purpose


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'clips.db'}")
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def frame(photo: np.ndarray, n: int, person: str | None, face: bool) -> Result:
    k = 1 if face else 0
    det = Detections(
        xyxy=np.array([BOX] * k, np.int32).reshape(k, 4),
        confidence=np.ones(k, np.float32),
        landmarks=np.zeros((k, NUM_LANDMARKS, 2), np.float32),
        embeddings=np.zeros((k, 0), np.float32),
        names=(person,) * k,
        distances=np.array([0.4 if person else np.nan] * k, np.float32),
    )
    jpeg = encode_jpeg(photo, 90)
    return Result(Frame("door", n, 1000.0 + n / FPS, jpeg), det, 1000.0 + n / FPS)


def feed(rec: ClipRecorder, photo: np.ndarray, person: str | None, faces: range) -> None:
    for n in range(150):
        rec.add(frame(photo, n, person, n in faces))
    rec.close()


def decoded(path: Path) -> tuple[str, list[float], list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return (
            stream.codec_context.name,
            [float(f.time) for f in frames],
            [f.to_ndarray(format="bgr24") for f in frames],
        )


def test_pyav_from_pypi_has_an_h264_encoder() -> None:
    assert h264_encoder() in ("libx264", "libopenh264")


def test_an_appearance_is_kept_from_pre_roll_to_post_roll(store: Store, photo: np.ndarray) -> None:
    cfg = ClipsConfig(pre_roll_s=1.0, post_roll_s=1.0)
    rec = ClipRecorder(store, cfg, gap_s=0.5).start()
    feed(rec, photo, "obama", range(30, 60))  # seen from 1003.0 to 1005.9
    assert rec.stats.clips == 1 and rec.stats.errors == 0
    alert = store.add_alert("obama", "door", 1003.0, 0.4, None)
    store.extend_alert(alert.id, 1005.9, 30, 0.4)
    file = store.alert_clip(alert.id)
    assert file is not None and file.suffix == ".mp4"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    codec, times, images = decoded(file)
    assert codec == "h264"
    assert len(times) == 50, "frames 20 to 69: 1 s before, 3 s seen, 1 s after"
    assert times[0] == pytest.approx(0.0) and times[-1] == pytest.approx(4.9, abs=0.01)
    assert images[0].shape == (240, 320, 3)
    assert store.alerts_with_clips(store.alerts()) == {alert.id}


def test_a_new_appearance_after_the_gap_is_a_new_clip(store: Store, photo: np.ndarray) -> None:
    rec = ClipRecorder(store, ClipsConfig(pre_roll_s=0.5, post_roll_s=0.5), gap_s=1.0).start()
    seen = set(range(10, 20)) | set(range(40, 50))
    for n in range(80):
        rec.add(frame(photo, n, "obama", n in seen))
    rec.close()
    assert rec.stats.clips == 2


def _sharpness(img: np.ndarray) -> float:
    x0, y0, x1, y1 = BOX
    return float(cv2.Laplacian(cv2.cvtColor(img[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY), 5).var())


def test_faces_not_on_the_watchlist_are_blurred_when_asked(store: Store, photo: np.ndarray) -> None:
    cfg = ClipsConfig(pre_roll_s=0.0, post_roll_s=0.0)
    for blur in (False, True):
        rec = ClipRecorder(store, cfg, gap_s=0.5, privacy_blur=blur).start()
        feed(rec, photo, None, range(30 + 60 * blur, 40 + 60 * blur))
        assert rec.stats.clips == 1
    files = sorted(store.media.root.rglob("*.mp4"), key=lambda p: p.stat().st_mtime_ns)
    assert len(files) == 2
    sharp = _sharpness(decoded(files[0])[2][5])
    soft = _sharpness(decoded(files[1])[2][5])
    assert soft < sharp / 5, (sharp, soft)


def test_without_an_h264_encoder_clips_are_off_and_it_says_so(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(clips_module, "H264_ENCODERS", ("no-such-encoder",))
    with caplog.at_level(logging.ERROR):
        rec = ClipRecorder(store, ClipsConfig(), gap_s=1.0).start()
    assert not rec.enabled and not rec.alive
    assert "no H.264 encoder" in caplog.text


def test_a_long_appearance_is_stored_at_max_s_while_it_goes_on(
    store: Store, photo: np.ndarray
) -> None:
    cfg = ClipsConfig(pre_roll_s=0.0, post_roll_s=0.0, max_s=2.0)
    rec = ClipRecorder(store, cfg, gap_s=0.5).start()
    for n in range(60):  # seen for 6 s, and still there
        rec.add(frame(photo, n, "obama", True))
    assert rec.flush(30)
    assert rec.stats.clips == 1, "stored at 2 s, not at the appearance's end"
    [file] = store.media.root.rglob("*.mp4")
    assert len(decoded(file)[1]) == 21  # 0.0 s to 2.0 s
    rec.close()
    assert rec.stats.clips == 1, "the rest of the same appearance starts no clip"


def test_a_full_queue_drops_the_oldest_frame_and_says_so(
    store: Store, photo: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    rec = ClipRecorder(store, ClipsConfig(), gap_s=1.0, queue_size=2)  # not started: no reader
    with caplog.at_level(logging.WARNING):
        for n in range(5):
            rec.add(frame(photo, n, None, False))
    assert rec.stats.dropped == 3
    assert "dropped the oldest queued frame" in caplog.text
    assert not rec.flush(0.1), "two frames still wait"
