"""The import rules of DESIGN.md §2, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PROJECT_PACKAGES = {"daemon", "lsp", "indexer"}
HEAVY = {"torch", "transformers"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_lsp_and_indexer_import_no_other_project_package() -> None:
    offenders = []
    for package in ("lsp", "indexer"):
        for path in sources(package):
            bad = imported_roots(path) & (PROJECT_PACKAGES - {package})
            if bad:
                offenders.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    assert offenders == []


def test_torch_and_transformers_only_under_daemon_engine() -> None:
    offenders = []
    for package in PROJECT_PACKAGES:
        for path in sources(package):
            if path.is_relative_to(REPO / "daemon" / "engine"):
                continue
            bad = imported_roots(path) & HEAVY
            if bad:
                offenders.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    assert offenders == []


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import torch.nn\nfrom daemon.cli import main\n")
    assert imported_roots(probe) == {"torch", "daemon"}
