"""Greedy decoding, plain (`ar`) and speculative over a draft tree, with a KV cache.

The speculative loop, one step:
  1. draft      — the drafter proposes candidate continuations of the context;
  2. build tree — merge them into a trie; the plan's tree policy keeps the nodes that pay;
  3. verify     — one forward over [root, *nodes] with an ancestor mask, positions by depth;
  4. accept     — walk the longest path whose tokens equal the model's own argmax;
  5. commit     — accepted tokens plus the bonus token (the argmax after the last one);
  6. compact    — keep only the root's and the accepted nodes' rows of the KV cache.
With no draft the step is exactly a plain greedy step, so `ar` is this loop with no drafter.
The output equals greedy decoding token for token: a token is only ever committed when it is the
argmax of logits computed over exactly the committed prefix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.engine.budget import BudgetPolicy
from daemon.engine.drafters import Drafter
from daemon.engine.forward import ForwardPort
from daemon.engine.lead import LeadIn
from daemon.engine.plan import MAX_DEPTH
from daemon.engine.stops import StopRule
from daemon.engine.tree import EMPTY_TREE, DraftTree, ancestor_matrix

__all__ = ["DecodeResult", "PrefixCache", "generate", "warm"]

# prompt rows per forward when warming: a real request waits for at most one such chunk
WARM_CHUNK = 64


@dataclass
class PrefixCache:
    """The KV rows of the previous request, kept for the next one: an editor asks again with
    the same text plus a few typed characters, so only the tail after the longest common token
    prefix is prefilled. Rows belong to `tokens` exactly (prompt plus committed output)."""

    tokens: list[int] = field(default_factory=list)
    cache: Any = None  # the forward port's own cache object
    reused: int = 0  # prompt tokens the last request did not have to prefill

    def clear(self) -> None:
        self.tokens, self.cache, self.reused = [], None, 0

    def shared(self, context: Sequence[int]) -> int:
        """How many of `context`'s first tokens have their rows here."""
        return _common_prefix(self.tokens, context) if self.cache is not None else 0


@dataclass(frozen=True)
class DecodeResult:
    """Generated tokens (stop token included, prompt excluded) and how they were made."""

    tokens: list[int]
    stop_reason: str  # "eos" | "stop_string" | "shape" | "max_new_tokens" | "cancelled"
    prefill_s: float
    seconds: float
    forwards: int  # model forwards, the prefill included (it yields the first token)
    accepted: list[int] = field(default_factory=list)  # drafted tokens accepted, per step

    @property
    def mean_accepted(self) -> float:
        """Tokens committed per forward (1.0 for plain greedy)."""
        return len(self.tokens) / self.forwards if self.tokens and self.forwards else 0.0

    @property
    def tokens_per_s(self) -> float:
        return len(self.tokens) / self.seconds if self.seconds > 0 else 0.0


def generate(
    model: ForwardPort,
    prompt: Sequence[int],
    stop: StopRule,
    drafter: Drafter | None = None,
    budget: BudgetPolicy | None = None,
    max_depth: int = MAX_DEPTH,
    should_cancel: Callable[[], bool] | None = None,
    reuse: PrefixCache | None = None,
    lead: LeadIn | None = None,
) -> DecodeResult:
    """Greedy continuation of `prompt`; speculative when a drafter and a budget are given.

    `budget` sizes each step's tree; `max_depth` caps its depth (and every candidate's length);
    `reuse` carries KV rows from one call to the next (see PrefixCache); `lead` restricts the
    first tokens, which are then decoded one row at a time (see lead.py).
    """
    if not prompt:
        raise ValueError("the prompt is empty")
    if (drafter is None) != (budget is None):
        raise ValueError("a drafter needs a budget policy, and a budget policy a drafter")
    context = list(prompt)
    cache, start = _reusable(model, reuse, context)
    try:
        result = _decode(
            model, context, cache, start, stop, drafter, budget, max_depth, should_cancel, lead
        )
    except BaseException:
        if reuse is not None:
            reuse.clear()  # a half-written cache must never be reused
        raise
    if reuse is not None:
        reuse.tokens, reuse.cache, reuse.reused = context, cache, start
    return result


def warm(
    model: ForwardPort,
    prompt: Sequence[int],
    reuse: PrefixCache,
    should_cancel: Callable[[], bool],
    chunk: int = WARM_CHUNK,
) -> int:
    """Prefill `prompt` into `reuse` before anyone asks, so that the request which follows
    prefills only what changed. Runs `chunk` rows per forward and stops at the first chunk
    boundary after `should_cancel` says so; the rows done stay usable. Returns rows prefilled.

    Rows prefilled in chunks are the rows a whole prefill gives (bit for bit on the
    row-invariant backends), so warming never changes an output."""
    context = list(prompt)
    start = reuse.shared(context)
    cache = reuse.cache if start > 0 else model.new_cache()
    if start > 0:
        model.crop(cache, start)
    reuse.cache = None  # owned here until the rows are consistent again
    done = start
    try:
        while done < len(context) and not should_cancel():
            step = context[done : done + chunk]
            model.prefill(cache, step)
            done += len(step)
    except BaseException:
        reuse.clear()
        raise
    reuse.tokens, reuse.cache, reuse.reused = context[:done], cache, 0
    return done - start


def _reusable(model: ForwardPort, reuse: PrefixCache | None, context: list[int]) -> tuple[Any, int]:
    """A cache holding rows for context[:start], and start (at least one token is left to run,
    since the prefill must produce the logits after the last prompt token)."""
    if reuse is None or reuse.cache is None:
        return model.new_cache(), 0
    start = min(reuse.shared(context), len(context) - 1)
    if start == 0:
        return model.new_cache(), 0
    cache = reuse.cache
    model.crop(cache, start)  # keep the shared prefix's rows
    reuse.cache = None  # now owned by this call until it ends
    return cache, start


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _decode(
    model: ForwardPort,
    context: list[int],
    cache: Any,
    start: int,
    stop: StopRule,
    drafter: Drafter | None,
    budget: BudgetPolicy | None,
    max_depth: int,
    should_cancel: Callable[[], bool] | None,
    lead: LeadIn | None,
) -> DecodeResult:
    """Prefill context[start:] after the cached rows, then the loop of the module docstring.
    `context` ends as the tokens whose rows the cache holds."""
    started = time.perf_counter()
    root = model.prefill(cache, context[start:], lead.allowed([]) if lead is not None else None)
    generated = [root]
    reason = stop.check(generated, 1)
    # the lead-in: one row at a time, each token the best of those agreeing with the lead
    lead_steps = 0
    while reason is None and lead is not None and (allowed := lead.allowed(generated)):
        if should_cancel is not None and should_cancel():
            reason = "cancelled"
            break
        context.append(root)
        root = model.prefill(cache, [root], allowed)
        generated.append(root)
        lead_steps += 1
        reason = stop.check(generated, 1)
    prefill_s = time.perf_counter() - started
    if drafter is not None:
        drafter.begin(context)
    accepted_per_step: list[int] = []
    while reason is None:
        if should_cancel is not None and should_cancel():
            reason = "cancelled"
            break
        tree = EMPTY_TREE
        if drafter is not None and budget is not None:
            depth = min(max_depth, stop.max_new_tokens - len(generated) - 1)
            if depth > 0:
                tree = budget.build(drafter.propose([*context, root], depth), depth)
        rows = [root, *tree.tokens]
        predicted, path = _verify_and_commit(model, cache, len(context), rows, tree)
        accepted = [tree.tokens[node] for node in path] + [predicted[path[-1] + 1 if path else 0]]
        context.append(root)
        context.extend(accepted[:-1])
        root = accepted[-1]
        generated.extend(accepted)
        if drafter is not None and budget is not None:
            drafter.observe(accepted, rows, predicted)
            budget.record(tree, path)
        accepted_per_step.append(len(accepted) - 1)
        reason = stop.check(generated, len(accepted))
    assert reason is not None  # the loop ends on a stop reason or a cancellation
    tokens = generated[: stop.cut]
    if drafter is not None:
        drafter.finish(tokens)
    return DecodeResult(
        tokens=tokens,
        stop_reason=reason,
        prefill_s=prefill_s,
        seconds=time.perf_counter() - started,
        forwards=len(accepted_per_step) + 1 + lead_steps,
        accepted=accepted_per_step,
    )


def _verify_and_commit(
    model: ForwardPort, cache: Any, past_len: int, rows: list[int], tree: DraftTree
) -> tuple[list[int], list[int]]:
    """Steps 3-6: verify `rows` (the root, then `tree`'s nodes); returns the model's argmax
    after every row and the accepted path (node indices), whose rows the cache keeps."""
    predicted = model.verify(cache, rows, (0, *tree.depths), ancestor_matrix(tree))
    path = tree.walk(predicted)
    model.keep(cache, past_len, [0] + [node + 1 for node in path])
    return predicted, path
