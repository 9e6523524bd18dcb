"""End to end: synthetic cameras through the embedded bus and through a real Kafka broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from sauron.demo.synth import WATCHED, ClipTruth
from sauron.pipeline import RunOptions, run

from .conftest import clip_settings
from .scoring import Score, read_results, score

pytestmark = pytest.mark.slow


def _check(clips: list[ClipTruth], result: Score) -> None:
    for clip in clips:
        got = sorted(num for (cam, num) in result.frames_seen if cam == clip.camera)
        assert got == list(range(clip.frames)), f"{clip.camera}: frames missing or extra"
    assert all(n == 1 for n in result.frames_seen.values()), "a frame came out twice"
    assert result.watched_found >= 20, "the detector should find the watched person"
    assert result.watched_named >= 0.9 * result.watched_found, (
        f"named in {result.watched_named} of {result.watched_found} frames"
    )
    assert result.strangers_found > 0
    assert result.strangers_named == 0, "a stranger was named"
    for (cam, num), names in result.names.items():
        truth = {p for p, _ in next(c for c in clips if c.camera == cam).people[num]}
        if WATCHED in names:
            assert WATCHED in truth, f"{cam} frame {num}: named {WATCHED} who is not there"


@pytest.fixture(scope="module")
def embedded_score(
    clips: list[ClipTruth], watchlist_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Score:
    out = tmp_path_factory.mktemp("embedded") / "results.jsonl"
    summary = run(
        clip_settings(clips, watchlist_dir),
        RunOptions(processes=2, until_done=True, results=out, timeout_s=300),
    )
    assert summary.ok
    return score(clips, read_results(out))


def test_embedded_names_the_watched_person_only(
    clips: list[ClipTruth], embedded_score: Score
) -> None:
    _check(clips, embedded_score)


@pytest.mark.kafka
def test_kafka_two_workers_same_results_as_embedded(
    clips: list[ClipTruth],
    watchlist_dir: Path,
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
    embedded_score: Score,
) -> None:
    out = tmp_path / "results.jsonl"
    settings = clip_settings(
        clips,
        watchlist_dir,
        bus={"type": "kafka", "bootstrap_servers": kafka_bootstrap},
        topics={"prefix": topic_prefix, "partitions": 4},
    )
    summary = run(settings, RunOptions(processes=2, until_done=True, results=out, timeout_s=300))
    assert summary.ok
    result = score(clips, read_results(out))
    _check(clips, result)
    assert result.names == embedded_score.names
