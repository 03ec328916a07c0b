"""Artifact timestamps: one format everywhere (UTC, ISO 8601, whole seconds)."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds, e.g. `2025-01-31T12:00:00+00:00`."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()
