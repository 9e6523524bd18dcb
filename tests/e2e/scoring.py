"""Scoring a results file against the synthetic clips' ground truth."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sauron.demo.synth import WATCHED, ClipTruth
from sauron.detect.tracking import iou_matrix


@dataclass
class Score:
    frames_seen: Counter[tuple[str, int]]
    watched_found: int  # frames where the detector found the watched person's face
    watched_named: int  # ... and named them
    strangers_found: int
    strangers_named: int
    names: dict[tuple[str, int], list[str | None]]


def read_results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def score(clips: list[ClipTruth], records: list[dict[str, Any]]) -> Score:
    truth = {c.camera: c for c in clips}
    seen: Counter[tuple[str, int]] = Counter()
    names: dict[tuple[str, int], list[str | None]] = {}
    wf = wn = sf = sn = 0
    for rec in records:
        cam, num = rec["camera"], rec["frame"]
        seen[(cam, num)] += 1
        names[(cam, num)] = sorted((f["person"] for f in rec["faces"]), key=str)
        people = truth[cam].people[num]
        if not people or not rec["faces"]:
            continue
        # result boxes are [top, right, bottom, left]; truth boxes are xyxy
        got = np.array([[b[3], b[0], b[1], b[2]] for b in (f["box"] for f in rec["faces"])])
        want = np.array([box for _, box in people])
        iou = iou_matrix(want, got)
        for (person, _), row in zip(people, iou, strict=True):
            j = int(np.argmax(row))
            if row[j] < 0.3:
                continue
            named = rec["faces"][j]["person"]
            if person == WATCHED:
                wf += 1
                wn += named == WATCHED
            else:
                sf += 1
                sn += named is not None
    return Score(seen, wf, wn, sf, sn, names)
