"""`--suite replay:SUITE`: our methods' drafting replayed on `ar`'s outputs, without the model.

Greedy output is fixed, so once `ar` has decoded each prompt, any method's steps can be replayed
exactly: its drafter proposes, its tree policy builds the tree, and the tree is walked along the
true tokens, which is what the model's verification would accept. The step's time comes from
the backend's measured cost curve, so the modelled decode speed is free of the timing noise of
a shared 2-core machine, and a dozen ablations take seconds instead of an hour. What is not
modelled: retrieval time (the real bench reports it) and, for the recycled source, the argmax
after rows off the accepted path (the replay knows only the true tokens).

SUITE is `repo:DIST` or `humaneval`, as for the real bench. `--cost-curve FILE` models another
machine: trees are cut, and steps timed, on that curve (an AMX Xeon's flat one on an AVX2
EPYC, whose steps cost 1.2x a one-row step at 2 rows and 2.0x at 4). `ar`'s outputs are kept
in the user cache, keyed by the forward port's identity (model name and weights, backend,
kernel build, precision, threads), the prompt and the token budget: a second replay skips the
model (on a 2-core AVX2 EPYC the 20 prompts of a repository suite cost ~10 minutes).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from daemon.bench.speed import BenchOptions, suite_tasks
from daemon.engine.atomic import write_atomically
from daemon.engine.budget import CostCurve
from daemon.engine.registry import cache_root
from daemon.engine.tree import EMPTY_TREE
from daemon.errors import UsageError

__all__ = ["format_replay_table", "run_replay_bench"]


def run_replay_bench(options: BenchOptions) -> dict[str, Any]:
    from daemon.bench.methods import Lab, lab_plan, runtime_environment
    from daemon.engine.engine import fit_prompt

    plans = [lab_plan(m) for m in options.methods]
    if any(plan is None or plan.name == "ar" for plan in plans):
        raise UsageError("a replay runs our drafting methods only (no peers, no ar)")
    inner = options.suite.removeprefix("replay:")
    workspace, tasks = suite_tasks(inner, options.limit, options.seed, options.workspace)
    lab = Lab.open(
        options.model,
        options.device,
        options.dtype,
        ["codeswift", *options.methods],
        workspace,
        options.corpus,
        options.project_weight,
        options.backend,
    )
    engine = lab.engine
    if options.cost_curve is not None:
        engine.assume_curve(read_curve(options.cost_curve))
    prompts, truths = [], []
    for task in tqdm(tasks, desc=f"ar on {inner}", unit="prompt"):
        ids = engine.lm.tokenizer(task.prompt)["input_ids"][-options.context_tokens :]
        ids, _ = fit_prompt(engine.lm, ids, options.max_new_tokens)
        prompts.append(ids)
        with lab.hiding(task.hidden):
            truths.append(
                greedy_output(
                    engine.model.identity,
                    ids,
                    options.max_new_tokens,
                    lambda prompt, budget: lab.run("ar", prompt, budget).decoded.tokens,
                )
            )
    curve = engine.curve()
    rows: dict[str, Any] = {}
    for plan in plans:
        assert plan is not None
        drafted, forwards, cost = 0, 0, 0.0
        for task, prompt, truth in zip(tasks, prompts, truths, strict=True):
            with lab.hiding(task.hidden):
                steps, sizes = _replay(engine, plan, prompt, truth)
            drafted += len(truth) - 1  # the first token comes from the prefill
            forwards += steps
            cost += sum(curve.cost(size + 1) for size in sizes)
        row: dict[str, Any] = {
            "tokens_per_forward": round(drafted / max(forwards, 1), 3),
            "modelled_decode_speedup": round(curve.cost(1) * drafted / cost, 3) if cost else 0.0,
        }
        reliability = engine.reliability(plan)
        if reliability is not None:
            row["calibration"] = reliability.as_dict()
        rows[plan.name] = row
        print(f"{plan.name}: {row['tokens_per_forward']:.2f} tokens/forward", file=sys.stderr)
    return {
        "suite": options.suite,
        "prompts": len(tasks),
        "max_new_tokens": options.max_new_tokens,
        "env": runtime_environment(engine.lm, lab.backend),
        "cost_curve_ms": dict(zip(curve.sizes, curve.ms, strict=True)),
        "cost_curve_from": str(options.cost_curve or "measured here"),
        "methods": rows,
    }


def read_curve(path: Path) -> CostCurve:
    """The step costs in `path`: a report's `cost_curve_ms` (size -> ms) or a cached curve."""
    try:
        data = json.loads(path.read_text())
        table = data.get("cost_curve_ms") or dict(zip(data["sizes"], data["ms"], strict=True))
        points = sorted((int(size), float(ms)) for size, ms in table.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"no cost curve in {path}: {exc}") from None
    if not points or points[0][0] != 1 or any(ms <= 0 for _, ms in points):
        raise UsageError(f"no cost curve in {path}: it needs positive costs from one row up")
    return CostCurve(tuple(s for s, _ in points), tuple(ms for _, ms in points))


def greedy_output(
    identity: str,
    prompt: Sequence[int],
    max_new_tokens: int,
    decode: Callable[[Sequence[int], int], Sequence[int]],
) -> list[int]:
    """`ar`'s output for `prompt` on the forward port named `identity`: from the cache, or
    from `decode(prompt, max_new_tokens)` and then kept (greedy decoding on one port gives
    the same tokens)."""
    key = json.dumps([identity, list(prompt), max_new_tokens])
    path = cache_root() / "replay" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
    try:
        return [int(token) for token in json.loads(path.read_text())["tokens"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    tokens = [int(token) for token in decode(prompt, max_new_tokens)]
    write_atomically(path, json.dumps({"tokens": tokens}).encode())
    return tokens


def _replay(
    engine: Any, plan: Any, prompt: Sequence[int], truth: Sequence[int]
) -> tuple[int, list[int]]:
    """Steps `plan` takes after the prefill to produce `truth`, and each step's tree size."""
    drafter, policy = engine.drafting(plan)
    context = [*prompt, truth[0]]
    drafter.begin(list(prompt))
    done, sizes = 1, []
    while done < len(truth):
        depth = min(plan.max_depth, len(truth) - done - 1)
        tree = policy.build(drafter.propose(context, depth), depth) if depth > 0 else EMPTY_TREE
        # on a path that matches the truth so far, the model's argmax is the truth's next token
        path = tree.walk([truth[done], *(truth[done + d] for d in tree.depths)])
        step = list(truth[done : done + len(path) + 1])  # accepted drafts and the bonus
        verified = [context[-1], *tree.tokens]
        predicted = [-1] * len(verified)  # unknown off the path (module docstring)
        for k, slot in enumerate([0, *(node + 1 for node in path)]):
            predicted[slot] = truth[done + k]
        drafter.observe(step, verified, predicted, tree.parents)
        policy.record(tree, path)
        sizes.append(tree.size)
        context.extend(step)
        done += len(step)
    drafter.finish(list(truth))
    return len(sizes), sizes


def format_replay_table(report: dict[str, Any]) -> str:
    env = report["env"]
    lines = [
        f"replay {report['suite']}: {report['prompts']} prompts x {report['max_new_tokens']} "
        f"tokens of ar's output; {env['model']} {env['dtype']} on {env['device']} "
        f"({env['cpu']}, {env['threads']} threads); step cost from the measured curve",
        f"{'method':<28}{'tokens/forward':>15}{'modelled decode speedup':>25}",
    ]
    for name, row in report["methods"].items():
        lines.append(
            f"{name:<28}{row['tokens_per_forward']:>15.2f}{row['modelled_decode_speedup']:>24.2f}x"
        )
    return "\n".join(lines)
