"""The import rules of DESIGN.md §2 and README's Architecture, checked on the source tree.

- `lsp` and `indexer` import no other project package;
- `daemon/engine/` imports no `indexer`, and of the rest of `daemon` only `daemon.errors`;
- inference libraries (torch, transformers, llama.cpp) are imported only under `daemon/engine/`;
- the backend-free half of the engine (the decode loop, drafters, trees, plans, budgets) imports
  no inference library and no backend module: a second backend plugs into the forward port;
- the product (every module outside `daemon/bench/`) imports nothing from `daemon.bench`, and
  nothing outside the lab imports `daemon.engine.lab` or `daemon.engine.llamacpp` (the lab's
  peers); the command line may reach the lab only
  from inside a function (the `bench` subcommand, and `generate` with a lab method).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

PROJECT_PACKAGES = {"daemon", "lsp", "indexer"}
INFERENCE = {"torch", "transformers", "llama_cpp", "gguf"}
LAB_ONLY = ("daemon.engine.lab", "daemon.engine.llamacpp")
BACKEND_FREE = (
    "decode.py",
    "drafters.py",
    "retrieval.py",
    "tree.py",
    "plan.py",
    "budget.py",
    "forward.py",
    "stops.py",
    "datastore.py",
    "project_shards.py",
    "project_index.py",
)
BACKEND_MODULES = {
    "daemon.engine.models",
    "daemon.engine.torch_forward",
    "daemon.engine.attention",
    "daemon.engine.native_forward",
    "daemon.engine.linears",
    "daemon.engine.cpu_kernels",
    "daemon.engine.backends",
    "daemon.engine.llamacpp",
}


@dataclass(frozen=True)
class Imported:
    module: str  # dotted name as written ("torch.nn", "daemon.engine.plan")
    top_level: bool  # at module level, not inside a function


def imports_of(path: Path) -> list[Imported]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Imported] = []

    def visit(node: ast.AST, top_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Imported(alias.name, top_level) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append(Imported(child.module, top_level))
                # `from daemon import bench` imports daemon.bench
                found.extend(
                    Imported(f"{child.module}.{alias.name}", top_level) for alias in child.names
                )
            inside = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(child, top_level and not inside)

    visit(tree, True)
    return found


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(root: Path) -> list[str]:
    """Every broken rule in the tree at `root`, one line each."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        package = relative.parts[0]
        if package not in PROJECT_PACKAGES:
            continue
        in_engine = relative.parts[:2] == ("daemon", "engine")
        in_lab = relative.parts[:2] == ("daemon", "bench")
        for imported in imports_of(path):
            name, root_name = imported.module, imported.module.split(".")[0]
            where = f"{relative.as_posix()} imports {name}"
            if package in ("lsp", "indexer") and root_name in PROJECT_PACKAGES - {package}:
                found.append(f"{where}: lsp and indexer import no other project package")
            if in_engine and root_name == "indexer":
                found.append(f"{where}: the engine never imports the indexer")
            if (
                in_engine
                and root_name == "daemon"
                and not (_under(name, "daemon.engine") or _under(name, "daemon.errors"))
                and name != "daemon"
            ):
                found.append(f"{where}: the engine imports only itself and daemon.errors")
            if root_name in INFERENCE and not in_engine:
                found.append(f"{where}: inference libraries only under daemon/engine/")
            backend = root_name in INFERENCE or name in BACKEND_MODULES
            if in_engine and relative.name in BACKEND_FREE and backend:
                found.append(f"{where}: the decode side talks to models through the port")
            if not in_lab and _under(name, "daemon.bench"):
                lazy_cli = relative.as_posix() == "daemon/cli.py" and not imported.top_level
                if not lazy_cli:
                    found.append(f"{where}: the product never imports the lab")
            for lab_only in LAB_ONLY:
                if not in_lab and _under(name, lab_only):
                    found.append(f"{where}: only the lab imports {lab_only}")
    return found


def test_the_source_tree_follows_the_rules() -> None:
    assert violations(REPO) == []


def test_planted_violations_are_caught(tmp_path: Path) -> None:
    planted = {
        "lsp/bad.py": "from daemon.service import Service\n",
        "indexer/bad.py": "import lsp.server\n",
        "daemon/engine/bad.py": "from indexer.scan import FolderIndexer\n",
        "daemon/engine/worse.py": "from daemon.service import Service\n",
        "daemon/engine/decode.py": "import torch\nfrom daemon.engine.models import LoadedModel\n",
        "daemon/service.py": "from daemon.bench.methods import METHODS\n",
        "daemon/serve.py": "def f():\n    from daemon import bench\n",
        "daemon/cli.py": "from daemon.bench.speed import run_bench\n",
        "daemon/assembly.py": "import transformers\nfrom daemon.engine.lab import hf_generate\n",
        "daemon/setup_model.py": "from daemon.engine.llamacpp import LlamaCppPeer\n",
        "lsp/heavy.py": "import llama_cpp\n",
    }
    for name, source in planted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    (tmp_path / "daemon/bench").mkdir()
    (tmp_path / "daemon/bench/ok.py").write_text("from daemon.engine.lab import hf_generate\n")
    lazy = "def bench():\n    from daemon.bench.speed import run_bench\n"
    found = violations(tmp_path)
    expected = [
        "lsp/bad.py imports daemon.service",
        "indexer/bad.py imports lsp.server",
        "daemon/engine/bad.py imports indexer.scan",
        "daemon/engine/worse.py imports daemon.service",
        "daemon/engine/decode.py imports torch",
        "daemon/engine/decode.py imports daemon.engine.models",
        "daemon/service.py imports daemon.bench.methods",
        "daemon/serve.py imports daemon.bench",
        "daemon/cli.py imports daemon.bench.speed",
        "daemon/assembly.py imports transformers",
        "daemon/assembly.py imports daemon.engine.lab",
        "daemon/setup_model.py imports daemon.engine.llamacpp",
        "lsp/heavy.py imports llama_cpp",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in found), start
    assert not any(line.startswith("daemon/bench/") for line in found)
    (tmp_path / "daemon/cli.py").write_text(lazy)  # reaching the lab from a subcommand is fine
    assert not any(line.startswith("daemon/cli.py") for line in violations(tmp_path))
