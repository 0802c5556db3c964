"""Errors the command line reports as one clear line (exit code 2), never as a traceback."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """Bad input from the user or a broken installation, with a message that says the fix."""
