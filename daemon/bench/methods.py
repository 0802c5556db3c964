"""Decoding methods by name: the product's plans, their ablations, and the peers.

Every method gets the same prompt tokens, end tokens and token cap, so outputs can be compared
token for token and speeds side by side. Ours run through `Engine.complete` with a plan, on the
lab's backend or on the one named after `@` (`ar@transformers`, `codeswift@native`); Hugging
Face's peers (`hf`, `pld`, `assisted`) through transformers' own `generate`; llama.cpp's
(`llamacpp`, `llamacpp-pld`) through llama-cpp-python on the packaged GGUF.

Each method has a reference: the greedy decoding of its own backend (`ar@B` for our methods on
backend B, `ar@transformers` for Hugging Face's peers, `llamacpp` for llama.cpp's). `identical`
compares a method's tokens with its reference's, and `own_speedup` its speed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from daemon.assembly import ShardSink, open_engine
from daemon.bench.repo_suite import RepoTask
from daemon.engine.backends import BACKENDS, open_forward, resolve_backend
from daemon.engine.engine import Completion, Engine
from daemon.engine.lab import backend_facts, hf_generate, thread_count
from daemon.engine.llamacpp import LlamaCppPeer
from daemon.engine.models import LoadedModel, load_model
from daemon.engine.plan import CODESWIFT, MAX_DEPTH, PLANS, DecodePlan
from daemon.engine.project_index import ProjectIndex, WorkspaceIndex
from daemon.engine.registry import packaged_gguf
from daemon.engine.retrieval import DraftStats
from daemon.engine.stops import Stop, StopRule
from daemon.errors import UsageError
from indexer.chunks import ParsedFile
from indexer.scan import Fingerprint

__all__ = [
    "METHODS",
    "Lab",
    "lab_plan",
    "llamacpp_peer",
    "needs_stores",
    "put_text",
    "runtime_environment",
    "split_method",
]

_ABLATIONS = {
    "general": {"general": False},
    "project": {"project": False},
    "context": {"context": False},
    # the paper's cache: cached retrievals and the model's own earlier outputs
    "cache": {"cache": False, "history": False},
    "timing": {"timing": False},
    # trees of the heaviest nodes by stacked weight, sized by the adaptive budget
    "scoring": {"scored": False},
    "recycled": {"recycled": False},
    "analogy": {"analogy": False},
    # everything kept from one request to the next: retrievals, the model's outputs, successors
    "memory": {"cache": False, "history": False, "recycled": False},
    # a fixed 16-node tree of the heaviest nodes instead of the scored one
    "budget": {"budget": 16, "scored": False},
}
# deeper drafts than MAX_DEPTH, to measure what the cap costs where long runs repeat
_DEPTHS = (24, 32)
_DEEPER = {
    f"{base}-depth{depth}": (base, depth) for base in ("codeswift", "lookup") for depth in _DEPTHS
}
# `lookup` with other tree sizes (16 was its default until a 17-row step was found to cost a
# second pass of the AMX tile unit; where each row costs a quarter of a step or more, as with
# AVX2 alone, its best size is 2-4): the ratio to `lookup` should hold against its best size
_LOOKUP_SIZES = {f"lookup-nodes{nodes}": nodes for nodes in (2, 4, 8, 16, 32)}
_PEERS = {
    "pld": "Hugging Face prompt lookup decoding, generate(prompt_lookup_num_tokens=10)",
    "hf": "Hugging Face greedy generate (checks that `ar` is a fair baseline)",
    "assisted": "Hugging Face assisted generation: a smaller model with the same tokenizer drafts",
}
_LLAMACPP = {
    "llamacpp": "llama.cpp greedy decoding on the packaged GGUF (llama-cpp-python)",
    "llamacpp-pld": "llama.cpp with llama-cpp-python's own prompt lookup decoding",
}
# llama.cpp's context: suites keep prompts under 1,536 tokens; prompt lookup makes llama.cpp
# keep logits for every position (n_ctx x vocab floats), so no larger than needed
_LLAMACPP_CONTEXT = 2048
METHODS = {
    "ar": "our greedy loop with a KV cache (the baseline)",
    "codeswift": "general + project stores, context and its analogies, model history, recycled "
    "successors; scored trees; timing, cache",
    "rest": "REST: general store only, always retrieve, no cache, fixed 64-node tree",
    "lookup": "our tree over context lookup only (prompt + output so far), 15 nodes",
    **_PEERS,
    **_LLAMACPP,
    **{f"codeswift-no-{part}": f"codeswift without its {part} component" for part in _ABLATIONS},
    "codeswift-with-expressions": "codeswift plus the workspace's recurring expressions",
    **{
        name: f"{base} with drafts up to {depth} tokens deep (default {MAX_DEPTH})"
        for name, (base, depth) in _DEEPER.items()
    },
    **{
        name: f"lookup with trees of {nodes} nodes (default 15)"
        for name, nodes in _LOOKUP_SIZES.items()
    },
}


def split_method(method: str) -> tuple[str, str | None]:
    """`codeswift@native` -> ("codeswift", "native"); `codeswift` -> ("codeswift", None)."""
    base, _, backend = method.partition("@")
    if base not in METHODS:
        raise UsageError(f"unknown method {base!r}; known: {', '.join(METHODS)}")
    if not backend:
        return base, None
    if base in _PEERS or base in _LLAMACPP or backend not in BACKENDS[1:]:
        raise UsageError(
            f"{method}: only our methods take a backend, one of {', '.join(BACKENDS[1:])}"
        )
    return base, backend


def lab_plan(method: str, project_weight: float | None = None) -> DecodePlan | None:
    """The plan of one of our methods (None for a peer); `project_weight` overrides the weight
    of project drafts in every plan that drafts from the project store."""
    method, _ = split_method(method)
    if method in _PEERS or method in _LLAMACPP:
        return None
    if method in PLANS:
        plan = PLANS[method]
    elif method in _DEEPER:
        base, depth = _DEEPER[method]
        plan = dataclasses.replace(PLANS[base], name=method, max_depth=depth)
    elif method in _LOOKUP_SIZES:
        plan = dataclasses.replace(PLANS["lookup"], name=method, budget=_LOOKUP_SIZES[method])
    elif method == "codeswift-with-expressions":
        plan = dataclasses.replace(CODESWIFT, name=method, expressions=True)
    else:
        changes = _ABLATIONS[method.removeprefix("codeswift-no-")]
        plan = dataclasses.replace(CODESWIFT, name=method, **changes)  # type: ignore[arg-type]
    if project_weight is not None and plan.project:
        weights = dataclasses.replace(plan.weights, project=project_weight)
        plan = dataclasses.replace(plan, weights=weights)
    return plan


def needs_stores(methods: Sequence[str]) -> bool:
    """Whether any of `methods` searches the general or project store."""
    plans = [lab_plan(m) for m in methods]
    return any(plan is not None and plan.searches_stores for plan in plans)


class Lab:
    """An engine and what the lab adds to it: peers, an assistant model, a weight override,
    and a hand on the workspace's store (suites hide the function they ask for)."""

    def __init__(
        self,
        engine: Engine,
        workspace: ProjectIndex | None = None,
        project_weight: float | None = None,
    ) -> None:
        self.engine = engine
        self.workspace = workspace
        self.project_weight = project_weight
        self.assistant: LoadedModel | None = None  # the draft model of `assisted`
        self.backend = engine.model.backend
        self._engines = {self.backend: engine}  # one per backend, sharing the stores
        self._llamacpp: dict[str, LlamaCppPeer] = {}

    def reference(self, method: str) -> str:
        """The greedy method `method` is compared with (see the module docstring)."""
        base, backend = split_method(method)
        if base in _LLAMACPP:
            return "llamacpp"
        if base in _PEERS:
            backend = "transformers"
        backend = resolve_backend(backend or self.backend, self.engine.lm)
        return "ar" if backend == self.backend else f"ar@{backend}"

    @classmethod
    def open(
        cls,
        model: str,
        device: str,
        dtype: str,
        methods: Sequence[str],
        workspace: Path | None = None,
        corpus: Sequence[Path] = (),
        project_weight: float | None = None,
        backend: str = "auto",
    ) -> Lab:
        """An engine with the stores `methods` search: the general one, and `workspace`
        scanned into the project store."""
        stores = needs_stores(methods)
        project = WorkspaceIndex() if stores and workspace is not None else None
        engine = open_engine(
            model,
            device,
            dtype,
            backend=backend,
            general=stores,
            corpus=corpus,
            project=project,
            workspace=workspace if project is not None else None,
        )
        folders = list(project.folders().values()) if project is not None else []
        return cls(engine, folders[0] if folders else None, project_weight)

    @contextlib.contextmanager
    def hiding(self, task: RepoTask | None) -> Iterator[None]:
        """The workspace's store without `task`'s function body, for the time of the block."""
        if task is None:
            yield
            return
        self.put_text(task.relative, task.masked_text)
        try:
            yield
        finally:
            self.put_text(task.relative, task.original_text)

    def put_text(self, relative: str, text: str) -> None:
        """Index `text` as the content of the workspace file `relative` (not on disk)."""
        if self.workspace is not None:
            put_text(self.workspace, relative, text)

    def attach_assistant(self, spec: str) -> None:
        """Load the draft model of `assisted` on the engine's device and dtype.

        Only same-tokenizer pairs are accepted (e.g. Qwen2.5-Coder 0.5B drafting for 1.5B): the
        draft tokens must be the target's tokens for the comparison to mean anything.
        """
        lm = self.engine.lm
        assistant = load_model(spec, lm.device.type, lm.dtype_name)
        if assistant.tokenizer.get_vocab() != lm.tokenizer.get_vocab():
            raise UsageError(f"assistant {spec} does not share the tokenizer of {lm.name}")
        self.assistant = assistant

    def run(
        self,
        method: str,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop_strings: Sequence[str] = (),
    ) -> Completion:
        """Generate with `method`; the prompt must already fit (see `fit_prompt`)."""
        stop = Stop(max_new_tokens, tuple(stop_strings))
        base, backend = split_method(method)
        plan = lab_plan(method, self.project_weight)
        if plan is not None:
            return self._engine(backend).complete(prompt, plan, stop)
        if base in _LLAMACPP:
            return self._run_llamacpp(base, prompt, stop)
        if base == "assisted" and self.assistant is None:
            raise UsageError("`assisted` needs a draft model: use `codeswift bench --assistant M`")
        return _run_hf(self.engine, base, prompt, stop, self.assistant)

    def calibration(self, method: str) -> dict[str, Any] | None:
        """Predicted against observed acceptance of `method`'s scored trees (None: unscored)."""
        plan = lab_plan(method, self.project_weight)
        if plan is None:
            return None
        reliability = self._engine(split_method(method)[1]).reliability(plan)
        return reliability.as_dict() if reliability is not None else None

    def _engine(self, backend: str | None) -> Engine:
        chosen = resolve_backend(backend or self.backend, self.engine.lm)
        if chosen not in self._engines:
            base = self.engine
            port = open_forward(base.lm, chosen)
            self._engines[chosen] = Engine(base.lm, port, base.general, base.project)
        return self._engines[chosen]

    def _run_llamacpp(self, method: str, prompt: Sequence[int], stop: Stop) -> Completion:
        lm = self.engine.lm
        if len(prompt) + stop.max_new_tokens > _LLAMACPP_CONTEXT:
            raise UsageError(
                f"the llama.cpp peers take up to {_LLAMACPP_CONTEXT} prompt + new tokens"
            )
        if method not in self._llamacpp:
            lookup = method == "llamacpp-pld"
            self._llamacpp[method] = llamacpp_peer(lm.name, thread_count(), lookup)
        decoded = self._llamacpp[method].generate(prompt, stop.max_new_tokens, lm.eos_ids)
        rule = StopRule(stop.max_new_tokens, lm.eos_ids, stop.strings, self.engine.decode)
        text = rule.trim(self.engine.decode(decoded.tokens))
        return Completion(method, text, decoded, DraftStats())


def _run_hf(
    engine: Engine,
    method: str,
    prompt: Sequence[int],
    stop: Stop,
    assistant: LoadedModel | None = None,
) -> Completion:
    lm = engine.lm
    decoded = hf_generate(
        lm,
        prompt,
        stop.max_new_tokens,
        stop.strings,
        prompt_lookup=10 if method == "pld" else None,
        assistant=assistant if method == "assisted" else None,
    )
    rule = StopRule(stop.max_new_tokens, lm.eos_ids, stop.strings, engine.decode)
    return Completion(method, rule.trim(engine.decode(decoded.tokens)), decoded, DraftStats())


def llamacpp_peer(model: str, threads: int, lookup: bool) -> LlamaCppPeer:
    """llama.cpp on packaged model `model`'s GGUF, as shipped; with prompt lookup or not."""
    return LlamaCppPeer(packaged_gguf(model), threads, _LLAMACPP_CONTEXT, lookup)


def put_text(index: ProjectIndex, relative: str, text: str) -> None:
    """Index `text` as the content of the file `relative` of `index`'s folder, whatever the
    disk holds (suites hide the body of the function they ask for)."""
    raw = text.encode()
    sink = ShardSink(index.shards)  # the way an unsaved buffer's text goes in
    sink.put(relative, ParsedFile(None, raw, ()), Counter(), Fingerprint.of(raw, None))
    sink.commit()


def runtime_environment(lm: LoadedModel, backend: str) -> dict[str, Any]:
    """What a benchmark figure depends on: hardware, threads, model, dtype, backend, versions."""
    return {
        **backend_facts(lm),
        "backend": backend,
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
