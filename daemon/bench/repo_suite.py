"""Repository-level tasks from an installed distribution (`--suite repo:DIST`).

A task is one function of the distribution whose body has 3-40 lines: the prompt is its file up
to and including the signature and docstring; the project store sees the distribution's sources
with that body removed, so the answer never leaks into the drafts.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import random
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import UsageError

__all__ = ["RepoTask", "package_root", "repo_tasks"]


@dataclass(frozen=True, slots=True)
class RepoTask:
    task_id: str
    prompt: str
    relative: str  # the file, relative to the package folder
    masked_text: str  # the file without the function's body
    original_text: str


def package_root(dist: str) -> Path:
    try:
        distribution = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        raise UsageError(f"distribution {dist} is not installed; pip install {dist}") from None
    top = (distribution.read_text("top_level.txt") or "").split()
    files = [f for f in distribution.files or [] if str(f).endswith(".py")]
    names = top or sorted({str(f).split("/")[0] for f in files if "/" in str(f)})
    for name in names:
        root = Path(str(distribution.locate_file(name)))
        if root.is_dir():
            return root
    raise UsageError(f"distribution {dist} has no package folder with Python sources")


def _tasks_in(root: Path, path: Path) -> list[RepoTask]:
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, UnicodeDecodeError, SyntaxError):
        return []
    lines = text.splitlines(keepends=True)
    relative = path.relative_to(root).as_posix()
    tasks = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        has_doc = (
            isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        )
        code = body[1:] if has_doc else body
        if not code or node.end_lineno is None:
            continue
        first, last = code[0].lineno, node.end_lineno  # 1-based, inclusive
        if not 3 <= last - first + 1 <= 40 or first == node.lineno:
            continue
        prompt = "".join(lines[: first - 1])
        masked = prompt + "".join(lines[last:])
        tasks.append(
            RepoTask(f"{relative}:{node.name}@{node.lineno}", prompt, relative, masked, text)
        )
    return tasks


def repo_tasks(dist: str, limit: int, seed: int = 0) -> tuple[Path, list[RepoTask]]:
    """The package folder of `dist` and `limit` tasks drawn from it (deterministic for a seed)."""
    root = package_root(dist)
    candidates = [t for path in sorted(root.rglob("*.py")) for t in _tasks_in(root, path)]
    if not candidates:
        raise UsageError(f"no functions with 3-40 line bodies found in {dist}")
    random.Random(seed).shuffle(candidates)
    return root, candidates[:limit]
