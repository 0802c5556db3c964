"""HumanEval's functional check, run on the package's own canonical solutions and on wrong,
hanging and over-long completions."""

from __future__ import annotations

from daemon.bench.humaneval import humaneval_problems, pass_at_1, passes, truncate_completion


def test_canonical_solutions_pass_and_wrong_ones_fail() -> None:
    problems = humaneval_problems(3)
    assert len(humaneval_problems()) == 164
    canonical = [p["canonical_solution"] for p in problems]
    assert pass_at_1(problems, canonical) == 1.0
    assert pass_at_1(problems, ["    return None\n"] * 3) == 0.0


def test_a_hanging_completion_fails_within_its_time_limit() -> None:
    problem = humaneval_problems(1)[0]
    assert not passes(problem, "    while True:\n        pass\n", timeout_s=1.0)


def test_completions_are_cut_where_the_function_ends() -> None:
    problem = humaneval_problems(1)[0]
    tail = "\n\ndef unrelated():\n    raise SystemExit(1)\n\nunrelated()\n"
    assert truncate_completion("    return 1\n" + tail) == "    return 1\n\n"
    assert passes(problem, problem["canonical_solution"] + tail)
