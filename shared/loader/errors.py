"""What the loader does with a failure: terminal ones are recorded, alerted and acknowledged;
transient ones raise, so Pub/Sub (or Eventarc) delivers the event again, and in the end dead-letters it."""
from __future__ import annotations

from shared.manifest import ManifestError


class RefusedError(ManifestError):
    """Terminal: applying this snapshot would be wrong whatever happens next; nothing was changed."""


class SchemaChangeError(RefusedError):
    """The snapshot's schema cannot be applied to the existing table without losing data."""


class TransientError(RuntimeError):
    """Worth another delivery: the same event may well succeed later."""


class BaseNotApplied(TransientError):
    """A delta arrived before the snapshot it applies on top of."""
