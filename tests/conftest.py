"""Shared fixtures: the sample photos and one face model for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest

from sauron.demo.samples import sample_photos
from sauron.detect.models import FaceModel


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    """{file name: path} of the face_recognition test photos (fetched once, then cached)."""
    return sample_photos()


@pytest.fixture(scope="session")
def face_model() -> FaceModel:
    """dlib HOG detection + dlib's reference embedder; loading models is slow, so share it."""
    return FaceModel(embedder="dlib")
