"""Speculative decoding equals greedy decoding, token for token, on a tiny random Qwen2, on
every backend (transformers with SDPA or folded attention, native, native W8A8).

The drafters here are adversarial on purpose: always wrong, empty, right then wrong, right with
wrong siblings ranked first (so the accepted path is scattered through the tree and the KV cache
must be gathered), deep, wide, and drafts running past EOS.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import pytest
import torch

from daemon.engine import cpu_kernels
from daemon.engine.attention import use_folded_attention
from daemon.engine.budget import FixedBudget
from daemon.engine.decode import generate
from daemon.engine.drafters import ContextLookupDrafter
from daemon.engine.exact_attention import causal_layout
from daemon.engine.forward import ForwardPort
from daemon.engine.models import LoadedModel
from daemon.engine.native_forward import NativeForward
from daemon.engine.stops import StopRule
from daemon.engine.torch_forward import TorchForward
from daemon.engine.tree import Candidate
from tests.engine_tests.tiny_model import VOCAB, tiny_qwen2


@pytest.fixture(scope="module", params=["sdpa", "folded", "native", "native-w8a8"])
def tiny(request: pytest.FixtureRequest) -> ForwardPort:
    lm = tiny_qwen2(max_positions=512)
    if request.param == "folded":
        assert use_folded_attention(lm.model)  # what load_model does: trees attend per KV head
    if request.param.startswith("native"):
        return NativeForward(lm, "int8" if request.param == "native-w8a8" else "same")
    return TorchForward(lm)


PROMPTS = [[3, 14, 15, 92, 65, 35, 89, 79], [1], [5, 5, 5, 5, 5, 5], list(range(40))]


def greedy(lm: ForwardPort, prompt: list[int], n: int, eos: Sequence[int] = ()) -> list[int]:
    return generate(lm, prompt, StopRule(n, eos)).tokens


class Oracle:
    """Knows the greedy answer; proposes it with the given corruptions."""

    def __init__(self, answer: list[int], prompt_len: int, mode: str, seed: int = 0) -> None:
        self.answer, self.prompt_len, self.mode = answer, prompt_len, mode
        self.rng = random.Random(seed)

    def begin(self, prompt: Sequence[int]) -> None:
        assert len(prompt) == self.prompt_len

    def observe(
        self,
        accepted: Sequence[int],
        rows: Sequence[int] = (),
        predicted: Sequence[int] = (),
        parents: Sequence[int] = (),
    ) -> None:
        pass

    def finish(self, generated: Sequence[int]) -> None:
        pass

    def propose(self, context: Sequence[int], depth: int) -> list[Candidate]:
        done = len(context) - self.prompt_len
        truth = tuple(self.answer[done : done + 12])
        wrong = tuple((t + 1) % VOCAB for t in truth)
        noise = [tuple(self.rng.randrange(VOCAB) for _ in range(8)) for _ in range(30)]
        if self.mode == "empty":
            return []
        if self.mode == "all_wrong":
            return [Candidate(wrong), *map(Candidate, noise)]
        if self.mode == "right_then_wrong":
            k = self.rng.randrange(len(truth) + 1)
            return [Candidate(truth[:k] + wrong[k:])]
        if self.mode == "scattered":
            # wrong branches outweigh the truth at every depth, so BFS order puts them first
            siblings = [Candidate(truth[:k] + wrong[k : k + 2], weight=5.0) for k in range(6)]
            return [*siblings, Candidate(truth, weight=1.0)]
        if self.mode == "wide":
            return [Candidate(truth), *map(Candidate, noise)]
        if self.mode == "deep":
            return [Candidate(tuple(self.answer[done : done + 40]))]
        raise AssertionError(self.mode)


@pytest.mark.parametrize(
    "mode", ["empty", "all_wrong", "right_then_wrong", "scattered", "wide", "deep"]
)
@pytest.mark.parametrize("budget", [1, 8, 64])
def test_adversarial_drafts_never_change_the_output(
    tiny: ForwardPort, mode: str, budget: int
) -> None:
    for prompt in PROMPTS:
        answer = greedy(tiny, prompt, 48)
        oracle = Oracle(answer + [0] * 64, len(prompt), mode)
        result = generate(tiny, prompt, StopRule(48, ()), oracle, FixedBudget(budget), max_depth=40)
        assert result.tokens == answer, (mode, budget, prompt)
        if mode in ("deep", "scattered") and budget >= 8:
            assert result.mean_accepted > 2.0  # the right drafts were really accepted


def test_drafts_that_run_past_eos_stop_where_greedy_stops(tiny: ForwardPort) -> None:
    prompt = PROMPTS[0]
    answer = greedy(tiny, prompt, 60)
    eos = answer[20]  # a token greedy emits mid-way acts as EOS
    expected = greedy(tiny, prompt, 60, eos=[eos])
    assert expected[-1] == eos and len(expected) <= 21
    oracle = Oracle(answer + [0] * 64, len(prompt), "deep")
    result = generate(tiny, prompt, StopRule(60, [eos]), oracle, FixedBudget(64), max_depth=40)
    assert result.tokens == expected
    assert result.stop_reason == "eos"


def test_context_lookup_drafter_is_exact(tiny: ForwardPort) -> None:
    for prompt in PROMPTS:
        answer = greedy(tiny, prompt, 64)
        result = generate(tiny, prompt, StopRule(64, ()), ContextLookupDrafter(), FixedBudget(16))
        assert result.tokens == answer


def test_greedy_loop_matches_hugging_face_generate(tiny: ForwardPort) -> None:
    if tiny.backend == "native-w8a8":
        pytest.skip("int8 weights make another model than transformers' own")
    assert isinstance(tiny, TorchForward | NativeForward)
    for prompt in PROMPTS:
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            out = tiny.lm.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=32,
                do_sample=False,
                min_new_tokens=32,
                pad_token_id=0,
            )
        assert greedy(tiny, prompt, 32) == out[0, len(prompt) :].tolist()


def test_tree_logits_equal_one_by_one_logits(tiny: ForwardPort) -> None:
    from transformers import DynamicCache

    from daemon.engine.torch_forward import tree_attention_mask
    from daemon.engine.tree import ancestor_matrix, build_tree

    if not isinstance(tiny, TorchForward):
        pytest.skip("the native forward's own test is in test_native_forward.py")
    prompt = PROMPTS[3]
    tree = build_tree([Candidate((1, 2, 3)), Candidate((1, 4)), Candidate((5, 6))], 16, 8)

    def positions(start: int, depths: Sequence[int]) -> torch.Tensor:
        return torch.tensor(depths) + start

    with torch.inference_mode():
        cache = DynamicCache()
        tiny._forward(prompt, positions(0, range(len(prompt))), cache, None)
        visible = ancestor_matrix(tree)
        mask = tree_attention_mask(visible, len(prompt), torch.float32, torch.device("cpu"))
        depths = (0, *tree.depths)
        tree_logits = tiny._forward([7, *tree.tokens], positions(len(prompt), depths), cache, mask)
        for node in range(tree.size):
            path = []
            walk = node
            while walk >= 0:
                path.append(tree.tokens[walk])
                walk = tree.parents[walk]
            sequence = [*prompt, 7, *reversed(path)]
            steps = range(len(sequence))
            alone = tiny._forward(sequence, positions(0, steps), DynamicCache(), None)[-1]
            assert torch.allclose(tree_logits[node + 1], alone, atol=1e-4)


def test_cancellation_stops_within_a_step(tiny: ForwardPort) -> None:
    calls = 0

    def cancel_after_three() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    answer = greedy(tiny, PROMPTS[0], 40)
    result = generate(
        tiny,
        PROMPTS[0],
        StopRule(40, ()),
        ContextLookupDrafter(),
        FixedBudget(16),
        should_cancel=cancel_after_three,
    )
    assert result.stop_reason == "cancelled"
    assert result.forwards == 1 + 3  # the prefill, then three steps
    assert result.tokens == answer[: len(result.tokens)]


def test_retrieval_drafter_with_every_switch_is_exact(tiny: ForwardPort) -> None:
    from daemon.bench.methods import lab_plan
    from daemon.engine.budget import CostCurve
    from daemon.engine.datastore import SuffixIndex
    from daemon.engine.engine import tree_policy
    from daemon.engine.plan import CODESWIFT
    from daemon.engine.retrieval import DraftSources, PlanMemory, RetrievalDrafter

    answers = {tuple(p): greedy(tiny, p, 48) for p in PROMPTS}
    # stores that hold the true continuations (so drafts get accepted) plus noise
    rng = random.Random(1)
    docs = [list(p) + a for p, a in answers.items()]
    docs += [[rng.randrange(VOCAB) for _ in range(200)] for _ in range(5)]
    general = SuffixIndex.build(docs, {})
    project = SuffixIndex.build(docs[: len(answers)], {})
    sources = DraftSources(general, (project,), whitespace_ids=frozenset({0, 1}))
    curve = CostCurve((1, 16, 64), (10.0, 12.0, 30.0))
    ablations = [
        "context",
        "general",
        "project",
        "cache",
        "timing",
        "recycled",
        "analogy",
        "scoring",
    ]
    for off in [None, *ablations, "budget"]:
        plan = lab_plan(f"codeswift-no-{off}") if off else CODESWIFT  # the bench's ablations
        assert plan is not None
        memory = PlanMemory()  # shared by the prompts, as the engine keeps it per plan
        policy = tree_policy(plan, curve)  # likewise
        for prompt, answer in answers.items():
            drafter = RetrievalDrafter(plan, sources, memory)
            result = generate(tiny, list(prompt), StopRule(48, ()), drafter, policy)
            assert result.tokens == answer, off
            assert result.mean_accepted > 1.5, off  # the stores' true continuations were used


def test_prefix_cache_reuse_gives_the_greedy_output(tiny: ForwardPort) -> None:
    """An editor's request sequence: the same text, a few more tokens typed, an edit further
    back, a cancelled request in between. Reused KV rows never change any answer."""
    from daemon.engine.decode import PrefixCache

    reuse = PrefixCache()
    base = PROMPTS[0]
    sequence = [base, [*base, 7, 8], [*base, 7, 8, 9], [*base[:5], 3, *base[6:]], base, base]
    for prompt in sequence:
        fresh = greedy(tiny, prompt, 24)
        drafter = ContextLookupDrafter()
        result = generate(tiny, prompt, StopRule(24, ()), drafter, FixedBudget(16), reuse=reuse)
        assert result.tokens == fresh
    assert reuse.reused == len(base) - 1  # asked twice: all cached but the last prompt token

    calls = 0

    def cancel_soon() -> bool:
        nonlocal calls
        calls += 1
        return calls > 2

    generate(tiny, [*base, 5], StopRule(24, ()), should_cancel=cancel_soon, reuse=reuse)
    again = generate(tiny, [*base, 5, 6], StopRule(24, ()), reuse=reuse)
    assert again.tokens == greedy(tiny, [*base, 5, 6], 24)
    assert reuse.reused > len(base)


def test_a_short_prefill_verifies_a_draft_in_the_same_forward(tiny: ForwardPort) -> None:
    """A prompt tail of a few rows (cold, or after reused rows) and a draft tree below its
    last token go through one forward: a right draft makes the answer whole in that one
    forward; a wrong or partly right one still gives greedy's tokens."""
    from daemon.engine.decode import DRAFTED_PREFILL_ROWS, PrefixCache

    for prompt in PROMPTS:
        answer = greedy(tiny, prompt, 8)
        whole = generate(
            tiny, prompt, StopRule(8, ()), Oracle(answer, len(prompt), "deep"), FixedBudget(16)
        )
        assert whole.tokens == answer and whole.forwards == 1, prompt
        for mode in ("all_wrong", "right_then_wrong", "scattered"):
            oracle = Oracle(greedy(tiny, prompt, 40), len(prompt), mode)
            assert generate(tiny, prompt, StopRule(24, ()), oracle, FixedBudget(16)).tokens == (
                greedy(tiny, prompt, 24)
            ), (prompt, mode)
    # after reused rows: the typed tail and the draft share the forward
    reuse = PrefixCache()
    base = PROMPTS[3]
    generate(tiny, base, StopRule(4, ()), reuse=reuse)
    typed = [*base, 7, 8, 9]
    answer = greedy(tiny, typed, 8)
    result = generate(
        tiny,
        typed,
        StopRule(8, ()),
        Oracle(answer, len(typed), "deep"),
        FixedBudget(16),
        reuse=reuse,
    )
    assert result.tokens == answer and result.forwards == 1 and reuse.reused > len(base) - 1
    # a long prefill is run alone: its first forward yields one token
    long = list(range(DRAFTED_PREFILL_ROWS + 8))
    answer = greedy(tiny, long, 8)
    result = generate(
        tiny, long, StopRule(8, ()), Oracle(answer, len(long), "deep"), FixedBudget(16)
    )
    assert result.tokens == answer and result.forwards == 2


def test_warmed_rows_give_the_greedy_output(tiny: ForwardPort) -> None:
    """A warm-up prefills the prompt in small chunks before the request; a request that
    follows reuses those rows and answers exactly as a cold one; a cancelled warm-up keeps
    the chunks it finished."""
    from daemon.engine.decode import PrefixCache, warm

    reuse = PrefixCache()
    prompt = PROMPTS[3]
    assert warm(tiny, prompt, reuse, lambda: False, chunk=7) == len(prompt)
    assert reuse.tokens == prompt
    result = generate(
        tiny, prompt, StopRule(24, ()), ContextLookupDrafter(), FixedBudget(16), reuse=reuse
    )
    assert result.tokens == greedy(tiny, prompt, 24)
    assert reuse.reused == len(prompt) - 1  # only the last prompt token ran again

    calls = 0

    def cancel_after_two_chunks() -> bool:
        nonlocal calls
        calls += 1
        return calls > 2

    moved = [*prompt[:10], 1, 2, 3, *prompt[10:]]  # the cursor moved: rows after it change
    assert warm(tiny, moved, reuse, cancel_after_two_chunks, chunk=5) == 10
    assert reuse.tokens == moved[:20]
    result = generate(tiny, moved, StopRule(24, ()), reuse=reuse)
    assert result.tokens == greedy(tiny, moved, 24) and reuse.reused == 20


def _near_tie_model() -> LoadedModel:
    """The tiny model in bf16 with its output rows in twins: row 2k+1 is row 2k with one weight
    one bf16 step larger, so the two best logits of every step differ only in their last bits
    and any rounding that depends on the rows around a query flips the choice."""
    lm = tiny_qwen2()
    model = lm.model.to(torch.bfloat16)
    with torch.no_grad():
        head = model.lm_head.weight
        for k in range(0, VOCAB - 1, 2):
            head[k + 1] = head[k]
            column = k % head.shape[1]
            value = head[k, column].float()
            head[k + 1, column] = (value + value.abs() * 2.0**-7).to(torch.bfloat16)
    return dataclasses.replace(lm, model=model, dtype=torch.bfloat16)


# the backends whose every row is computed as it would be alone in their own precision
EXACT_IN_THEIR_PRECISION = [
    pytest.param(
        "same",
        marks=pytest.mark.skipif(not cpu_kernels.bf16_available(), reason="no avx512_bf16"),
    ),
    pytest.param(
        "int8",
        marks=pytest.mark.skipif(
            not cpu_kernels.kernel_available(), reason="no C kernels on this CPU"
        ),
    ),
]


@pytest.mark.parametrize("weights", EXACT_IN_THEIR_PRECISION)
def test_near_tie_logits_never_change_the_output(weights: str) -> None:
    native = NativeForward(_near_tie_model(), weights)
    for prompt in PROMPTS:
        answer = greedy(native, prompt, 48)
        with torch.inference_mode():
            sequence = [*prompt, *answer[:-1]]
            layout = causal_layout(0, len(sequence))
            positions = torch.arange(len(sequence))
            logits = native._forward(native.new_cache(), sequence, positions, layout)
            logits = logits[len(prompt) - 1 :]
        top2 = logits.float().topk(2, dim=-1).values
        margin = (top2[:, 0] - top2[:, 1]) / top2[:, 0].abs().clamp(min=1.0)
        assert (margin < 1e-2).float().mean() > 0.9  # nearly every step is a near-tie
        for mode in ("scattered", "wide", "right_then_wrong"):
            oracle = Oracle(answer + [0] * 64, len(prompt), mode)
            result = generate(native, prompt, StopRule(48, ()), oracle, FixedBudget(16), 40)
            assert result.tokens == answer, (weights, mode, prompt)
        lookup = generate(native, prompt, StopRule(48, ()), ContextLookupDrafter(), FixedBudget(16))
        assert lookup.tokens == answer, (weights, prompt)


class TokenLead:
    """A lead over token ids: the i-th token must come from `sets[i]`, then anything."""

    def __init__(self, sets: list[set[int]]) -> None:
        self.sets = sets

    def allowed(self, written: Sequence[int]) -> list[int] | None:
        return sorted(self.sets[len(written)]) if len(written) < len(self.sets) else None


def test_a_lead_holds_the_first_tokens_and_speculation_stays_exact(tiny: ForwardPort) -> None:
    """The editor's lead (the word being typed): the first tokens are the best of the allowed
    ones, the rest is plain greedy after them, and speculative decoding gives the same."""
    for prompt in PROMPTS:
        free = greedy(tiny, prompt, 32)
        # sets without greedy's own choices, so the lead really changes the start
        sets = [{(free[0] + 1) % VOCAB, (free[0] + 7) % VOCAB}, set(range(0, VOCAB, 3)) - {free[1]}]
        led = generate(tiny, prompt, StopRule(32, ()), lead=TokenLead(sets))
        assert led.tokens[0] in sets[0] and led.tokens[1] in sets[1], prompt
        assert led.forwards == len(led.tokens)  # one row per token: no drafts here
        # the cache after the lead-in holds exactly the lead's rows: greedy goes on from there
        assert led.tokens[2:] == greedy(tiny, prompt + led.tokens[:2], 30), prompt
        fast = generate(
            tiny,
            prompt,
            StopRule(32, ()),
            ContextLookupDrafter(),
            FixedBudget(16),
            lead=TokenLead(sets),
        )
        assert fast.tokens == led.tokens, prompt
        # a short prompt is drafted from its prefill on: the lead's rows take the best of the
        # tokens it allows, so a draft of the led answer is accepted through the lead
        oracle = Oracle(led.tokens + [0] * 64, len(prompt), "deep")
        deep = generate(
            tiny, prompt, StopRule(32, ()), oracle, FixedBudget(16), lead=TokenLead(sets)
        )
        assert deep.tokens == led.tokens and deep.forwards <= 4, prompt
        assert deep.accepted[0] >= 2, prompt  # past the lead's two tokens in the first forward
        # drafts against the lead (greedy's free answer, wrong tokens) never change it
        for mode in ("all_wrong", "wide", "scattered"):
            for truth in (free, led.tokens):
                drafts = Oracle(truth + [0] * 64, len(prompt), mode)
                held = generate(
                    tiny, prompt, StopRule(32, ()), drafts, FixedBudget(16), lead=TokenLead(sets)
                )
                assert held.tokens == led.tokens, (prompt, mode)


class _Witness(ContextLookupDrafter):
    """Context lookup that keeps what `begin` and `finish` were given."""

    def begin(self, prompt: Sequence[int]) -> None:
        super().begin(prompt)
        self.begun = list(prompt)

    def finish(self, generated: Sequence[int]) -> None:
        self.finished = list(generated)


def test_finish_gets_what_followed_the_context_begin_got(tiny: ForwardPort) -> None:
    """The model's history keeps an answer after the context it followed: a lead-in's tokens,
    in that context when `begin` comes after the lead-in (a long prefill), are not repeated."""
    rng = random.Random(3)
    long_prompt = [rng.randrange(VOCAB) for _ in range(100)]  # past a drafted prefill's rows
    for prompt in (long_prompt, PROMPTS[0]):
        free = greedy(tiny, prompt, 12)
        sets = [{(free[0] + 1) % VOCAB}, {(free[1] + 2) % VOCAB}]
        witness = _Witness()
        result = generate(
            tiny, prompt, StopRule(12, ()), witness, FixedBudget(4), lead=TokenLead(sets)
        )
        assert witness.begun[: len(prompt)] == prompt
        document = witness.begun + witness.finished
        assert document[: len(prompt) + len(result.tokens)] == prompt + result.tokens
