"""Decoding methods by name: the product's plans, their ablations, and Hugging Face's peers.

Every method gets the same prompt tokens, end tokens and token cap, so outputs can be compared
token for token and speeds side by side. Ours run through `Engine.complete` with a plan; the
peers (`hf`, `pld`, `assisted`) through transformers' own `generate`.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon.assembly import ShardSink, open_engine
from daemon.engine.engine import Completion, Engine
from daemon.engine.lab import backend_facts, hf_generate
from daemon.engine.models import LoadedModel, load_model
from daemon.engine.plan import CODESWIFT, PLANS, DecodePlan
from daemon.engine.project_index import ProjectIndex, WorkspaceIndex
from daemon.engine.retrieval import DraftStats
from daemon.engine.stops import Stop, StopRule
from daemon.errors import UsageError
from indexer.chunks import ParsedFile
from indexer.scan import Fingerprint

__all__ = [
    "METHODS",
    "Lab",
    "lab_plan",
    "needs_stores",
    "put_text",
    "runtime_environment",
]

_ABLATIONS = {
    "general": {"general": False},
    "project": {"project": False},
    "context": {"context": False},
    # the paper's cache: cached retrievals and the model's own earlier outputs
    "cache": {"cache": False, "history": False},
    "timing": {"timing": False},
    "budget": {"budget": 16},  # a fixed 16-node tree instead of the cost curve's choice
}
_PEERS = {
    "pld": "Hugging Face prompt lookup decoding, generate(prompt_lookup_num_tokens=10)",
    "hf": "Hugging Face greedy generate (checks that `ar` is a fair baseline)",
    "assisted": "Hugging Face assisted generation: a smaller model with the same tokenizer drafts",
}
METHODS = {
    "ar": "our greedy loop with a KV cache (the baseline)",
    "codeswift": "general + project stores, context, model history; timing; adaptive budget",
    "rest": "REST: general store only, always retrieve, no cache, fixed 64-node tree",
    "lookup": "our tree over context lookup only (prompt + output so far), 16 nodes",
    **_PEERS,
    **{f"codeswift-no-{part}": f"codeswift without its {part} component" for part in _ABLATIONS},
    "codeswift-with-expressions": "codeswift plus the workspace's recurring expressions",
}


def lab_plan(method: str, project_weight: float | None = None) -> DecodePlan | None:
    """The plan of one of our methods (None for a peer); `project_weight` overrides the weight
    of project drafts in every plan that drafts from the project store."""
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if method in _PEERS:
        return None
    if method in PLANS:
        plan = PLANS[method]
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
    ) -> Lab:
        """An engine with the stores `methods` search: the general one, and `workspace`
        scanned into the project store."""
        stores = needs_stores(methods)
        project = WorkspaceIndex() if stores and workspace is not None else None
        engine = open_engine(
            model,
            device,
            dtype,
            general=stores,
            corpus=corpus,
            project=project,
            workspace=workspace if project is not None else None,
        )
        folders = list(project.folders().values()) if project is not None else []
        return cls(engine, folders[0] if folders else None, project_weight)

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
        plan = lab_plan(method, self.project_weight)
        if plan is not None:
            return self.engine.complete(prompt, plan, stop)
        if method == "assisted" and self.assistant is None:
            raise UsageError("`assisted` needs a draft model: use `codeswift bench --assistant M`")
        return _run_hf(self.engine, method, prompt, stop, self.assistant)


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


def put_text(index: ProjectIndex, relative: str, text: str) -> None:
    """Index `text` as the content of the file `relative` of `index`'s folder, whatever the
    disk holds (suites hide the body of the function they ask for)."""
    raw = text.encode()
    sink = ShardSink(index.shards)  # the way an unsaved buffer's text goes in
    sink.put(relative, ParsedFile(None, raw, ()), Counter(), Fingerprint.of(raw, None))
    sink.commit()


def runtime_environment(lm: LoadedModel) -> dict[str, Any]:
    """What a benchmark figure depends on: hardware, threads, model, dtype, versions."""
    return {
        **backend_facts(lm),
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
