"""Errors of the local launcher's client."""

from __future__ import annotations


class PackagingError(RuntimeError):
    """An executable could not be packaged; the message says what to fix."""
