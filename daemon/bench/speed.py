"""`codeswift bench`: every method on the same prompts in one process, side by side.

Methods take turns prompt by prompt, so slow drift of a noisy machine hits all of them alike.
`ar` always runs: it is the reference for `speedup`. Each method's own reference (the greedy of
its backend, `Lab.reference`) runs too: `identical` is the fraction of prompts whose tokens
equal the reference's exactly, `own_speedup` the speed against it (the paper's figure).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from daemon.bench.humaneval import humaneval_problems, pass_at_1
from daemon.bench.repo_suite import RepoTask, repo_tasks
from daemon.bench.report import format_table, method_row, write_plot
from daemon.engine.registry import DEFAULT_MODEL
from daemon.errors import UsageError

__all__ = ["BenchOptions", "format_table", "humaneval_prompts", "run_bench", "write_plot"]

_WARMUP_PROMPT = "def add(a, b):\n    return"


@dataclass(frozen=True, slots=True)
class BenchOptions:
    suite: str
    methods: tuple[str, ...]
    limit: int
    max_new_tokens: int
    model: str
    dtype: str
    device: str
    backend: str = "auto"
    workspace: Path | None = None
    corpus: tuple[Path, ...] = ()
    seed: int = 0
    context_tokens: int = 1536  # prompts are left-truncated to this many tokens
    project_weight: float | None = None  # None: the engine's default (RetrievalConfig)
    assistant: str = DEFAULT_MODEL  # the draft model of `assisted`
    memory: bool = True  # probe each method's peak memory in a fresh process
    cost_curve: Path | None = None  # replay suites: another machine's step costs

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise UsageError("--limit must be at least 1")
        if self.max_new_tokens < 1:
            raise UsageError("--max-new-tokens must be at least 1")


def humaneval_prompts(limit: int) -> list[tuple[str, str]]:
    """(task id, prompt) of the first `limit` HumanEval problems, from the package's data file."""
    return [(p["task_id"], p["prompt"]) for p in humaneval_problems(limit)]


@dataclass(frozen=True, slots=True)
class BenchTask:
    task_id: str
    prompt: str
    hidden: RepoTask | None = None  # a repo task's body is hidden from the project store


def suite_tasks(
    suite: str, limit: int, seed: int, workspace: Path | None
) -> tuple[Path | None, list[BenchTask]]:
    """The workspace the suite implies (if any; else `workspace`) and its tasks."""
    if suite == "humaneval":
        return workspace, [BenchTask(*p) for p in humaneval_prompts(limit)]
    if suite.startswith("repo:"):
        root, tasks = repo_tasks(suite.removeprefix("repo:"), limit, seed)
        return root, [BenchTask(t.task_id, t.prompt, t) for t in tasks]
    raise UsageError(
        f"unknown suite {suite!r}; available: humaneval, repo:DIST, edit:DIST, replay:SUITE, "
        "steps, stores, index, lsp"
    )


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Run the suite and return the report (the shape DESIGN.md §3 fixes, and more)."""
    from daemon.bench.methods import Lab, needs_stores, runtime_environment, split_method
    from daemon.engine.engine import fit_prompt

    for method in options.methods:
        split_method(method)  # a clear error for an unknown method or backend
    workspace, tasks = suite_tasks(options.suite, options.limit, options.seed, options.workspace)
    lab = Lab.open(
        options.model,
        options.device,
        options.dtype,
        options.methods,
        workspace,
        options.corpus,
        options.project_weight,
        options.backend,
    )
    asked = ("ar", *[m for m in options.methods if m != "ar"])
    references = {m: lab.reference(m) for m in asked}
    methods = tuple(dict.fromkeys([*asked, *references.values()]))
    references |= {m: lab.reference(m) for m in methods}
    if "assisted" in methods:
        lab.attach_assistant(options.assistant)
    engine = lab.engine
    lm = engine.lm
    warm = lm.tokenizer(_WARMUP_PROMPT)["input_ids"]
    for method in methods:  # first calls pay one-off costs (allocator, kernels) outside timing
        lab.run(method, warm, 8)

    runs: dict[str, list[Any]] = {m: [] for m in methods}
    for task in tqdm(tasks, desc=f"bench {options.suite}", unit="prompt"):
        ids = lm.tokenizer(task.prompt)["input_ids"][-options.context_tokens :]
        ids, _ = fit_prompt(lm, ids, options.max_new_tokens)
        with lab.hiding(task.hidden):
            for method in methods:
                runs[method].append(lab.run(method, ids, options.max_new_tokens))
        rates = ", ".join(f"{m} {runs[m][-1].decoded.tokens_per_s:.1f}" for m in methods)
        tqdm.write(f"{task.task_id}: {rates}", file=sys.stderr)

    task_ids = [task.task_id for task in tasks]
    report_methods = {
        m: method_row(runs[m], runs["ar"], runs[references[m]], task_ids) for m in methods
    }
    for method, row in report_methods.items():
        row["reference"] = references[method]
        calibration = lab.calibration(method)
        if calibration is not None:
            row["calibration"] = calibration
    if options.suite == "humaneval":  # does the output still solve the problems?
        problems = humaneval_problems(options.limit)
        for method, row in report_methods.items():
            row["pass_at_1"] = pass_at_1(problems, [c.text for c in runs[method]])
    if options.memory:
        _add_memory(report_methods, options, workspace, tasks, lm)
    report = {
        "suite": options.suite,
        "prompts": len(tasks),
        "max_new_tokens": options.max_new_tokens,
        "env": runtime_environment(lm, lab.backend),
        "methods": report_methods,
        "retrieval": _retrieval_report(engine, runs["ar"], tasks) if needs_stores(methods) else {},
    }
    curve = engine.known_curve
    if curve is not None:  # the trees' cost curve: a replay elsewhere can model this machine
        report["cost_curve_ms"] = dict(zip(curve.sizes, curve.ms, strict=True))
    return report


def _add_memory(
    rows: dict[str, dict[str, Any]],
    options: BenchOptions,
    workspace: Path | None,
    tasks: Sequence[BenchTask],
    lm: Any,
) -> None:
    """Peak resident memory per method, each in a fresh process, on the suite's longest prompt
    (the largest KV cache)."""
    from daemon.bench.memory_probe import ProbeSpec, probe_peak_mb

    prompts = [lm.tokenizer(t.prompt)["input_ids"][-options.context_tokens :] for t in tasks]
    longest = max(prompts, key=len)
    for method, row in tqdm(rows.items(), desc="memory", unit="method"):
        spec = ProbeSpec(
            method=method,
            model=options.model,
            device=options.device,
            dtype=options.dtype,
            prompts=[longest],
            max_new_tokens=options.max_new_tokens,
            workspace=str(workspace) if workspace is not None else None,
            corpus=tuple(str(c) for c in options.corpus),
            assistant=options.assistant,
            backend=options.backend,
        )
        row.update(probe_peak_mb(spec))
    key = "peak_device_mb" if "peak_device_mb" in rows["ar"] else "peak_rss_mb"
    for row in rows.values():  # on a GPU what counts is the device's memory
        row["memory_vs_ar"] = round(row[key] / rows["ar"][key], 3)
        row["memory_vs_reference"] = round(row[key] / rows[row["reference"]][key], 3)


def _retrieval_report(engine: Any, reference: list[Any], tasks: Any) -> dict[str, Any]:
    """Datastore search latency, sequential against parallel, on the contexts this run saw."""
    from daemon.bench.retrieval import retrieval_latency

    contexts = []
    for task, done in zip(tasks, reference, strict=True):
        ids = engine.lm.tokenizer(task.prompt)["input_ids"]
        tokens = done.decoded.tokens
        contexts += [ids + tokens[:k] for k in range(0, len(tokens), 2)]
    project = engine.project.layers() if engine.project is not None else ()
    return {
        "general_tokens": len(engine.general) if engine.general is not None else 0,
        "project_tokens": sum(len(layer) for layer in project),
        "sequential": retrieval_latency(engine.general, project, contexts, parallel=False),
        "parallel": retrieval_latency(engine.general, project, contexts, parallel=True),
    }
