"""The central records every stage speaks: a camera Frame, a columnar Detections, the
Result of a frame, and the Sighting of one face."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

EMBEDDING_DIM = 128
NUM_LANDMARKS = 5

#: The one box convention: (left, top, right, bottom) pixels, "xyxy", as a row of
#: :attr:`Detections.xyxy`. Other conventions appear only at the edges: dlib's rectangles
#: (``detect/models.py``: :func:`~sauron.detect.models.to_rect`,
#: :func:`~sauron.detect.models.from_rect`), CenterFace's centres and sizes
#: (``detect/centerface.py``) and the results contract's [top, right, bottom, left]
#: (:meth:`Detections.to_trbl`, for the results file and the sightings).
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Frame:
    """One camera frame as it travels: JPEG bytes plus where and when it was captured."""

    camera: str
    number: int
    captured_at: float
    jpeg: bytes
    #: A still photo (an image-folder camera): its own scene, no tracks across frames.
    still: bool = False

    def __post_init__(self) -> None:
        if not self.camera:
            raise ValueError("camera id must be a non-empty string")
        if self.number < 0:
            raise ValueError(f"frame number must be >= 0, but got {self.number}")


def _check_rows(name: str, arr: np.ndarray, n: int, tail: tuple[int, ...]) -> None:
    expected = (n, *tail)
    if arr.ndim != len(expected) or arr.shape[0] != n or arr.shape[1:] != tail:
        raise ValueError(
            f"{name} must be a {len(expected)}D np.ndarray with shape {expected}, "
            f"but got shape {arr.shape}"
        )


@dataclass(frozen=True)
class Detections:
    """Columnar record of the objects found in one frame, one numpy array per field.

    ``xyxy`` holds boxes as (left, top, right, bottom) pixels (:data:`Box`).
    ``embeddings`` has shape (N, D) with D = 0 when no embedding was computed (e.g. person
    boxes). ``names`` holds the matched watchlist person per row or None; ``distances`` the
    distance to the nearest enrolled person (NaN when not matched). ``track_ids`` is -1
    when tracking is off.
    ``votes`` counts the embeddings that agree on a row's name (0 when unnamed); a named
    row with one vote is a single-vote match: the name rests on one embedding alone.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    landmarks: np.ndarray
    embeddings: np.ndarray
    names: tuple[str | None, ...] = ()
    distances: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    votes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    label: str = "face"

    def __post_init__(self) -> None:
        n = len(self.xyxy) if self.xyxy.ndim >= 1 else -1
        _check_rows("xyxy", self.xyxy, n, (4,))
        _check_rows("confidence", self.confidence, n, ())
        _check_rows("landmarks", self.landmarks, n, (NUM_LANDMARKS, 2))
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
            raise ValueError(
                f"embeddings must be a 2D np.ndarray with {n} rows, "
                f"but got shape {self.embeddings.shape}"
            )
        # Fill the optional columns so every Detections is complete.
        if not self.names:
            object.__setattr__(self, "names", (None,) * n)
        if len(self.distances) == 0 and n:
            object.__setattr__(self, "distances", np.full(n, np.nan, np.float32))
        if len(self.track_ids) == 0 and n:
            object.__setattr__(self, "track_ids", np.full(n, -1, np.int64))
        if len(self.votes) == 0 and n:
            object.__setattr__(
                self, "votes", np.array([int(x is not None) for x in self.names], np.int32)
            )
        if len(self.names) != n:
            raise ValueError(f"names must have {n} entries, but got {len(self.names)}")
        _check_rows("distances", self.distances, n, ())
        _check_rows("track_ids", self.track_ids, n, ())
        _check_rows("votes", self.votes, n, ())

    @classmethod
    def empty(cls, dim: int = 0, label: str = "face") -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.int32),
            confidence=np.zeros(0, np.float32),
            landmarks=np.zeros((0, NUM_LANDMARKS, 2), np.float32),
            embeddings=np.zeros((0, dim), np.float32),
            label=label,
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | Sequence[int] | slice) -> Detections:
        """Select rows by boolean mask, integer indices or slice, like numpy."""
        idx = np.arange(len(self))[index]
        return Detections(
            xyxy=self.xyxy[idx],
            confidence=self.confidence[idx],
            landmarks=self.landmarks[idx],
            embeddings=self.embeddings[idx],
            names=tuple(self.names[i] for i in idx),
            distances=self.distances[idx],
            track_ids=self.track_ids[idx],
            votes=self.votes[idx],
            label=self.label,
        )

    def with_identities(
        self,
        names: Sequence[str | None],
        distances: np.ndarray,
        votes: np.ndarray | None = None,
    ) -> Detections:
        """The rows named; ``votes`` defaults to one per named row."""
        if votes is None:
            votes = np.array([int(n is not None) for n in names], np.int32)
        return replace(
            self,
            names=tuple(names),
            distances=np.asarray(distances, np.float32),
            votes=np.asarray(votes, np.int32),
        )

    @property
    def areas(self) -> np.ndarray:
        w = (self.xyxy[:, 2] - self.xyxy[:, 0]).astype(np.int64)
        h = (self.xyxy[:, 3] - self.xyxy[:, 1]).astype(np.int64)
        return np.clip(w, 0, None) * np.clip(h, 0, None)

    def to_trbl(self) -> list[list[int]]:
        """Boxes as [top, right, bottom, left], the convention of the results contract
        (an edge: the results file and the sightings; inside, boxes are :data:`Box`)."""
        return [[int(t), int(r), int(b), int(lft)] for lft, t, r, b in self.xyxy.tolist()]


@dataclass(frozen=True)
class Result:
    """A frame after matching: what a viewer, the results file and the store consume."""

    frame: Frame
    detections: Detections
    processed_at: float
    annotated_jpeg: bytes = b""
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: Earlier frames of the same camera decided only now: each one face of a track that
    #: ended after a single marginal vote, named after all (``votes`` 1), with the frame
    #: it was seen in (see :class:`sauron.match.stage.SingleVoteTracks`). Never nested.
    late: tuple[Result, ...] = ()

    @property
    def latency_ms(self) -> float:
        return (self.processed_at - self.frame.captured_at) * 1000.0

    def to_json(self) -> dict[str, Any]:
        """The stable per-frame results record (see docs/results.md)."""
        out = self._record()
        if self.late:
            out["late"] = [r._record() for r in self.late]
        return out

    def _record(self) -> dict[str, Any]:
        d = self.detections
        return {
            "camera": self.frame.camera,
            "frame": self.frame.number,
            "ts": self.frame.captured_at,
            "latency_ms": round(self.latency_ms, 3),
            "faces": [
                {
                    "box": box,
                    "person": name,
                    "distance": _finite_or_none(dist),
                    "votes": int(votes),
                }
                for box, name, dist, votes in zip(
                    d.to_trbl(), d.names, d.distances.tolist(), d.votes.tolist(), strict=True
                )
            ],
        }


@dataclass(frozen=True)
class Sighting:
    """One face seen on a camera at one moment: the one record of a sighting, from the
    matcher (the sightings topic, ``match/stage.py``) through the record stage and the
    store to the web API (which add an id, a snapshot, an embedding around it).

    ``box`` is a :data:`Box`; ``track`` is -1 without tracking; ``distance`` is None on a
    face matched to no one; ``votes`` counts the embeddings that agree on ``person`` (0
    when unnamed, 1 on a single-vote match; None on rows stored before votes were kept).
    """

    camera: str
    frame: int
    ts: float
    track: int
    person: str | None
    distance: float | None
    box: Box
    votes: int | None

    @classmethod
    def of(cls, frame: Frame, det: Detections, i: int) -> Sighting:
        """Face ``i`` of a frame's detections."""
        x0, y0, x1, y1 = (int(v) for v in det.xyxy[i])
        return cls(
            camera=frame.camera,
            frame=frame.number,
            ts=frame.captured_at,
            track=int(det.track_ids[i]),
            person=det.names[i],
            distance=_finite_or_none(float(det.distances[i])),
            box=(x0, y0, x1, y1),
            votes=int(det.votes[i]),
        )


def _finite_or_none(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 6)
