"""Decoding methods by name: ours (`ar`, `codeswift`) and Hugging Face's peers (`hf`, `pld`,
`assisted`).

Every method gets the same prompt tokens, EOS set and token cap, so outputs can be compared
token for token and speeds side by side.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from daemon.engine.budget import AdaptiveBudget, BudgetPolicy, CostCurve, FixedBudget, cost_curve
from daemon.engine.datastore import SuffixIndex
from daemon.engine.decode import DecodeResult, PrefixCache, generate
from daemon.engine.drafters import ContextLookupDrafter, Drafter, HistoryDrafter
from daemon.engine.general_store import corpus_sources, open_general_store
from daemon.engine.models import LoadedModel, load_model
from daemon.engine.project_store import ProjectSource, ProjectStore
from daemon.engine.retrieval import (
    RetrievalCache,
    RetrievalConfig,
    RetrievalDrafter,
    TimingStats,
)
from daemon.engine.stops import StopRule
from daemon.errors import UsageError

__all__ = [
    "METHODS",
    "Completion",
    "Engine",
    "attach_assistant",
    "fit_prompt",
    "open_engine",
    "run_method",
    "runtime_environment",
]

_ABLATIONS = ("general", "project", "context", "cache", "timing", "budget")
METHODS = {
    "ar": "our greedy loop with a KV cache (the baseline)",
    "codeswift": "general + project stores, context, model history; timing; adaptive budget",
    "rest": "REST: general store only, always retrieve, no cache, fixed 64-node tree",
    "lookup": "our tree over context lookup only (prompt + output so far), 16 nodes",
    "pld": "Hugging Face prompt lookup decoding, generate(prompt_lookup_num_tokens=10)",
    "hf": "Hugging Face greedy generate (checks that `ar` is a fair baseline)",
    "assisted": "Hugging Face assisted generation: a smaller model with the same tokenizer drafts",
    **{f"codeswift-no-{part}": f"codeswift without its {part} component" for part in _ABLATIONS},
    "codeswift-with-expressions": "codeswift plus the workspace's recurring expressions",
}


class Engine:
    """A loaded model and the draft sources that outlive a single request."""

    def __init__(
        self,
        lm: LoadedModel,
        general: SuffixIndex | None = None,
        project: ProjectSource | None = None,
        assistant: LoadedModel | None = None,
    ) -> None:
        self.lm = lm
        self.general = general
        self.project = project
        self.assistant = assistant  # the draft model of `assisted`
        # the model's own output across requests; one per method so ablations never share it
        self.histories: dict[str, HistoryDrafter] = {}
        self.caches: dict[str, RetrievalCache] = {}
        self.budgets: dict[str, AdaptiveBudget] = {}
        self.timings: dict[str, TimingStats] = {}
        self._indexed: tuple[SuffixIndex, ...] | None = None
        self.retrieval_overrides: dict[str, Any] = {}  # RetrievalConfig fields, e.g. weights
        self._curve: CostCurve | None = None
        self._whitespace: frozenset[int] | None = None

    def curve(self) -> CostCurve:
        if self._curve is None:
            self._curve = cost_curve(self.lm)
        return self._curve

    def whitespace_ids(self) -> frozenset[int]:
        """Tokens that decode to whitespace only (retrieval after them rarely pays)."""
        if self._whitespace is None:
            vocab = len(self.lm.tokenizer)
            texts = self.lm.tokenizer.batch_decode([[i] for i in range(vocab)])
            self._whitespace = frozenset(i for i, t in enumerate(texts) if t and not t.strip())
        return self._whitespace

    def _project_layers(self) -> tuple[SuffixIndex, ...]:
        """The project store's current search layers; cached retrievals die with them."""
        if self.project is None:
            return ()
        layers = self.project.layers()
        if layers is not self._indexed:
            self.caches.clear()
            self._indexed = layers
        return layers

    def plan(self, method: str) -> tuple[Drafter | None, BudgetPolicy | None]:
        """The drafter and budget policy that make up `method`."""
        if method == "ar":
            return None, None
        if method == "lookup":
            return ContextLookupDrafter(), FixedBudget(16)
        if method == "rest":
            config = RetrievalConfig(
                use_context=False, use_project=False, use_cache=False, use_timing=False
            )
            return RetrievalDrafter(self.general, (), config), FixedBudget(64)
        off = method.removeprefix("codeswift-no-") if method.startswith("codeswift-no-") else ""
        switches = {f"use_{off}": False} if off and off != "budget" else {}
        if method == "codeswift-with-expressions":
            switches["use_expressions"] = True
        config = RetrievalConfig(**self.retrieval_overrides, **switches)
        drafter = RetrievalDrafter(
            self.general,
            self._project_layers(),
            config,
            history=self.histories.setdefault(method, HistoryDrafter()),
            cache=self.caches.setdefault(method, RetrievalCache(config.cache_entries)),
            timing=self.timings.setdefault(method, TimingStats()),
            whitespace_ids=self.whitespace_ids(),
            expressions=self.project.expression_layer() if self.project is not None else None,
        )
        if off == "budget":
            return drafter, FixedBudget(16)
        # acceptance learnt on earlier requests carries over to the next one
        return drafter, self.budgets.setdefault(method, AdaptiveBudget(self.curve()))


@dataclass(frozen=True)
class Completion:
    """One method's answer to one prompt."""

    method: str
    tokens: list[int]  # generated tokens, stop token included
    text: str
    stop_reason: str
    steps: int  # forwards after the prefill
    seconds: float
    prefill_s: float
    accepted_per_step: list[int]
    retrieval_ms: list[float] = field(default_factory=list)
    store_steps: dict[str, int] = field(default_factory=dict)
    store_hits: dict[str, int] = field(default_factory=dict)

    @property
    def new_tokens(self) -> int:
        return len(self.tokens)

    @property
    def mean_accepted(self) -> float:
        """Tokens committed per forward, prefill included (1.0 for plain greedy)."""
        return self.new_tokens / (self.steps + 1) if self.tokens else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


def open_engine(
    model: str,
    device: str = "auto",
    dtype: str = "auto",
    workspace: Path | None = None,
    with_general: bool = True,
    corpus: Sequence[Path] = (),
) -> Engine:
    """Load the model and the draft stores it needs (built on first use, cached after).

    The general store holds the standard library plus the .py files of `corpus` folders.
    """
    lm = load_model(model, device, dtype)
    general = None
    if with_general:
        general = open_general_store(lm.tokenizer, corpus_sources(corpus))
    project = None
    if workspace is not None:
        project = ProjectStore(workspace, lm.tokenizer)
        project.sync()
    return Engine(lm, general, project)


def attach_assistant(engine: Engine, spec: str) -> None:
    """Load the draft model of `assisted` on the engine's device and dtype.

    Only same-tokenizer pairs are accepted (e.g. Qwen2.5-Coder 0.5B drafting for 1.5B): the
    draft tokens must be the target's tokens for the comparison to mean anything.
    """
    lm = engine.lm
    assistant = load_model(spec, lm.device.type, lm.dtype_name)
    if assistant.tokenizer.get_vocab() != lm.tokenizer.get_vocab():
        raise UsageError(f"assistant {spec} does not share the tokenizer of {lm.name}")
    engine.assistant = assistant


def fit_prompt(
    lm: LoadedModel, prompt: Sequence[int], max_new_tokens: int
) -> tuple[list[int], int]:
    """Left-truncate `prompt` so prompt + new tokens fit the model's context; (ids, dropped)."""
    window = int(getattr(lm.model.config, "max_position_embeddings", 0) or 0)
    if window <= 0:
        return list(prompt), 0
    room = window - max_new_tokens
    if room < 1:
        raise ValueError(f"max_new_tokens {max_new_tokens} leaves no room in a {window} context")
    dropped = max(0, len(prompt) - room)
    return list(prompt[dropped:]), dropped


def run_method(
    engine: Engine,
    method: str,
    prompt: Sequence[int],
    max_new_tokens: int,
    stop_strings: Sequence[str] = (),
    should_cancel: Callable[[], bool] | None = None,
    text_stop: Callable[[str], bool] | None = None,
    extra_eos: Collection[int] = (),
    reuse: PrefixCache | None = None,
) -> Completion:
    """Generate with `method`; the prompt must already fit (see `fit_prompt`).

    `text_stop` ends generation once the text so far is final (an editor's shape rules);
    `extra_eos` adds end tokens (fill-in-the-middle markers); `reuse` keeps KV rows across calls.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    lm = engine.lm
    stop = StopRule(
        max_new_tokens,
        lm.eos_ids | frozenset(extra_eos),
        stop_strings,
        lambda ids: _text(lm, ids, False),
        text_stop,
    )
    if method in ("hf", "pld", "assisted"):
        if method == "assisted" and engine.assistant is None:
            raise UsageError("`assisted` needs a draft model: use `codeswift bench --assistant M`")
        return _run_hf(lm, method, prompt, stop, engine.assistant)
    drafter, budget = engine.plan(method)
    result = generate(lm, prompt, stop, drafter, budget, should_cancel, reuse=reuse)
    completion = _completion(lm, method, result, stop)
    if isinstance(drafter, RetrievalDrafter):
        stats = drafter.stats
        return replace(
            completion,
            retrieval_ms=stats.search_ms,
            store_steps=stats.store_steps,
            store_hits=stats.store_hits,
        )
    return completion


def _text(lm: LoadedModel, ids: Sequence[int], skip_special: bool) -> str:
    return str(lm.tokenizer.decode(list(ids), skip_special_tokens=skip_special))


def _completion(lm: LoadedModel, method: str, result: DecodeResult, stop: StopRule) -> Completion:
    text = stop.trim(_text(lm, result.tokens, True))
    return Completion(
        method=method,
        tokens=result.tokens,
        text=text,
        stop_reason=result.stop_reason,
        steps=len(result.steps),
        seconds=result.seconds,
        prefill_s=result.prefill_s,
        accepted_per_step=[step.accepted for step in result.steps],
    )


def _run_hf(
    lm: LoadedModel,
    method: str,
    prompt: Sequence[int],
    stop: StopRule,
    assistant: LoadedModel | None = None,
) -> Completion:
    """Hugging Face's generate, counting its forwards with a hook to get accepted lengths."""
    forwards = 0

    def count(*_: object) -> None:
        nonlocal forwards
        forwards += 1

    extra: dict[str, Any] = {}
    if method == "pld":
        extra["prompt_lookup_num_tokens"] = 10
    elif method == "assisted" and assistant is not None:
        extra["assistant_model"] = assistant.model
    if stop.stop_strings:
        extra |= {"stop_strings": list(stop.stop_strings), "tokenizer": lm.tokenizer}
    handle = lm.model.register_forward_pre_hook(count)
    try:
        ids = torch.tensor([list(prompt)], device=lm.device)
        started = time.perf_counter()
        with torch.inference_mode():
            output = lm.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=stop.max_new_tokens,
                do_sample=False,
                eos_token_id=sorted(lm.eos_ids),
                pad_token_id=min(lm.eos_ids),
                **extra,
            )
        seconds = time.perf_counter() - started
    finally:
        handle.remove()
    tokens = output[0, len(prompt) :].tolist()
    reason = "eos" if tokens and tokens[-1] in lm.eos_ids else "max_new_tokens"
    result = DecodeResult(tokens, reason, prefill_s=0.0, seconds=seconds)
    return replace(_completion(lm, method, result, stop), steps=max(forwards - 1, 0))


def runtime_environment(lm: LoadedModel) -> dict[str, Any]:
    """What a benchmark figure depends on: hardware, threads, model, dtype, versions."""
    return {
        "device": str(lm.device),
        "dtype": lm.dtype_name,
        "model": lm.name,
        "threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": metadata.version("transformers"),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
