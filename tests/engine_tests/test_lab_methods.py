"""The lab's method names: `METHOD@BACKEND`, and which greedy each method is compared with."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from daemon.bench.methods import Lab, lab_plan, split_method
from daemon.engine.backends import open_forward, resolve_backend
from daemon.engine.engine import Engine
from daemon.engine.models import LoadedModel
from daemon.errors import UsageError


@pytest.fixture(scope="module")
def lab() -> Lab:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    lm = LoadedModel(
        model=Qwen2ForCausalLM(config).eval(),
        tokenizer=None,  # type: ignore[arg-type]
        name="tiny-qwen2",
        device=torch.device("cpu"),
        dtype=torch.float32,
        eos_ids=frozenset(),
        load_seconds=0.0,
    )
    return Lab(Engine(lm, open_forward(lm, "auto")))


def test_auto_is_the_exact_int8_decoder_on_a_cpu(lab: Lab) -> None:
    assert lab.backend == "native-w8a8" == resolve_backend("auto", lab.engine.lm)
    with pytest.raises(UsageError, match="unknown backend"):
        resolve_backend("onnx", lab.engine.lm)


def test_each_method_is_compared_with_its_own_backends_greedy(lab: Lab) -> None:
    assert lab.reference("codeswift") == "ar"
    assert lab.reference("codeswift@native-w8a8") == "ar"  # the lab's own backend
    assert lab.reference("lookup@transformers") == "ar@transformers"
    assert lab.reference("codeswift-no-cache@native") == "ar@native"
    assert lab.reference("pld") == "ar@transformers"  # Hugging Face runs transformers
    assert lab.reference("llamacpp-pld") == "llamacpp"
    assert lab.reference("llamacpp") == "llamacpp"


def test_method_names_are_checked(lab: Lab) -> None:
    assert split_method("codeswift@native") == ("codeswift", "native")
    assert lab_plan("rest@transformers") == lab_plan("rest")
    for bad in ("nope", "pld@native", "llamacpp@transformers", "codeswift@auto", "ar@gpu"):
        with pytest.raises(UsageError):
            split_method(bad)


def test_a_method_on_another_backend_gets_an_engine_there(lab: Lab) -> None:
    other = lab._engine("transformers")
    assert other.model.backend == "transformers" and other.lm is lab.engine.lm
    assert lab._engine("transformers") is other  # made once
    assert lab._engine(None) is lab.engine
