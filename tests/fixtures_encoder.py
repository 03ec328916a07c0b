"""Shared encoder fixtures (session-scoped artifacts built once per test run)."""

from __future__ import annotations
