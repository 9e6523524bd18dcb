"""A face seen once gets its answer: an image-folder camera's photos are each their own
scene, and a marginal match in one is named as a single-vote match (real photos)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pytest

from sauron.codec import Person
from sauron.config import CameraConfig, DetectConfig, MatchConfig
from sauron.detect.models import FaceModel
from sauron.detect.stage import DetectStage
from sauron.imaging import bgr_to_rgb, resize_max_width
from sauron.ingest.producer import camera_frames
from sauron.match.stage import MatchStage
from sauron.match.watchlist import Watchlist
from sauron.types import Frame

pytestmark = pytest.mark.slow

# obama2.jpg is 0.36-0.37 from obama.jpg at every size here: inside the tolerance (0.6)
# but above this, so one embedding of it alone is a marginal match
CONFIRM_ABOVE = 0.3


@pytest.fixture(scope="module")
def watchlist(face_model: FaceModel, photos: dict[str, Path]) -> Watchlist:
    det = face_model.detect(bgr_to_rgb(resize_max_width(cv2.imread(str(photos["obama.jpg"])), 480)))
    return Watchlist([Person("obama", det.embeddings)])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("stills")
    for i, name in enumerate(("obama2.jpg", "biden.jpg", "obama2.jpg")):
        shutil.copy(photos[name], out / f"{i:02d}_{name}")
    return out


def run(frames: list[Frame], watchlist: Watchlist, face_model: FaceModel) -> list[dict]:
    detect = DetectStage(DetectConfig(), face_model, tracking=True)
    match = MatchStage(MatchConfig(confirm_above=CONFIRM_ABOVE), watchlist)
    out = []
    for frame in frames:
        det, timings = detect.process(frame)
        result, _ = match.process(frame, det, timings)
        out.append(result.to_json())
    return out


def test_each_still_photo_is_its_own_scene_and_a_marginal_match_is_named(
    folder: Path, watchlist: Watchlist, face_model: FaceModel
) -> None:
    cam = CameraConfig(name="stills", source=str(folder), realtime=False, max_width=400)
    frames = list(camera_frames(cam))
    assert [f.still for f in frames] == [True, True, True]
    faces = [r["faces"] for r in run(frames, watchlist, face_model)]
    assert [len(f) for f in faces] == [1, 1, 1]
    obama, biden, again = (f[0] for f in faces)
    assert obama["person"] == "obama" and obama["votes"] == 1
    assert CONFIRM_ABOVE < obama["distance"] <= 0.6
    assert biden["person"] is None and biden["votes"] == 0
    assert again["person"] == "obama" and again["votes"] == 1  # no track across photos


def test_the_same_picture_as_video_waits_for_a_second_vote(
    folder: Path, watchlist: Watchlist, face_model: FaceModel
) -> None:
    """Frames of a video (not stills) are tracked: the first embedding of the track is a
    marginal vote that names nobody until the track's second embedding agrees."""
    cam = CameraConfig(name="stills", source=str(folder), realtime=False, max_width=400)
    first = next(iter(camera_frames(cam)))
    video = [Frame("door", n, float(n), first.jpeg) for n in range(6)]
    faces = [r["faces"][0] for r in run(video, watchlist, face_model)]
    assert faces[0]["person"] is None
    assert faces[-1]["person"] == "obama" and faces[-1]["votes"] == 2
