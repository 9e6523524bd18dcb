"""The match stage: names each face from the watchlist, draws the frame, emits sightings."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

from sauron.config import MatchConfig
from sauron.imaging import ImageDecodeError, decode_jpeg, encode_jpeg
from sauron.match.quality import face_quality
from sauron.match.watchlist import Watchlist
from sauron.types import Detections, Frame, Result, Sighting

_KNOWN = (40, 200, 40)
_UNKNOWN = (40, 40, 220)
_OTHER = (220, 160, 40)


def draw(bgr: np.ndarray, det: Detections) -> np.ndarray:
    """Boxes and labels drawn on a copy of the image (green: watched, red: unknown)."""
    out = bgr.copy()
    for (x0, y0, x1, y1), name, dist in zip(
        det.xyxy.tolist(), det.names, det.distances.tolist(), strict=True
    ):
        if det.label != "face":
            color, text = _OTHER, det.label
        elif name:
            color, text = _KNOWN, f"{name} {dist:.2f}"
        else:
            color, text = _UNKNOWN, "unknown"
        cv2.rectangle(out, (x0, y0), (x1, y1), color, 2)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = max(y0, th + 6)
        cv2.rectangle(out, (x0, ty - th - 6), (x0 + tw + 6, ty), color, cv2.FILLED)
        cv2.putText(
            out,
            text,
            (x0 + 3, ty - 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return out


def sighting_events(frame: Frame, det: Detections) -> list[Sighting]:
    """One sighting per face (none for detections that are not faces).

    :class:`MatchStage` keeps of these one per track (see :class:`TrackSightings`)."""
    if det.label != "face":
        return []
    return [Sighting.of(frame, det, i) for i in range(len(det))]


class TrackSightings:
    """Keeps one sighting per track: when a track is first seen, and when it is first named
    (or named as someone else). Faces without a track (tracking off, e.g. frame
    partitioning) are sighted on every frame. Remembers the ``capacity`` most recent tracks.

    Each camera's detections reach one matcher in order (camera partitioning), so this
    memory is per matcher; after a rebalance the new matcher reports the live tracks once
    more (at least once, never lost).
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._named: OrderedDict[tuple[str, int], str | None] = OrderedDict()

    def __call__(self, events: list[Sighting]) -> list[Sighting]:
        out = []
        for ev in events:
            if ev.track < 0:
                out.append(ev)
                continue
            key = (ev.camera, ev.track)
            if key not in self._named:
                self._named[key] = ev.person
                out.append(ev)
            else:
                self._named.move_to_end(key)
                if ev.person is not None and ev.person != self._named[key]:
                    self._named[key] = ev.person
                    out.append(ev)
        while len(self._named) > self.capacity:
            self._named.popitem(last=False)
        return out


class TrackVotes:
    """Identity voting over each track's embeddings, so one lucky frame names nobody.

    Every fresh embedding of a track (the detect stage carries a track's last embedding on
    the frames in between) casts a vote: the watched person within the tolerance, or no
    one, weighed by how good a view of the face it came from (:func:`face_quality`: size
    and pose, and sharpness when ``pixels`` gives the frame). The track keeps its
    ``window`` best votes, not its latest: a close, frontal, sharp face outweighs the small,
    turned or blurred ones of the track's first frames. It is named after the person with
    the most of those votes (a tie goes to the better views) once two votes agree, or at
    once when the match is close (distance at most ``confirm_above``).
    The tracker embeds every new track a second time a few frames in, so a marginal match
    is confirmed or dropped quickly. A fresh embedding farther than ``tolerance`` from the
    track's previous one is someone else who took the track's place: the vote starts
    afresh. Faces without a track (tracking off, or a still photo: its own scene) are
    named from their own embedding alone, with one vote: a single-vote match.
    """

    def __init__(
        self, confirm_above: float, tolerance: float, window: int = 5, capacity: int = 10_000
    ) -> None:
        self.confirm_above = confirm_above
        self.tolerance = tolerance
        self.window = window
        self.capacity = capacity
        self._votes: OrderedDict[tuple[str, int], tuple[np.ndarray, list[_Vote]]] = OrderedDict()
        self._cast = 0  # votes cast so far: orders them in time

    def __call__(
        self,
        camera: str,
        det: Detections,
        names: list[str | None],
        dists: np.ndarray,
        pixels: Callable[[], np.ndarray | None] | None = None,
    ) -> tuple[list[str | None], np.ndarray, np.ndarray]:
        """Each row's name, distance and number of agreeing votes (0: unnamed).

        ``pixels``: the frame (BGR, None if it does not decode), asked for only when a
        fresh embedding casts a vote; without it the votes are weighed by size and pose."""
        out_names = list(names)
        out_dists = np.array(dists, np.float32)
        out_votes = np.array([int(n is not None) for n in names], np.int32)
        tracks = det.track_ids.tolist()
        fresh = [
            i
            for i, track in enumerate(tracks)
            if track >= 0 and self._fresh((camera, int(track)), det.embeddings[i])
        ]
        quality = np.zeros(len(det), np.float32)
        if fresh:
            image = pixels() if pixels is not None else None
            quality[fresh] = face_quality(det[fresh], image)
        for i, track in enumerate(tracks):
            if track < 0:
                continue
            key = (camera, int(track))
            emb = det.embeddings[i]
            last, votes = self._votes.pop(key, (None, []))
            if last is None or not np.array_equal(emb, last):
                if last is not None and float(np.linalg.norm(emb - last)) > self.tolerance:
                    votes = []
                self._cast += 1
                votes.append(_Vote(names[i], float(dists[i]), float(quality[i]), self._cast))
                # the best views stay; among equals the later ones
                votes.sort(key=lambda v: (v.quality, v.seq), reverse=True)
                del votes[self.window :]
            self._votes[key] = (emb.copy(), votes)
            out_names[i], d, out_votes[i] = self._decide(votes)
            if d is not None:
                out_dists[i] = d
        while len(self._votes) > self.capacity:
            self._votes.popitem(last=False)
        return out_names, out_dists, out_votes

    def single(self, camera: str, track: int) -> _Vote | None:
        """The track's only vote when that names someone (marginally: it did not name the
        track yet), else None."""
        state = self._votes.get((camera, track))
        if state is None or len(state[1]) != 1 or state[1][0].name is None:
            return None
        vote = state[1][0]
        return None if vote.distance <= self.confirm_above else vote

    def forget(self, camera: str, track: int) -> None:
        self._votes.pop((camera, track), None)

    def _fresh(self, key: tuple[str, int], emb: np.ndarray) -> bool:
        """Whether this embedding of the track is new: it casts a vote."""
        last = self._votes.get(key)
        return last is None or not np.array_equal(emb, last[0])

    def _decide(self, votes: list[_Vote]) -> tuple[str | None, float | None, int]:
        # by votes, then the weight of the views, then the latest vote
        tally: dict[str | None, tuple[int, float, int]] = {}
        for v in votes:
            count, weight, seq = tally.get(v.name, (0, 0.0, 0))
            tally[v.name] = (count + 1, weight + v.quality, max(seq, v.seq))
        winner = max(tally, key=lambda name: tally[name])
        if winner is None:
            return None, None, 0
        mine = [v for v in votes if v.name == winner]  # best view first
        count = len(mine)
        if count >= 2 or min(v.distance for v in mine) <= self.confirm_above:
            return winner, mine[0].distance, count
        return None, None, 0


@dataclass(frozen=True)
class _Vote:
    name: str | None
    distance: float
    quality: float
    seq: int


@dataclass
class _OneVote:
    result: Result  # the frame the vote came from, with that one face named
    seen: int  # the camera's last frame number the track was in


class SingleVoteTracks:
    """A face seen once still gets its answer: a track that ends after a single marginal
    vote (named, but farther than ``confirm_above``, so :class:`TrackVotes` waits for a
    second one that never came) is named after all, with one vote.

    A track has ended when its camera's frames go on without it for more than ``gap``
    frames (the tracker's own limit, ``FaceTracker.max_gap``), or the camera's frame
    numbers start again. The answer is a late :class:`Result` of the frame the vote came
    from, holding only that face, carried on the camera's next result (``Result.late``):
    the results file, the store, alerts and visitors take it as that frame's sighting.
    Each such track keeps a reference to its frame (its JPEG, no copy) until it ends or
    is decided; at most ``capacity`` are kept, the oldest given up first. A camera that
    stops sending frames leaves its last such tracks undecided.
    """

    def __init__(self, votes: TrackVotes, gap: int = 5, capacity: int = 256) -> None:
        self.votes = votes
        self.gap = gap
        self.capacity = capacity
        self._open: OrderedDict[tuple[str, int], _OneVote] = OrderedDict()

    def __call__(self, frame: Frame, det: Detections) -> list[Result]:
        """Note this frame's tracks (``det`` after voting); the results of ended ones."""
        cam, now = frame.camera, frame.number
        present: set[int] = set()
        if det.label == "face" and not frame.still:
            for i, track in enumerate(det.track_ids.tolist()):
                if track < 0:
                    continue
                present.add(track)
                key = (cam, track)
                vote = self.votes.single(cam, track) if det.names[i] is None else None
                if vote is None:
                    self._open.pop(key, None)  # named, unnamed by its votes, or a stranger
                elif key in self._open:
                    self._open[key].seen = now
                else:
                    row = det[[i]].with_identities([vote.name], np.array([vote.distance]))
                    self._open[key] = _OneVote(Result(frame, row, time.time()), now)
                    while len(self._open) > self.capacity:
                        self._open.popitem(last=False)
        ended = [
            key
            for key, one in self._open.items()
            if key[0] == cam and key[1] not in present and not 0 <= now - one.seen <= self.gap
        ]
        out = []
        for key in ended[: self.MAX]:
            one = self._open.pop(key)
            self.votes.forget(*key)
            out.append(replace(one.result, processed_at=time.time()))
        return out

    #: The most tracks decided on one frame (the rest on the next ones).
    MAX = 64


class MatchStage:
    """Turns a frame and its detections into a Result and sighting events."""

    def __init__(self, cfg: MatchConfig, watchlist: Watchlist) -> None:
        self.cfg = cfg
        self.watchlist = watchlist
        self.sightings = TrackSightings()
        self.votes = TrackVotes(cfg.confirm_above, cfg.tolerance)
        self.single_votes = SingleVoteTracks(self.votes)

    def process(
        self, frame: Frame, det: Detections, timings: dict[str, float]
    ) -> tuple[Result, list[Sighting]]:
        t0 = time.perf_counter()
        # The frame is decoded at most once, for the votes and the drawing. Without drawing,
        # only when a fresh embedding casts a vote (for the sharpness of its face): with
        # tracking, 147 of 900 frames of the realistic benchmark's visitors run. On its floor
        # run that took the stage from 0.29 to 0.44 ms a frame (decoding one: ~1.1 ms).
        decoded: list[np.ndarray | None] = []

        def pixels() -> np.ndarray | None:
            if not decoded:
                try:
                    decoded.append(decode_jpeg(frame.jpeg))
                except ImageDecodeError:
                    decoded.append(None)  # voted on size and pose alone
            return decoded[0]

        if det.label == "face" and len(det):
            names, dists = self.watchlist.match(det.embeddings, self.cfg.tolerance)
            det = det.with_identities(*self.votes(frame.camera, det, names, dists, pixels))
        late = self.single_votes(frame, det)
        t1 = time.perf_counter()
        annotated = b""
        if self.cfg.draw:
            bgr = pixels()
            if bgr is None:
                bgr = decode_jpeg(frame.jpeg)  # raises what is wrong with it
            annotated = encode_jpeg(draw(bgr, det), self.cfg.annotated_quality)
        t2 = time.perf_counter()
        timings = {**timings, "match": (t1 - t0) * 1e3, "draw": (t2 - t1) * 1e3}
        result = Result(
            frame=frame,
            detections=det,
            processed_at=time.time(),
            annotated_jpeg=annotated,
            timings_ms=timings,
            late=tuple(late),
        )
        events = [ev for r in late for ev in sighting_events(r.frame, r.detections)]
        return result, self.sightings(events + sighting_events(frame, det))
