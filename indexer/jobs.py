"""What the workspace indexer's worker is asked to do, queued from any thread, done in order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["AddFolder", "Buffer", "CloseBuffer", "Event", "Job", "Reindex", "RemoveFolder", "Stop"]


@dataclass(frozen=True, slots=True)
class AddFolder:
    root: Path


@dataclass(frozen=True, slots=True)
class RemoveFolder:
    root: Path


@dataclass(frozen=True, slots=True)
class Reindex:
    path: Path | None  # None: every folder


@dataclass(frozen=True, slots=True)
class Buffer:
    path: Path
    text: str  # an open document's unsaved text
    edit: bool = False  # a keystroke's change: indexed once typing pauses (see workspace.py)


@dataclass(frozen=True, slots=True)
class CloseBuffer:
    path: Path


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # watchdog's event type
    path: Path
    dest: Path | None  # where a move went


@dataclass(frozen=True, slots=True)
class Stop:
    pass


Job = AddFolder | RemoveFolder | Reindex | Buffer | CloseBuffer | Event | Stop
