"""The command line's way into the lab: `codeswift bench`, and `generate` with a lab method."""

from __future__ import annotations

import argparse
import dataclasses
import json

from daemon.cli import (
    DEFAULT_BENCH_METHODS,
    corpus_folders,
    fitted_prompt,
    print_generated,
    workspace_folder,
)
from daemon.errors import UsageError

__all__ = ["generate_in_lab", "run_bench_command"]

# what a replay compares unless --methods says otherwise: the product against its ablations
_REPLAY_METHODS = (
    "lookup",
    "codeswift",
    "codeswift-no-scoring",
    "codeswift-no-general",
    "codeswift-no-project",
    "codeswift-no-context",
    "codeswift-no-memory",
    "codeswift-no-recycled",
    "codeswift-no-analogy",
    "codeswift-no-timing",
)


def run_bench_command(args: argparse.Namespace) -> int:
    """`codeswift bench`: the suite `args` name, its report printed (and written, plotted)."""
    if args.cost_curve is not None and not args.suite.startswith("replay:"):
        raise UsageError("--cost-curve is for replay suites only")
    if args.suite == "soak":
        from daemon.bench.soak import run_soak_bench

        if args.minutes <= 0:
            raise UsageError(f"--minutes must be positive, got {args.minutes}")
        report = run_soak_bench(
            args.model, workspace_folder(args.workspace), args.minutes, args.seed
        )
        print(json.dumps(report, indent=2))
        if args.json_file:
            args.json_file.write_text(json.dumps(report, indent=2))
        return 0 if all(report["checks"].values()) else 1
    if args.suite == "steps":
        from daemon.bench.steps import format_steps, run_steps_bench

        report = run_steps_bench(args.model, args.dtype)
        print(format_steps(report))
        if args.json_file:
            args.json_file.write_text(json.dumps(report, indent=2))
        return 0
    if args.suite in ("stores", "index", "lsp"):
        from daemon.bench.index import run_index_bench
        from daemon.bench.latency import run_lsp_bench
        from daemon.bench.stores import run_store_bench

        workspace = workspace_folder(args.workspace)
        if args.suite == "lsp":
            report = run_lsp_bench(
                args.model, workspace, args.limit, args.seed, args.context_tokens
            )
        else:
            run = run_store_bench if args.suite == "stores" else run_index_bench
            report = run(args.model, workspace)
        print(json.dumps(report, indent=2))
        if args.json_file:
            args.json_file.write_text(json.dumps(report, indent=2))
        return 0
    if args.suite.startswith("edit:"):
        from daemon.bench.edit import format_edit_table, run_edit_bench

        report = run_edit_bench(
            args.model,
            args.suite.removeprefix("edit:"),
            args.limit,
            args.seed,
            args.device,
            args.dtype,
            args.backend,
            context_tokens=args.context_tokens,
            methods=_edit_methods(args.methods),
        )
        print(format_edit_table(report))
        if args.json_file:
            args.json_file.write_text(json.dumps(report, indent=2))
        return 0
    from daemon.bench.replay import format_replay_table, run_replay_bench
    from daemon.bench.speed import BenchOptions, format_table, run_bench, write_plot

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    options = BenchOptions(
        suite=args.suite,
        methods=methods,
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        model=args.model,
        dtype=args.dtype,
        device=args.device,
        backend=args.backend,
        workspace=workspace_folder(args.workspace),
        corpus=corpus_folders(args.corpus),
        seed=args.seed,
        project_weight=args.project_weight,
        assistant=args.assistant,
        memory=args.memory,
        cost_curve=args.cost_curve,
    )
    replay = args.suite.startswith("replay:")
    if replay and args.methods == DEFAULT_BENCH_METHODS:
        options = dataclasses.replace(options, methods=_REPLAY_METHODS)
    report = run_replay_bench(options) if replay else run_bench(options)
    print(format_replay_table(report) if replay else format_table(report))
    if args.json_file:
        args.json_file.write_text(json.dumps(report, indent=2))
    if args.plot:
        write_plot(report, args.plot)
    return 0


def generate_in_lab(args: argparse.Namespace, text: str) -> int:
    """`codeswift generate --method M` for a peer or an ablation."""
    from daemon.bench.methods import Lab, split_method

    split_method(args.method)  # a clear error for an unknown method or backend
    lab = Lab.open(
        args.model,
        args.device,
        args.dtype,
        [args.method],
        workspace_folder(args.workspace),
        corpus_folders(args.corpus),
        backend=args.backend,
    )
    ids, dropped = fitted_prompt(lab.engine.lm, text, args.max_new_tokens)
    done = lab.run(args.method, ids, args.max_new_tokens, tuple(args.stop))
    print_generated(args, done, lab.engine.lm, len(ids), dropped)
    return 0


def _edit_methods(methods: str) -> tuple[str, ...]:
    """The methods an edit session replays, one session each: codeswift unless --methods
    names others (the first is the report's own; e.g. codeswift,codeswift-no-memory)."""
    if methods == DEFAULT_BENCH_METHODS:
        return ("codeswift",)
    named = tuple(m.strip() for m in methods.split(",") if m.strip())
    if not named:
        raise UsageError("--methods names no method")
    return named
