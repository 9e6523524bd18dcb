"""Appearances: a person's (or an unknown face's) continuous presence at a camera, built
from the stored sightings, for the History page and its per-camera timeline.

A stored sighting carries its camera, capture time, track and name. Sightings of the
same camera and the same person (an unknown face: the same track) form one appearance
while no gap between two of them exceeds ``gap_s`` (default: ``alerts.gap_s``, what
ends an alert's appearance too, but at least twice ``store.sighting_interval_s``, how
often a face in view is stored). Each appearance tells its first and last sighting, how
many, and its best one (the nearest match; for an unknown face, the latest), with the
crop to show.

Distances are told as a **confidence** an operator can read: 100 % at distance 0, 50 %
at the match tolerance (``match.tolerance``: above it a face is not named), 0 % at twice
the tolerance and beyond.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from sauron.serve.web.auth import Ctx, Viewer
from sauron.serve.web.routes_history import SightingOut, Sightings, confidence, sighting_out
from sauron.store.db import SightingInfo

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["history"])
MAX_SCAN = 5000


class AppearanceOut(BaseModel):
    camera: str
    person: str | None = Field(description="the person's id; null: an unknown face")
    track: int = Field(description="the track of its first sighting")
    first_seen: float
    last_seen: float
    sightings: int
    confidence: float | None = Field(
        description="of the best sighting: 100 % at distance 0, 50 % at the match tolerance"
    )
    best: SightingOut = Field(description="the nearest match (unknown face: the latest)")


class AppearancePage(BaseModel):
    items: list[AppearanceOut]
    scanned: int = Field(description="sightings read")
    truncated: bool = Field(description="more sightings matched than were read: narrow the time")
    tolerance: float


def group_appearances(rows: list[SightingInfo], gap_s: float) -> list[list[SightingInfo]]:
    """Sightings (any order) grouped into appearances, each in capture order."""
    open_runs: dict[tuple[str, str], list[SightingInfo]] = {}
    done: list[list[SightingInfo]] = []
    for s in sorted(rows, key=lambda r: (r.ts, r.id)):
        key = (s.camera, f"p:{s.person}" if s.person else f"t:{s.track}")
        run = open_runs.get(key)
        if run is not None and s.ts - run[-1].ts <= gap_s:
            run.append(s)
            continue
        if run is not None:
            done.append(run)
        open_runs[key] = [s]
    done.extend(open_runs.values())
    return done


def _best(run: list[SightingInfo]) -> SightingInfo:
    if run[0].person is None:
        return run[-1]
    return min(run, key=lambda s: s.distance if s.distance is not None else float("inf"))


@router.get("/appearances", response_model=AppearancePage)
def appearances(
    ctx: Ctx,
    _p: Viewer,
    flt: Sightings,
    gap_s: Annotated[
        float | None,
        Query(
            gt=0,
            le=3600,
            description="default: alerts.gap_s, at least 2 x store.sighting_interval_s",
        ),
    ] = None,
    scan: Annotated[int, Query(ge=1, le=MAX_SCAN, description="sightings read at most")] = 2000,
) -> AppearancePage:
    """Appearances of the newest matching sightings (at most ``scan``), newest first."""
    rows = ctx.store.sightings(flt, limit=scan)
    tol = ctx.settings.match.tolerance
    default_gap = max(ctx.settings.alerts.gap_s, 2 * ctx.settings.store.sighting_interval_s)
    runs = group_appearances(rows, gap_s or default_gap)
    bests = [_best(run) for run in runs]
    with_clips = ctx.store.sightings_with_clips(bests)
    items = []
    for run, best in zip(runs, bests, strict=True):
        items.append(
            AppearanceOut(
                camera=run[0].camera,
                person=run[0].person,
                track=run[0].track,
                first_seen=run[0].ts,
                last_seen=run[-1].ts,
                sightings=len(run),
                confidence=confidence(best.distance, tol),
                best=sighting_out(best, best.id in with_clips),
            )
        )
    items.sort(key=lambda a: a.last_seen, reverse=True)
    truncated = len(rows) == scan
    return AppearancePage(items=items, scanned=len(rows), truncated=truncated, tolerance=tol)
