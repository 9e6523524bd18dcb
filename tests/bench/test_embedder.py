"""``sauron bench embedder``: dlib's ResNet against its ONNX port, figures as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sauron_bench import embedder as bench


@pytest.mark.slow
def test_benchmark_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert (
        bench.main(["--faces", "2", "--batches", "1,2", "--repeat", "1", "--json", str(out)]) == 0
    )
    result = json.loads(out.read_text())
    assert set(result["onnx_ms_per_face"]) == {"1", "2"}
    assert result["dlib_ms_per_face"] > 0 and result["speedup"] > 0
    assert result["max_abs_diff"] <= 1e-5  # the parity of tests/detect/test_embedders.py
    assert "ms/face" in capsys.readouterr().out
