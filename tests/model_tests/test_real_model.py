"""Losslessness with the real packaged Qwen2.5-Coder-0.5B in float32 on HumanEval prompts."""

from __future__ import annotations

import pytest

from daemon.bench import humaneval_prompts
from daemon.engine.methods import Completion, Engine, fit_prompt, run_method
from daemon.engine.models import LoadedModel, load_model
from tests.conftest import REPO, require_real_model

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


@pytest.fixture(scope="module")
def qwen_fp32() -> LoadedModel:
    require_real_model()
    return load_model("qwen2.5-coder-0.5b", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def engine(qwen_fp32: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """The real engine: stdlib general store, and this repository's code as the project."""
    from daemon.engine.general_store import open_general_store
    from daemon.engine.project_store import ProjectStore

    shards = tmp_path_factory.mktemp("project-shards")
    project = ProjectStore(REPO / "daemon", qwen_fp32.tokenizer, folder=shards)
    project.sync()
    return Engine(qwen_fp32, open_general_store(qwen_fp32.tokenizer), project)


def _run(engine: Engine, method: str, prompt: str, n: int) -> Completion:
    ids, _ = fit_prompt(engine.lm, engine.lm.tokenizer(prompt)["input_ids"], n)
    return run_method(engine, method, ids, n)


def test_codeswift_equals_greedy_on_ten_humaneval_prompts(engine: Engine) -> None:
    accepted = []
    for task_id, prompt in humaneval_prompts(10):
        reference = _run(engine, "ar", prompt, 128)
        fast = _run(engine, "codeswift", prompt, 128)
        assert fast.tokens == reference.tokens, task_id
        assert fast.text == reference.text
        accepted.append(fast.mean_accepted)
    assert sum(accepted) / len(accepted) > 1.1  # drafts were really accepted, not just skipped


def test_our_greedy_equals_hugging_face_greedy(engine: Engine) -> None:
    for _, prompt in humaneval_prompts(2):
        assert _run(engine, "ar", prompt, 48).tokens == _run(engine, "hf", prompt, 48).tokens


def test_stop_strings_cut_both_methods_at_the_same_token(engine: Engine) -> None:
    _, prompt = humaneval_prompts(1)[0]
    ids, _ = fit_prompt(engine.lm, engine.lm.tokenizer(prompt)["input_ids"], 128)
    plain = run_method(engine, "ar", ids, 128, stop_strings=("\n\n",))
    fast = run_method(engine, "codeswift", ids, 128, stop_strings=("\n\n",))
    assert plain.stop_reason == "stop_string"
    assert fast.tokens == plain.tokens
    assert "\n\n" not in fast.text and fast.text.strip()


def test_every_method_and_ablation_equals_greedy(engine: Engine) -> None:
    from daemon.engine.methods import METHODS

    ours = [m for m in METHODS if m not in ("ar", "hf", "assisted")]  # assisted: below
    for _, prompt in humaneval_prompts(12)[10:]:
        ids, _ = fit_prompt(engine.lm, engine.lm.tokenizer(prompt)["input_ids"], 64)
        reference = run_method(engine, "ar", ids, 64).tokens
        for method in ours:
            assert run_method(engine, method, ids, 64).tokens == reference, method


def test_assisted_generation_equals_greedy(engine: Engine) -> None:
    """The `assisted` peer end to end (the packaged model drafting for itself: the plumbing,
    not the speed, is what is checked here; the 1.5B pair is in README's performance)."""
    from daemon.engine.methods import attach_assistant

    assisted = Engine(engine.lm)
    attach_assistant(assisted, "qwen2.5-coder-0.5b")
    _, prompt = humaneval_prompts(1)[0]
    ids, _ = fit_prompt(engine.lm, engine.lm.tokenizer(prompt)["input_ids"], 48)
    done = run_method(assisted, "assisted", ids, 48)
    assert done.tokens == run_method(engine, "ar", ids, 48).tokens
    assert done.mean_accepted > 1.0  # the draft model's tokens were really accepted


def test_editor_requests_with_prefix_reuse_equal_fresh_greedy(engine: Engine) -> None:
    """The language server's path: fill-in-the-middle prompts, KV rows kept across requests
    while the user types, editor stop rules. Every answer equals a fresh greedy run."""
    from daemon.engine.decode import PrefixCache
    from daemon.service import fim_prompt
    from lsp.settings import Settings

    source = (REPO / "daemon" / "engine" / "stops.py").read_text()
    cursor = source.index("        return None\n\n    def _ends_with_stop")
    reuse = PrefixCache()
    for typed in ("", "    ", "    r", "    re"):
        prefix, suffix = source[:cursor] + typed, source[cursor:]
        prompt, ends = fim_prompt(engine, prefix, suffix, Settings(prefix_tokens=512))
        reused = run_method(engine, "codeswift", prompt, 24, extra_eos=ends, reuse=reuse)
        fresh = run_method(engine, "ar", prompt, 24, extra_eos=ends)
        assert reused.tokens == fresh.tokens, typed
    # typing kept the prompt's start: only the changed tail and the suffix were prefilled
    assert reuse.reused > len(prompt) // 2
