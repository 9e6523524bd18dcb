"""Sauron: real-time face recognition for networks of surveillance cameras."""

from __future__ import annotations

__version__ = "0.1.0"


class SauronError(Exception):
    """Root of every error this package raises on purpose."""
