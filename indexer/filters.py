"""Which workspace files are indexed, and the reason each other file is not.

Order of the checks, cheapest first: default-ignored folders, secrets, the user's exclude globs,
`.gitignore` files at every level (nearest one wins, negations honoured), the include globs or
the known source suffixes; then, when the file is read, the size cap, NUL bytes and UTF-8.
Every reason is a short stable string so callers can count skips by reason.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import pathspec

from indexer.languages import INDEXED_SUFFIXES

__all__ = [
    "DEFAULT_IGNORED_DIRS",
    "SECRET_NAMES",
    "IndexRules",
    "PathFilter",
    "read_text",
]

logger = logging.getLogger(__name__)

DEFAULT_IGNORED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        ".env",
        "env",
        "node_modules",
        "bower_components",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".cache",
        ".idea",
        ".vscode",
        "build",
        "dist",
        "out",
        "target",
        ".next",
        ".gradle",
        "site-packages",
        ".eggs",
    }
)
# Never indexed unless `index_secrets`: a draft must not echo a key into someone's editor.
SECRET_NAMES = (
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    "credentials",
    "credentials.*",
    "*credentials*.json",
    "secrets.*",
    "*.secret",
    "*.secrets",
)
_GITIGNORE = ".gitignore"


@dataclass(frozen=True)
class IndexRules:
    """What the user asked to index. Globs use .gitignore syntax, relative to the folder."""

    include: tuple[str, ...] = ()  # empty: every file with a known source suffix
    exclude: tuple[str, ...] = ()
    max_bytes: int = 1 << 20
    index_secrets: bool = False
    respect_gitignore: bool = True

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {self.max_bytes}")
        for glob in (*self.include, *self.exclude):
            if not isinstance(glob, str) or not glob.strip():
                raise ValueError(f"bad glob {glob!r}")
        pathspec.GitIgnoreSpec.from_lines(self.include)  # raises on a malformed pattern
        pathspec.GitIgnoreSpec.from_lines(self.exclude)


class PathFilter:
    """Decides, from the path alone, whether a file or folder under `root` is indexed."""

    def __init__(self, root: Path, rules: IndexRules | None = None) -> None:
        self.root = root
        self.rules = rules or IndexRules()
        self._include = pathspec.GitIgnoreSpec.from_lines(self.rules.include)
        self._exclude = pathspec.GitIgnoreSpec.from_lines(self.rules.exclude)
        self._lock = threading.Lock()
        self._gitignores: dict[Path, pathspec.GitIgnoreSpec | None] = {}

    def forget_gitignore(self, folder: Path) -> None:
        """A `.gitignore` in `folder` changed: read it again next time."""
        with self._lock:
            self._gitignores.pop(folder, None)

    def folder_reason(self, path: Path) -> str | None:
        """Why the folder `path` (under root) is not walked, or None."""
        if path.name in DEFAULT_IGNORED_DIRS:
            return "ignored_dir"
        relative = self._relative(path)
        if relative is None:
            return "outside"
        if self._exclude.match_file(relative + "/"):
            return "excluded"
        if self._gitignored(path, is_dir=True):
            return "gitignored"
        return None

    def file_reason(self, path: Path) -> str | None:
        """Why the file `path` (under root) is not indexed, judged by its path, or None."""
        relative = self._relative(path)
        if relative is None:
            return "outside"
        parts = relative.split("/")
        if DEFAULT_IGNORED_DIRS.intersection(parts[:-1]):
            return "ignored_dir"
        secret = is_secret(path.name)
        if secret and not self.rules.index_secrets:
            return "secret"
        if self._exclude.match_file(relative):
            return "excluded"
        if self._gitignored(path, is_dir=False):
            return "gitignored"
        if secret:
            return None  # asked for by `index_secrets`, whatever its suffix
        if self.rules.include:
            return None if self._include.match_file(relative) else "not_included"
        return None if path.suffix.lower() in INDEXED_SUFFIXES else "not_source"

    def _relative(self, path: Path) -> str | None:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return None

    def _gitignored(self, path: Path, is_dir: bool) -> bool:
        """The nearest `.gitignore` that has an opinion decides (git's own precedence)."""
        if not self.rules.respect_gitignore:
            return False
        folder = path.parent
        while True:
            spec = self._gitignore(folder)
            if spec is not None:
                relative = path.relative_to(folder).as_posix() + ("/" if is_dir else "")
                verdict = spec.check_file(relative).include
                if verdict is not None:
                    return verdict
            if folder == self.root or folder.parent == folder:
                return False
            folder = folder.parent

    def _gitignore(self, folder: Path) -> pathspec.GitIgnoreSpec | None:
        with self._lock:
            if folder in self._gitignores:
                return self._gitignores[folder]
        try:
            lines = (folder / _GITIGNORE).read_text(encoding="utf-8", errors="replace")
            spec: pathspec.GitIgnoreSpec | None = pathspec.GitIgnoreSpec.from_lines(
                lines.splitlines()
            )
        except OSError:
            spec = None  # none there (or unreadable): no opinion
        except ValueError as exc:
            logger.warning("ignoring malformed %s: %s", folder / _GITIGNORE, exc)
            spec = None
        with self._lock:
            self._gitignores[folder] = spec
        return spec


def is_secret(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), pattern) for pattern in SECRET_NAMES)


def read_text(path: Path, max_bytes: int) -> tuple[bytes | None, str | None]:
    """(UTF-8 bytes, None) or (None, reason): too large, binary, not UTF-8, gone, unreadable.

    The size is checked before reading, so a 50 MB file costs one stat.
    """
    try:
        # non-blocking open: a FIFO named like a source file must not hang the indexer
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None, "vanished"
    except OSError:
        return None, "unreadable"
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            return None, "not_a_file"
        if status.st_size > max_bytes:
            return None, "too_large"
        raw = read_up_to(descriptor, max_bytes + 1)
    except OSError:
        return None, "unreadable"
    finally:
        os.close(descriptor)
    if len(raw) > max_bytes:  # grew between the stat and the read
        return None, "too_large"
    if b"\0" in raw:
        return None, "binary"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not_utf8"
    return raw, None


def read_up_to(descriptor: int, limit: int) -> bytes:
    """At most `limit` bytes from an open file, fewer at its end."""
    parts: list[bytes] = []
    while limit > 0:
        part = os.read(descriptor, min(limit, 1 << 20))
        if not part:
            break
        parts.append(part)
        limit -= len(part)
    return b"".join(parts)
