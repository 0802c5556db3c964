"""Greedy decoding, plain (`ar`) and speculative over a draft tree, with a KV cache.

The speculative loop, one step:
  1. draft      — the drafter proposes candidate continuations of the context;
  2. build tree — merge them into a trie; the plan's tree policy keeps the nodes that pay;
  3. verify     — one forward over [root, *nodes] with an ancestor mask, positions by depth;
  4. accept     — walk the longest path whose tokens equal the model's own argmax;
  5. commit     — accepted tokens plus the bonus token (the argmax after the last one);
  6. compact    — keep only the root's and the accepted nodes' rows of the KV cache.
With no draft the step is exactly a plain greedy step, so `ar` is this loop with no drafter.
A short prefill (a warm request: only the text typed since the last one) is the first step:
its rows and a draft tree below the last prompt token go through one forward. Under a lead
(lead.py) each of that tree's rows takes the best token the lead allows after its path, which
is what the lead-in would have chosen row by row.
The output equals greedy decoding token for token: a token is only ever committed when it is the
argmax of logits computed over exactly the committed prefix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daemon.engine.budget import BudgetPolicy
from daemon.engine.drafters import Drafter
from daemon.engine.forward import ForwardPort
from daemon.engine.lead import LeadIn
from daemon.engine.plan import MAX_DEPTH
from daemon.engine.stops import StopRule
from daemon.engine.tree import EMPTY_TREE, Candidate, DraftTree, ancestor_matrix

__all__ = ["DecodeResult", "PrefixCache", "generate", "warm"]

# prompt rows per forward when warming: a real request waits for at most one such chunk
WARM_CHUNK = 64
# a prefill of at most this many rows (a warm editor request: the text typed since the last
# one) also verifies a draft tree in the same forward; a long one gains nothing from it
DRAFTED_PREFILL_ROWS = 64


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
    accepted_per_step: list[int] = []
    tree = EMPTY_TREE
    held = _LeadRows(lead) if lead is not None else None
    begun = drafter is not None and len(context) - start <= DRAFTED_PREFILL_ROWS
    if begun:
        assert drafter is not None
        drafter.begin(context)
        rows = len(context) - start
        tree = _draft(context, stop, 0, drafter, budget, max_depth, held, rows)
    drafted = tree.size > 0
    if drafted:
        # a short prefill (a warm editor request) carries a draft of what follows: the
        # answer can be whole after this one forward instead of starting with one token
        generated = _step(model, cache, start, context[start:], tree, drafter, budget, held)
        accepted_per_step.append(len(generated) - 1)
        context.extend(generated[:-1])
        root = generated[-1]
    else:
        root = model.prefill(cache, context[start:], lead.allowed([]) if lead else None)
        generated = [root]
    reason = stop.check(generated, len(generated))
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
    in_context = 0  # committed tokens already in the context `drafter.begin` got
    if drafter is not None and not begun:
        drafter.begin(context)  # after the lead-in: drafts continue what it chose
        in_context = len(generated) - 1
    while reason is None:
        if should_cancel is not None and should_cancel():
            reason = "cancelled"
            break
        tree = _draft([*context, root], stop, len(generated), drafter, budget, max_depth)
        accepted = _step(model, cache, len(context), [root], tree, drafter, budget)
        context.append(root)
        context.extend(accepted[:-1])
        root = accepted[-1]
        generated.extend(accepted)
        accepted_per_step.append(len(accepted) - 1)
        reason = stop.check(generated, len(accepted))
    assert reason is not None  # the loop ends on a stop reason or a cancellation
    tokens = generated[: stop.cut]
    if drafter is not None:
        # every committed token is the model's own greedy choice, those a stop rule cuts off
        # too (a single-line answer's step often verifies the start of the next line): the
        # next request, one line further, is likely to write them
        drafter.finish(generated[in_context:])
    return DecodeResult(
        tokens=tokens,
        stop_reason=reason,
        prefill_s=prefill_s,
        seconds=time.perf_counter() - started,
        # the prefill yields the first token(s); a drafted one is a step of its own
        forwards=len(accepted_per_step) + lead_steps + (0 if drafted else 1),
        accepted=accepted_per_step,
    )


def _draft(
    context: list[int],
    stop: StopRule,
    generated: int,
    drafter: Drafter | None,
    budget: BudgetPolicy | None,
    max_depth: int,
    held: _LeadRows | None = None,
    rows: int = 1,
) -> DraftTree:
    """The draft tree continuing `context` (whose last token is the step's root), sized by
    the budget and the tokens the stop rule still allows after the root, for a forward of
    `rows` rows besides it; under a lead, of the candidates' parts that agree with it."""
    if drafter is None or budget is None:
        return EMPTY_TREE
    depth = min(max_depth, stop.max_new_tokens - generated - 1)
    if depth <= 0:
        return EMPTY_TREE
    candidates = drafter.propose(context, depth)
    return budget.build(held.agreeing(candidates) if held else candidates, depth, rows)


def _step(
    model: ForwardPort,
    cache: Any,
    past_len: int,
    chain: list[int],
    tree: DraftTree,
    drafter: Drafter | None,
    budget: BudgetPolicy | None,
    held: _LeadRows | None = None,
) -> list[int]:
    """One forward over `chain` (tokens after the cache's `past_len` rows, in order; the last
    is the tree's root) and `tree`'s nodes. The chain's and the accepted path's rows stay in
    the cache. Returns the committed tokens: the accepted drafts, then the bonus token. Under
    a lead, each row's token is the best of those the lead allows after its path."""
    allowed = held.per_row(tree) if held else None
    predicted, path = _verify_and_commit(model, cache, past_len, chain, tree, allowed)
    accepted = [tree.tokens[node] for node in path] + [predicted[path[-1] + 1 if path else 0]]
    if drafter is not None and budget is not None:
        # what the root and the nodes were verified as, as in every step
        drafter.observe(accepted, [chain[-1], *tree.tokens], predicted, tree.parents)
        budget.record(tree, path)
    return accepted


def _verify_and_commit(
    model: ForwardPort,
    cache: Any,
    past_len: int,
    chain: list[int],
    tree: DraftTree,
    allowed: list[list[int] | None] | None = None,
) -> tuple[list[int], list[int]]:
    """Steps 3-6: verify the chain, then `tree`'s nodes below its last token (the root);
    returns the model's argmax after the root and after every node, and the accepted path
    (node indices), whose rows the cache keeps with the chain's."""
    n = len(chain)
    depths = [*range(n), *(n - 1 + depth for depth in tree.depths)]
    visible = ancestor_matrix(tree)
    if n > 1:  # every chain row sees those before it; every node sees the whole chain
        size = n - 1 + len(visible)
        below = visible
        visible = np.zeros((size, size), dtype=bool)
        visible[:n, :n] = np.tri(n, dtype=bool)
        visible[n:, : n - 1] = True
        visible[n - 1 :, n - 1 :] = below
    rows = [*chain, *tree.tokens]
    predicted = model.verify(cache, rows, depths, visible, judged=tree.size + 1, allowed=allowed)
    path = tree.walk(predicted)
    model.keep(cache, past_len, [*range(n), *(n + node for node in path)])
    return predicted, path


class _LeadRows:
    """A lead's allowed tokens after each token sequence a draft holds (looked up once each:
    a lookup decodes the sequence): what drafts may propose under it, and what each verified
    row's token must be among."""

    def __init__(self, lead: LeadIn) -> None:
        self.lead = lead
        self._after: dict[tuple[int, ...], list[int] | None] = {}
        self._sets: dict[tuple[int, ...], frozenset[int]] = {}  # the same, for membership

    def after(self, written: tuple[int, ...]) -> list[int] | None:
        if written not in self._after:
            parent = self.after(written[:-1]) if written else ()
            # once the lead is covered it stays covered: no lookup below a free row
            self._after[written] = None if parent is None else self.lead.allowed(written)
        return self._after[written]

    def agreeing(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Candidates cut before their first token the lead does not allow."""
        kept = []
        for candidate in candidates:
            tokens = candidate.tokens
            cut = len(tokens)
            for i, token in enumerate(tokens):
                written = tokens[:i]
                allowed = self.after(written)
                if allowed is None:
                    break
                if written not in self._sets:  # a lead of one letter allows thousands
                    self._sets[written] = frozenset(allowed)
                if token not in self._sets[written]:
                    cut = i
                    break
            if cut:
                kept.append(
                    Candidate(tokens[:cut], candidate.weight, candidate.source, candidate.match)
                )
        return kept

    def per_row(self, tree: DraftTree) -> list[list[int] | None]:
        """The allowed tokens after the root (the prompt) and after each node's path."""
        paths: list[tuple[int, ...]] = []
        for node, parent in enumerate(tree.parents):
            paths.append((*(paths[parent] if parent >= 0 else ()), tree.tokens[node]))
        return [self.after(()), *(self.after(path) for path in paths)]
