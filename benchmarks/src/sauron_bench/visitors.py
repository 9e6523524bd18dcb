"""``sauron bench visitors``: visitor grouping and single-shot naming on the realistic workload.

    sauron bench visitors [--cameras 3] [--frames 300] [--still-every 10] [--out DIR]

Grouping: every frame of each camera of :mod:`sauron_bench.realistic` goes through the
product's detect and match stages (defaults: tracking, identity voting) and into the
record stage's :class:`~sauron.record.recorder.Recorder` over a fresh SQLite store, with
visitor grouping on. Each stored visit (one ended track) is given the identity that the
ground truth shows most often under its track's boxes during the visit. Then:

- purity: the share of visits that belong to their visitor's majority identity (one
  visitor = one real person);
- completeness: for each stranger, the share of their visits in the visitor holding most
  of them (one real stranger = one visitor), over all strangers' visits;
- the watched person's visits that became visitors (tracks never named), counted apart;
- on the way, the names the match stage gave: id recall (the watched person's faces named
  right, of all in the ground truth) and faces of strangers named (false ids).

Single shot: every ``--still-every``-th frame of each camera, each frame alone (a still:
no track across frames, as an image-folder camera sends them), at each ``--shrink``
scale. Recall (the watched person's faces named right, of all of them in the ground
truth) and strangers named, three ways on the same frames: Sauron's defaults with the frames marked
as stills (a face seen once gets its answer), the same frames as video frames (identity
voting waits for a second embedding that a face seen once never gets: the behaviour
before stills), and the bare face_recognition loop (HOG with one upsampling, dlib's
embedder on every face, tolerance 0.6, no voting). Writes ``visitors.json`` into
``--out`` and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sauron.codec import Person
from sauron.config import DetectConfig, MatchConfig, StoreConfig, VisitorsConfig
from sauron.detect.stage import DetectStage
from sauron.detect.tracking import iou_matrix
from sauron.imaging import decode_jpeg, encode_jpeg
from sauron.match.stage import MatchStage
from sauron.match.watchlist import Watchlist
from sauron.record.recorder import Recorder
from sauron.record.visitors import VisitorGrouper
from sauron.store.db import Store
from sauron.store.models import Visit
from sauron.store.visitors import VisitorStore
from sauron.types import Frame
from sauron_bench.bare_loop import Score
from sauron_bench.realistic import make_realistic_workload
from sauron_bench.workload import JPEG_QUALITY, WATCHED, Workload, watchlist_people

log = logging.getLogger(__name__)


def _truth_of(
    truth: tuple[tuple[str, tuple[int, int, int, int]], ...], xyxy: np.ndarray
) -> list[str | None]:
    """The ground-truth person under each detected box (IoU >= 0.3), else None."""
    out: list[str | None] = [None] * len(xyxy)
    if not truth or not len(xyxy):
        return out
    iou = iou_matrix(np.array([b for _, b in truth]), xyxy)
    for (person, _), row in zip(truth, iou, strict=True):
        j = int(np.argmax(row))
        if row[j] >= 0.3 and out[j] is None:
            out[j] = person
    return out


def grouping(work: Workload, people: list[Person], frames: int) -> dict[str, Any]:
    """Run the workload through detect, match and the recorder; score the visitors."""
    detect = DetectStage(DetectConfig.model_validate({}), tracking=True)
    match = MatchStage(MatchConfig.model_validate({}), Watchlist(people))
    # (camera, track) -> (capture time, the ground-truth person) of each of its faces: one
    # track may hold several people in turn (the tracker's id stays when someone takes
    # another's place), and the grouper splits it there, so a visit is scored by its span
    who: dict[tuple[str, int], list[tuple[float, str]]] = defaultdict(list)
    named = Score()  # the names given on the way: id recall and strangers named
    with tempfile.TemporaryDirectory(prefix="sauron-visitors-") as tmp:
        cfg = StoreConfig.model_validate({"data_dir": tmp})
        store = Store.open(cfg)
        visitors = VisitorStore(store)
        grouper = VisitorGrouper(visitors, VisitorsConfig.model_validate({}))
        recorder = Recorder(store, cfg, dispatcher=None, visitors=grouper).start()
        t0 = time.time() - frames
        for n in range(frames):
            for ci in range(len(work.clips)):
                camera = f"cam{ci}"
                frame = Frame(camera, n, t0 + n / 10, work.jpeg(ci, n))
                det, timings = detect.process(frame)
                result, _ = match.process(frame, det, timings)
                named.add(work.people(ci, n), result.detections.xyxy, result.detections.names)
                for late in result.late:
                    d = late.detections
                    named.add_late(work.people(ci, late.frame.number), d.xyxy, d.names)
                for track, person in zip(
                    det.track_ids.tolist(), _truth_of(work.people(ci, n), det.xyxy), strict=True
                ):
                    if person is not None:
                        who[(camera, int(track))].append((frame.captured_at, person))
                recorder.add(result)
        recorder.close(timeout=120)
        with store.session() as s:
            visits = s.execute(
                Visit.__table__.select().with_only_columns(
                    Visit.visitor_id, Visit.camera, Visit.track, Visit.started_at, Visit.ended_at
                )
            ).all()
        store.close()
    by_visitor: dict[int, Counter[str]] = defaultdict(Counter)
    unknown = 0
    for visitor_id, camera, track, started, ended in visits:
        counts = Counter(p for ts, p in who.get((camera, int(track)), []) if started <= ts <= ended)
        if not counts:
            unknown += 1  # a track over no ground-truth face (a false detection)
            continue
        by_visitor[visitor_id][counts.most_common(1)[0][0]] += 1
    scored = sum(sum(c.values()) for c in by_visitor.values())
    pure = sum(c.most_common(1)[0][1] for c in by_visitor.values())
    per_stranger: dict[str, Counter[int]] = defaultdict(Counter)
    for visitor_id, counts in by_visitor.items():
        for person, k in counts.items():
            if person != WATCHED:
                per_stranger[person][visitor_id] += k
    stranger_visits = sum(sum(c.values()) for c in per_stranger.values())
    kept_together = sum(c.most_common(1)[0][1] for c in per_stranger.values())
    acc = named.to_json()
    return {
        "frames": frames * len(work.clips),
        "id_recall": round(int(acc["watched_named"]) / int(acc["watched_faces"]), 4),
        "strangers_named": acc["strangers_named"],
        "visits": len(visits),
        "visits_without_truth": unknown,
        "visitors": len(by_visitor),
        "strangers": len(per_stranger),
        "stranger_visits": stranger_visits,
        "watched_visits": sum(c.get(WATCHED, 0) for c in by_visitor.values()),
        "purity": round(pure / scored, 4) if scored else None,
        "completeness": round(kept_together / stranger_visits, 4) if stranger_visits else None,
        "visitors_per_stranger": {p: len(c) for p, c in sorted(per_stranger.items())},
    }


def single_shot(
    work: Workload,
    frames: list[tuple[int, int]],
    people: list[Person],
    *,
    still: bool,
    options: dict[str, object] | None = None,
    tracking: bool = True,
    shrink: float = 1.0,
) -> dict[str, Any]:
    """Watched recall and strangers named on ``frames`` (camera index, number), each
    shown once (``shrink``: scaled by this first); ``still``: marked as stills."""
    detect = DetectStage(DetectConfig.model_validate(options or {}), tracking=tracking)
    match = MatchStage(MatchConfig.model_validate({}), Watchlist(people))
    score = Score()
    single = 0
    truths: dict[int, tuple[tuple[str, tuple[int, int, int, int]], ...]] = {}
    for k, (ci, n) in enumerate(frames):
        jpeg, truth = work.jpeg(ci, n), work.people(ci, n)
        if shrink != 1.0:
            small = cv2.resize(
                decode_jpeg(jpeg), None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA
            )
            jpeg = encode_jpeg(small, JPEG_QUALITY)
            truth = tuple(
                (
                    who,
                    (
                        round(x0 * shrink),
                        round(y0 * shrink),
                        round(x1 * shrink),
                        round(y1 * shrink),
                    ),
                )
                for who, (x0, y0, x1, y1) in truth
            )
        frame = Frame(f"cam{ci}", k, float(k), jpeg, still=still)
        det, timings = detect.process(frame)
        result, _ = match.process(frame, det, timings)
        truths[k] = truth
        d = result.detections
        score.add(truth, d.xyxy, d.names)
        for late in result.late:  # an earlier frame's face named once its track ended
            score.add_late(truths[late.frame.number], late.detections.xyxy, late.detections.names)
        for d in (result.detections, *(late.detections for late in result.late)):
            single += sum(
                1 for name, v in zip(d.names, d.votes.tolist(), strict=True) if name and v == 1
            )
    acc = score.to_json()
    watched = int(acc["watched_faces"])
    return {
        **acc,
        "single_shot_recall": round(int(acc["watched_named"]) / watched, 4) if watched else None,
        "single_vote_names": single,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sauron bench visitors", description=__doc__)
    p.add_argument("--cameras", type=int, default=3)
    p.add_argument("--frames", type=int, default=300, help="frames per camera")
    p.add_argument("--still-every", type=int, default=10, help="single shot: every Nth frame")
    p.add_argument(
        "--shrink",
        default="1,0.5",
        help="single shot: comma-separated scales of the frames (0.5: faces 20-75 px wide; "
        "empty: no single-shot runs)",
    )
    p.add_argument("--out", type=Path, default=Path("sauron-bench"))
    args = p.parse_args(argv)
    work = make_realistic_workload(cameras=args.cameras, frames=args.frames)
    people = watchlist_people("auto")
    out: dict[str, Any] = {"cameras": args.cameras, "frames_per_camera": args.frames}
    t0 = time.perf_counter()
    out["grouping"] = grouping(work, people, args.frames)
    log.info("grouping: %s (%.0f s)", out["grouping"], time.perf_counter() - t0)
    shots = [
        (ci, n)
        for ci in range(args.cameras)
        for n in range(0, args.frames, max(1, args.still_every))
    ]
    dlib_people = watchlist_people("dlib")
    out["single_shot"] = {}
    for scale in (float(x) for x in args.shrink.split(",") if x.strip()):
        out["single_shot"][f"x{scale:g}"] = {
            "frames": len(shots),
            "sauron_stills": single_shot(work, shots, people, still=True, shrink=scale),
            "sauron_as_video_frames": single_shot(work, shots, people, still=False, shrink=scale),
            "bare_face_recognition_loop": single_shot(
                work,
                shots,
                dlib_people,
                still=True,
                options={"embedder": "dlib", "detector": {"upsample": 1}},
                tracking=False,
                shrink=scale,
            ),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "visitors.json").write_text(json.dumps(out, indent=2) + "\n")
    g = out["grouping"]
    print(
        f"names: id recall {g['id_recall']}, strangers named {g['strangers_named']}; "
        f"grouping: {g['visits']} visits -> {g['visitors']} visitors; purity {g['purity']}, "
        f"completeness {g['completeness']} ({g['strangers']} strangers, "
        f"{g['stranger_visits']} of their visits; {g['watched_visits']} visits of the "
        "watched person never named)"
    )
    for scale, runs in out["single_shot"].items():
        print(f"single shot, {len(shots)} frames each seen once, scaled {scale}:")
        for name, r in runs.items():
            if isinstance(r, dict):
                print(
                    f"  {name:28} recall {r['single_shot_recall']} "
                    f"({r['watched_named']} of {r['watched_faces']} faces, "
                    f"{r['watched_detected']} detected), "
                    f"strangers named {r['strangers_named']}"
                )
    print(f"wrote {args.out / 'visitors.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
