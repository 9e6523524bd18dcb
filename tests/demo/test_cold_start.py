"""The README's first command from a cold cache, as a new user runs it.

``sauron run --demo`` used to crash (SIGSEGV) whenever the embedding cache was empty: the
pipeline's watchlist load and the web app's folder import ran one dlib detector from two
threads at once. Here the cache and the store's data folder are new empty folders.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPORT = re.compile(
    r"^  (\w+): (\d+)/(\d+) frames processed; 'obama' named in (\d+) of the (\d+) frames "
    r"they are in; (\d+) false alarms$",
    re.MULTILINE,
)


def test_demo_from_a_cold_cache(tmp_path: Path) -> None:
    cache, data = tmp_path / "cache", tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAURON_")}
    env.update(SAURON_CACHE=str(cache), XDG_DATA_HOME=str(data))
    proc = subprocess.run(
        [sys.executable, "-m", "sauron.cli", "run", "--demo", "--until-done", "--web-port", "0"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "Sauron demo: 2 cameras, watching for 'obama'" in proc.stdout
    cameras = {m[0]: [int(x) for x in m[1:]] for m in REPORT.findall(proc.stdout)}
    assert set(cameras) == {"lobby", "gate"}, proc.stdout
    for cam, (done, frames, named, present, false) in cameras.items():
        assert done == frames > 0, cam
        assert present > 0 and named >= 0.9 * present, cam
        assert false == 0, cam
    # the web app served, and the store was created in the new data folder
    assert re.search(r"web: http://127\.0\.0\.1:\d+", proc.stderr), proc.stderr[-2000:]
    assert (data / "sauron" / "sauron.db").is_file()
    # the pipeline and the web app's import share one computation of the photo's embedding
    assert len(re.findall(r"enroll: embedded \S+", proc.stderr)) == 1, proc.stderr[-4000:]
    assert len(list((cache / "embeddings").glob("*.npy"))) == 1
