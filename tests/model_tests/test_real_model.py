"""Losslessness with the real packaged Qwen2.5-Coder-0.5B in float32 on HumanEval prompts."""

from __future__ import annotations

import pytest

from daemon.bench import humaneval_prompts
from daemon.engine.methods import Completion, fit_prompt, run_method
from daemon.engine.models import LoadedModel, load_model
from tests.conftest import require_real_model

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


@pytest.fixture(scope="module")
def qwen_fp32() -> LoadedModel:
    require_real_model()
    return load_model("qwen2.5-coder-0.5b", device="cpu", dtype="float32")


def _run(lm: LoadedModel, method: str, prompt: str, n: int) -> Completion:
    ids, _ = fit_prompt(lm, lm.tokenizer(prompt)["input_ids"], n)
    return run_method(lm, method, ids, n)


def test_codeswift_equals_greedy_on_ten_humaneval_prompts(qwen_fp32: LoadedModel) -> None:
    accepted = []
    for task_id, prompt in humaneval_prompts(10):
        reference = _run(qwen_fp32, "ar", prompt, 128)
        fast = _run(qwen_fp32, "codeswift", prompt, 128)
        assert fast.tokens == reference.tokens, task_id
        assert fast.text == reference.text
        accepted.append(fast.mean_accepted)
    assert sum(accepted) / len(accepted) > 1.1  # drafts were really accepted, not just skipped


def test_our_greedy_equals_hugging_face_greedy(qwen_fp32: LoadedModel) -> None:
    for _, prompt in humaneval_prompts(2):
        assert _run(qwen_fp32, "ar", prompt, 48).tokens == _run(qwen_fp32, "hf", prompt, 48).tokens


def test_stop_strings_cut_both_methods_at_the_same_token(qwen_fp32: LoadedModel) -> None:
    _, prompt = humaneval_prompts(1)[0]
    ids, _ = fit_prompt(qwen_fp32, qwen_fp32.tokenizer(prompt)["input_ids"], 128)
    plain = run_method(qwen_fp32, "ar", ids, 128, stop_strings=("\n\n",))
    fast = run_method(qwen_fp32, "codeswift", ids, 128, stop_strings=("\n\n",))
    assert plain.stop_reason == "stop_string"
    assert fast.tokens == plain.tokens
    assert "\n\n" not in fast.text and fast.text.strip()
