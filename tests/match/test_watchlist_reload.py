"""Enrollments into the watchlist folder reach a running matcher without a restart."""

from __future__ import annotations

from pathlib import Path

from sauron.detect.models import FaceModel
from sauron.match.enroll import WatchlistDirWatcher, enroll_into_dir, remove_from_dir
from sauron.match.watchlist import Watchlist


def test_watcher_picks_up_enroll_and_removal(
    tmp_path: Path, photos: dict[str, Path], face_model: FaceModel
) -> None:
    root = tmp_path / "watchlist"
    root.mkdir()
    watchlist = Watchlist()
    watcher = WatchlistDirWatcher(face_model, root, watchlist)
    assert not watcher.check()  # nothing changed yet
    enroll_into_dir(face_model, root, "obama", [photos["obama.jpg"]])
    assert watcher.check()
    assert watchlist.names == ["obama"]
    emb = face_model.detect(_rgb(photos["obama2.jpg"])).embeddings
    names, _ = watchlist.match(emb, 0.6)
    assert names == ["obama"]
    assert remove_from_dir(root, "obama")
    assert watcher.check()
    assert watchlist.names == []


def _rgb(path: Path):  # type: ignore[no-untyped-def]
    from sauron.match.enroll import load_photo

    return load_photo(path.read_bytes())
