"""``sauron bench frame-cost``: the parts add up, and a variant's settings take effect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sauron_bench.frame_cost import PARTS, main


@pytest.mark.timeout(300)
def test_a_tiny_run_splits_the_cost_of_a_frame(tmp_path: Path) -> None:
    argv = ["--cameras", "2", "--frames", "6", "--repeat", "1", "--out", str(tmp_path)]
    assert main([*argv, "--variant", "scan-all:detect_every=1,tracking=false"]) == 0
    doc = json.loads((tmp_path / "frame-cost.json").read_text())
    assert set(doc["runs"]) == {"defaults", "scan-all"}
    for name, (run,) in doc["runs"].items():
        assert run["frames"] == 12
        total = sum(run[k] for k in PARTS)
        assert total == pytest.approx(run["cpu_ms_per_frame"], abs=0.1), name
        assert run["decode"] > 0 and run["full scans"] > 0
    defaults, scan_all = doc["runs"]["defaults"][0], doc["runs"]["scan-all"][0]
    # without tracking every frame is one full scan and every face is embedded
    assert scan_all["counts"]["full scans"] == 12
    assert scan_all["counts"]["faces embedded"] == scan_all["counts"]["faces seen"]
    # with tracking (the defaults) the frames between scans follow their faces instead
    assert defaults["counts"]["full scans"] < 12
    assert defaults["counts"]["faces embedded"] < defaults["counts"]["faces seen"]
    assert doc["options"]["out"] == "DIR"
