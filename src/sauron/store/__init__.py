"""The store: persons, photos, sightings, alerts, accounts and the audit log in SQL.

SQLite by default (one file, nothing to set up), PostgreSQL for several machines; see
:mod:`sauron.store.db` for the API, :mod:`sauron.store.migrations` for the schema,
:mod:`sauron.store.index` for search by photo.
"""

from __future__ import annotations

from sauron import SauronError


class StoreError(SauronError):
    """The store refused an operation or could not be reached; the message says why."""


class Conflict(StoreError):
    """The operation clashes with what is stored (e.g. a person of that name exists)."""


class NotFound(StoreError):
    """The named record does not exist."""
