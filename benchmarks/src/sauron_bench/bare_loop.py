"""The floor: the same frames through a bare loop in one process, no transport at all.

Decode, detect, embed (per frame, or per track with tracking) and match, with the
product's own stage classes (:class:`~sauron.detect.stage.DetectStage`,
:class:`~sauron.match.stage.MatchStage` with drawing off), one frame after another. What a
pipeline loses against this is what its transport, queues and process boundaries cost.
Also scores the names it gives against the workload's ground truth, and compares the names
of two floor runs frame by frame (tracking against per-frame embedding).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from sauron.codec import Person
from sauron.config import DetectConfig, MatchConfig
from sauron.detect.stage import DetectStage
from sauron.detect.tracking import iou_matrix
from sauron.imaging import decode_jpeg, encode_jpeg
from sauron.match.stage import MatchStage, draw
from sauron.match.watchlist import Watchlist
from sauron.types import Frame, Result
from sauron_bench.measure import Record, ResourceMonitor, RunResult, summarize
from sauron_bench.workload import WATCHED, Workload

log = logging.getLogger(__name__)

FrameKey = tuple[str, int]


@dataclass
class FloorRun:
    result: RunResult
    names: dict[FrameKey, tuple[str, ...]]  # sorted names per frame ("" = unknown face)


def _frames(cameras: list[str], start: int, count: int) -> list[tuple[int, int]]:
    """(camera index, number) in arrival order: cameras interleaved, numbers rising."""
    return [(ci, n) for n in range(start, start + count) for ci in range(len(cameras))]


def run_floor(
    workload: Workload,
    cameras: list[str],
    people: list[Person],
    *,
    embedder: str,
    tracking: bool,
    frames_per_camera: int,
    warmup: int = 5,
    detect_options: dict[str, object] | None = None,
) -> FloorRun:
    options = {"embedder": embedder, **(detect_options or {})}
    detect = DetectStage(DetectConfig.model_validate(options), tracking=tracking)
    match = MatchStage(MatchConfig.model_validate({"draw": False}), Watchlist(people))
    for ci, n in _frames(cameras, 0, warmup):
        frame = Frame(cameras[ci], n, time.time(), workload.jpeg(ci, n))
        match.process(frame, *detect.process(frame))
    embedded0 = detect.faces_embedded
    seen0 = detect.faces_seen
    records: list[Record] = []
    names: dict[FrameKey, tuple[str, ...]] = {}
    truth_score = Score()
    shown: list[Result] = []
    monitor = ResourceMonitor().start()
    t_start = time.perf_counter()
    for ci, n in _frames(cameras, warmup, frames_per_camera):
        frame = Frame(cameras[ci], n, time.time(), workload.jpeg(ci, n))
        det, timings = detect.process(frame)
        result, _ = match.process(frame, det, timings)
        records.append(
            Record(
                frame.camera,
                n,
                frame.captured_at,
                time.time(),
                result.timings_ms,
                result.detections.names,
            )
        )
        names[(frame.camera, n)] = tuple(sorted(x or "" for x in result.detections.names))
        truth_score.add(workload.people(ci, n), result.detections.xyxy, result.detections.names)
        for late in result.late:
            d = late.detections
            truth_score.add_late(workload.people(ci, late.frame.number), d.xyxy, d.names)
        if len(shown) < 40:
            shown.append(result)
    elapsed = time.perf_counter() - t_start
    usage = monitor.stop()
    run = summarize(
        "floor",
        records,
        usage,
        workers=1,
        mode="flood",
        tracking=tracking,
        embedder=embedder,
        cameras=len(cameras),
        extra={
            "faces_seen": detect.faces_seen - seen0,
            "faces_embedded": detect.faces_embedded - embedded0,
            "accuracy": truth_score.to_json(),
            "render_ms": render_cost(shown),
        },
    )
    # The floor's rate is frames over the loop's own time (no first-to-last gap to bridge).
    run.fps = round(len(records) / elapsed, 2)
    run.seconds = round(elapsed, 3)
    run.latency_ms = {}
    return FloorRun(run, names)


def render_cost(results: list[Result], quality: int = 80) -> float:
    """Mean ms to turn a result into the picture a viewer sees: decode the frame, draw
    the named boxes, encode the JPEG (what the web app does for a watched camera's
    newest frame, and what the matcher does for every frame with ``match.draw`` on)."""
    if not results:
        return 0.0
    t0 = time.perf_counter()
    for r in results:
        encode_jpeg(draw(decode_jpeg(r.frame.jpeg), r.detections), quality)
    return round((time.perf_counter() - t0) * 1e3 / len(results), 2)


class Score:
    """Detections and names against the ground truth (IoU >= 0.3 pairs a face)."""

    def __init__(self) -> None:
        self.faces = self.found = self.watched = self.watched_named = 0
        self.strangers_named = self.false_faces = self.watched_faces = 0

    def add(
        self,
        truth: tuple[tuple[str, tuple[int, int, int, int]], ...],
        xyxy: np.ndarray,
        names: tuple[str | None, ...],
    ) -> None:
        self.faces += len(truth)
        self.watched_faces += sum(person == WATCHED for person, _ in truth)
        matched: set[int] = set()
        if truth and len(xyxy):
            iou = iou_matrix(np.array([b for _, b in truth]), xyxy)
            for (person, _), row in zip(truth, iou, strict=True):
                j = int(np.argmax(row))
                if row[j] < 0.3 or j in matched:
                    continue
                matched.add(j)
                self.found += 1
                if person == WATCHED:
                    self.watched += 1
                    self.watched_named += names[j] == WATCHED
                else:
                    self.strangers_named += names[j] is not None
        self.false_faces += len(xyxy) - len(matched)

    def add_late(
        self,
        truth: tuple[tuple[str, tuple[int, int, int, int]], ...],
        xyxy: np.ndarray,
        names: tuple[str | None, ...],
    ) -> None:
        """Names given late (``Result.late``) to faces of a frame already added, unnamed
        there: each counts as that face named now."""
        if not truth or not len(xyxy):
            return
        iou = iou_matrix(xyxy, np.array([b for _, b in truth]))
        for row, name in zip(iou, names, strict=True):
            j = int(np.argmax(row))
            if row[j] < 0.3 or name is None:
                continue
            if truth[j][0] == WATCHED:
                self.watched_named += name == WATCHED
            else:
                self.strangers_named += 1

    def to_json(self) -> dict[str, float | int]:
        return {
            "faces": self.faces,
            "detected": self.found,
            "detected_share": round(self.found / self.faces, 4) if self.faces else 0.0,
            "watched_faces": self.watched_faces,
            "watched_detected": self.watched,
            "watched_named": self.watched_named,
            "strangers_named": self.strangers_named,
            "false_faces": self.false_faces,
        }


def agreement(
    a: dict[FrameKey, tuple[str, ...]], b: dict[FrameKey, tuple[str, ...]]
) -> dict[str, float | int]:
    """How often two runs give the same names on a frame (over the frames both saw).

    ``names``: the same faces with the same names (unknown faces count); ``watched``: the
    same set of watchlist people named.
    """
    common = sorted(set(a) & set(b))
    if not common:
        return {"frames": 0, "names": 0.0, "watched": 0.0}
    same = sum(a[k] == b[k] for k in common)
    watched = sum({x for x in a[k] if x} == {x for x in b[k] if x} for k in common)
    return {
        "frames": len(common),
        "names": round(same / len(common), 4),
        "watched": round(watched / len(common), 4),
    }


def run_baseline(
    work: Workload, cameras: list[str], people: list[Person], frames_per_camera: int
) -> RunResult:
    """The bare one-core face_recognition-style loop on the same frames: HOG with one
    upsampling, dlib's own embedder on every face of every frame, no tracking."""
    from sauron_bench.workload import watchlist_people

    del people  # the baseline matches with dlib's embeddings of the enrolled photo
    run = run_floor(
        work,
        cameras,
        watchlist_people("dlib"),
        embedder="dlib",
        tracking=False,
        frames_per_camera=frames_per_camera,
        warmup=1,
        detect_options={"detector": {"upsample": 1}},
    )
    run.result.name = "baseline"
    return run.result
