"""Draft budgets from a cost curve: interpolation, and choices that follow acceptance."""

from __future__ import annotations

from daemon.engine.budget import AdaptiveBudget, CostCurve, FixedBudget
from daemon.engine.tree import Candidate

# roughly this CPU in bf16 (DESIGN.md §4) and in fp32 (4 tokens already cost twice one)
BF16 = CostCurve((1, 8, 16, 32, 64, 65), (58.0, 66.0, 74.0, 100.0, 147.0, 149.0))
FP32 = CostCurve((1, 2, 4, 8, 16, 65), (80.0, 85.0, 170.0, 210.0, 240.0, 300.0))


def test_cost_interpolates_and_extrapolates() -> None:
    assert BF16.cost(1) == 58.0
    assert BF16.cost(12) == 70.0
    assert BF16.cost(130) == 298.0


def test_looked_up_costs_are_the_interpolated_ones() -> None:
    """Costs and least row costs come from tables up to a few hundred rows, the formula past
    them: the same values either way, and the same on either side of the tables' end."""
    for curve in (BF16, FP32):
        for tokens in (0, 1, 2, 3, 16, 17, 64, 65, 66, 259, 260, 261, 1000):
            sizes, ms = curve.sizes, curve.ms
            if tokens <= sizes[0]:
                expected = ms[0]
            elif tokens > sizes[-1]:
                expected = ms[-1] * tokens / sizes[-1]
            else:
                i = next(i for i in range(1, len(sizes)) if tokens <= sizes[i])
                fraction = (tokens - sizes[i - 1]) / (sizes[i] - sizes[i - 1])
                expected = ms[i - 1] + (ms[i] - ms[i - 1]) * fraction
            assert curve.cost(tokens) == expected, tokens
            later = [(curve.cost(t + 1) - curve.cost(t)) for t in range(tokens, tokens + 400)]
            assert curve.least_row_cost(tokens) <= min(later) + 1e-9, tokens
    assert FP32.least_row_cost(0) == 0.0  # flat below the first size
    assert FP32.least_row_cost(4) == FP32.least_row_cost(5) == 60.0 / 49  # 16 -> 65 rows


def test_budget_grows_with_acceptance_and_shrinks_without() -> None:
    policy = AdaptiveBudget(BF16, rate=0.5)
    start = policy.choose()
    for _ in range(50):
        policy.learn(start, 0)  # nothing is ever accepted
    low = policy.choose()
    for _ in range(50):
        policy.learn(16, 6)  # long accepted runs
    high = policy.choose()
    assert low < start <= high
    assert low == 1


def test_a_steep_curve_keeps_trees_small() -> None:
    assert AdaptiveBudget(FP32, rate=0.5).choose() <= 2
    assert AdaptiveBudget(BF16, rate=0.5).choose() >= 8


def test_fixed_budget_ignores_feedback() -> None:
    policy = FixedBudget(8)
    candidates = [Candidate((n, n + 1, n + 2)) for n in range(0, 30, 3)]
    tree = policy.build(candidates, depth=10)
    policy.record(tree, [])
    assert tree.size == policy.build(candidates, depth=10).size == 8


def test_least_row_cost_bounds_every_later_stretch_of_the_curve() -> None:
    curve = CostCurve((1, 2, 4, 8, 16, 64, 65), (27.0, 28.5, 30.0, 34.0, 41.0, 101.0, 107.0))
    for start in range(1, 90):
        bound = curve.least_row_cost(start)
        for more in range(1, 40):
            assert curve.cost(start + more) - curve.cost(start) >= more * bound - 1e-9
    assert curve.least_row_cost(4) == (41.0 - 34.0) / 8  # the cheapest row past 4: 8..16
    assert curve.least_row_cost(70) == 107.0 / 65  # the extrapolated tail
    # a noisy curve that dips gives no bound worth stopping on
    assert CostCurve((1, 8, 16), (10.0, 20.0, 19.0)).least_row_cost(1) < 0
