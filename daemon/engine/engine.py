"""The engine's one entry point: `Engine.complete(prompt, plan, stop, should_cancel, reuse)`.

An engine is a loaded model behind its forward port, the datastores drafting reads, and what
each plan has learnt across requests (the model's own outputs, cached retrievals, retrieval
timing counts, the adaptive budget's acceptance estimate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from daemon.engine.budget import AdaptiveBudget, BudgetPolicy, CostCurve, FixedBudget, cost_curve
from daemon.engine.datastore import SuffixIndex
from daemon.engine.decode import DecodeResult, PrefixCache, generate, warm
from daemon.engine.forward import ForwardPort
from daemon.engine.lead import Lead, TokenTexts
from daemon.engine.models import LoadedModel
from daemon.engine.plan import DecodePlan
from daemon.engine.retrieval import DraftSources, DraftStats, PlanMemory, RetrievalDrafter
from daemon.engine.scoring import Calibration, Reliability, ScoredTrees
from daemon.engine.stops import Stop, StopRule

__all__ = ["Completion", "Engine", "ProjectSource", "fit_prompt", "tree_policy"]

FIM_MARKERS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
MAX_SCORED_NODES = 64  # a scored tree stops earlier where its nodes stop paying


class ProjectSource(Protocol):
    """What drafting reads from project code. `layers()` returns the same tuple object until
    something changes, so a cache of retrievals can be dropped exactly when it goes stale."""

    def layers(self) -> tuple[SuffixIndex, ...]: ...

    def expression_layers(self) -> tuple[SuffixIndex, ...]: ...


@dataclass(frozen=True)
class Completion:
    """One plan's answer to one prompt."""

    plan: str
    text: str  # decoded, special tokens and stop strings removed
    decoded: DecodeResult
    drafting: DraftStats  # empty for plain greedy


class Engine:
    """A loaded model and the draft sources that outlive a single request."""

    def __init__(
        self,
        lm: LoadedModel,
        model: ForwardPort,
        general: SuffixIndex | None = None,
        project: ProjectSource | None = None,
    ) -> None:
        self.lm = lm
        self.model = model
        self.general = general
        self.project = project
        self._memories: dict[DecodePlan, PlanMemory] = {}
        self._budgets: dict[DecodePlan, BudgetPolicy] = {}
        self._layers: tuple[SuffixIndex, ...] = ()
        self._curve: CostCurve | None = None
        self._whitespace: frozenset[int] | None = None
        self._vocabulary_texts: list[str] | None = None
        self._lead_index: TokenTexts | None = None
        self._fim: tuple[int, ...] | None = None  # the markers found; None: not looked up yet

    def complete(
        self,
        prompt: Sequence[int],
        plan: DecodePlan,
        stop: Stop,
        should_cancel: Callable[[], bool] | None = None,
        reuse: PrefixCache | None = None,
        lead: str = "",
    ) -> Completion:
        """Greedy continuation of `prompt` (which must fit: see `fit_prompt`), drafted as
        `plan` says; `should_cancel` is asked every step; `reuse` keeps KV rows across calls;
        the completion starts with `lead` where the vocabulary allows (see lead.py)."""
        rule = StopRule(
            stop.max_new_tokens,
            self.lm.eos_ids | stop.end_ids,
            stop.strings,
            self.decode,
            stop.shape_decided,
        )
        drafter = self._drafter(plan) if plan.drafts else None
        budget = self._budget(plan) if drafter is not None else None
        leading = Lead(lead, self._token_texts(), self.decode) if lead else None
        decoded = generate(
            self.model, prompt, rule, drafter, budget, plan.max_depth, should_cancel, reuse, leading
        )
        stats = drafter.stats if drafter is not None else DraftStats()
        return Completion(plan.name, rule.trim(self.decode(decoded.tokens)), decoded, stats)

    def warm(
        self, prompt: Sequence[int], reuse: PrefixCache, should_cancel: Callable[[], bool]
    ) -> int:
        """Prefill `prompt` into `reuse` ahead of a request (see `decode.warm`); rows done."""
        return warm(self.model, prompt, reuse, should_cancel)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, special tokens left out."""
        return str(self.lm.tokenizer.decode(list(ids), skip_special_tokens=True))

    def curve(self) -> CostCurve:
        if self._curve is None:
            self._curve = cost_curve(self.model)
        return self._curve

    @property
    def known_curve(self) -> CostCurve | None:
        """The curve trees were cut on, if any plan needed one yet (none is measured here)."""
        return self._curve

    def assume_curve(self, curve: CostCurve) -> None:
        """Cut trees on `curve` instead of this machine's own (a replay modelling another
        CPU); before any tree policy exists, so that every plan uses it."""
        if self._budgets:
            raise RuntimeError("assume_curve after a tree policy was made")
        self._curve = curve

    def whitespace_ids(self) -> frozenset[int]:
        """Tokens that decode to whitespace only (retrieval after them rarely pays)."""
        if self._whitespace is None:
            texts = self._texts()
            self._whitespace = frozenset(i for i, t in enumerate(texts) if t and not t.strip())
        return self._whitespace

    def _fim_ids(self) -> tuple[int, int, int] | None:
        """The tokenizer's fill-in-the-middle markers (prefix, suffix, middle), if it has them.
        Looked up once: the whole vocabulary costs ~100 ms to build."""
        if self._fim is None:
            vocab = self.lm.tokenizer.get_vocab()
            self._fim = tuple(int(vocab[m]) for m in FIM_MARKERS if m in vocab)
        return (self._fim[0], self._fim[1], self._fim[2]) if len(self._fim) == 3 else None

    def _texts(self) -> list[str]:
        """Each token's own text (the whole vocabulary: decoded once, ~1 s)."""
        if self._vocabulary_texts is None:
            vocab = len(self.lm.tokenizer)
            self._vocabulary_texts = self.lm.tokenizer.batch_decode([[i] for i in range(vocab)])
        return self._vocabulary_texts

    def _token_texts(self) -> TokenTexts:
        if self._lead_index is None:
            tokenizer = self.lm.tokenizer  # markers and other added tokens never start a word
            special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
            texts = self._texts()
            self._lead_index = TokenTexts(["" if i in special else t for i, t in enumerate(texts)])
        return self._lead_index

    def _drafter(self, plan: DecodePlan) -> RetrievalDrafter:
        project, expressions = self._project_layers(plan)
        sources = DraftSources(  # the drafter searches only what `plan` names
            general=self.general,
            project=project,
            expressions=expressions,
            whitespace_ids=self.whitespace_ids() if plan.searches_stores else frozenset(),
            fim_ids=self._fim_ids(),
        )
        return RetrievalDrafter(plan, sources, self._memories.setdefault(plan, PlanMemory()))

    def _project_layers(
        self, plan: DecodePlan
    ) -> tuple[tuple[SuffixIndex, ...], tuple[SuffixIndex, ...]]:
        """The project's current search layers; cached retrievals die with the old ones."""
        if self.project is None or not (plan.project or plan.expressions):
            return (), ()
        layers = self.project.layers()
        if layers is not self._layers:
            for memory in self._memories.values():
                memory.cache.clear()
            self._layers = layers
        expressions = self.project.expression_layers() if plan.expressions else ()
        return (layers if plan.project else ()), expressions

    def _budget(self, plan: DecodePlan) -> BudgetPolicy:
        # acceptance learnt on earlier requests carries over to the next one
        if plan not in self._budgets:
            self._budgets[plan] = tree_policy(plan, self.curve())
        return self._budgets[plan]

    def drafting(self, plan: DecodePlan) -> tuple[RetrievalDrafter, BudgetPolicy]:
        """`plan`'s drafter for one request and its tree policy, as `complete` uses them (the
        replay bench drives them without the model)."""
        return self._drafter(plan), self._budget(plan)

    def reliability(self, plan: DecodePlan) -> Reliability | None:
        """Predicted against observed acceptance of `plan`'s scored trees so far."""
        policy = self._budgets.get(plan)
        return policy.calibration.reliability if isinstance(policy, ScoredTrees) else None


def tree_policy(plan: DecodePlan, curve: CostCurve) -> BudgetPolicy:
    """How `plan` turns candidates into trees: scored and cut on `curve`, a fixed number of the
    heaviest nodes, or as many as the adaptive budget picks."""
    if plan.scored:
        return ScoredTrees(curve, Calibration(), plan.budget or MAX_SCORED_NODES)
    if plan.budget is not None:
        return FixedBudget(plan.budget)
    return AdaptiveBudget(curve)


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
