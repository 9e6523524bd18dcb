"""The visitors benchmark on a tiny realistic run: its JSON is consistent with itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sauron_bench.visitors import main

pytestmark = pytest.mark.slow


def test_a_tiny_run_scores_the_grouping_and_the_single_shots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--cameras", "1", "--frames", "40", "--still-every", "20", "--shrink", "1"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "visitors.json").read_text())
    g = out["grouping"]
    assert g["frames"] == 40
    # every stranger in view got at least one visitor, and no visitor mixes people
    assert g["strangers"] >= 1 and g["visitors"] >= g["strangers"]
    assert g["purity"] == 1.0
    assert sum(g["visitors_per_stranger"].values()) <= g["visitors"]
    shots = out["single_shot"]["x1"]
    assert shots["frames"] == 2
    for run in ("sauron_stills", "sauron_as_video_frames", "bare_face_recognition_loop"):
        r = shots[run]
        assert r["watched_named"] <= r["watched_detected"] <= r["watched_faces"]
        assert r["strangers_named"] == 0
    assert "purity" in capsys.readouterr().out
