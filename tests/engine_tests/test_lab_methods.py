"""The lab's method names: `METHOD@BACKEND`, and which greedy each method is compared with."""

from __future__ import annotations

import pytest

from daemon.bench.methods import Lab, lab_plan, split_method
from daemon.engine import cpu_kernels
from daemon.engine.backends import open_forward, resolve_backend
from daemon.engine.engine import Engine
from daemon.errors import UsageError
from tests.engine_tests.tiny_model import tiny_qwen2


@pytest.fixture(scope="module")
def lab() -> Lab:
    lm = tiny_qwen2(layers=1)
    return Lab(Engine(lm, open_forward(lm, "auto")))


def test_auto_is_the_native_decoder_on_a_cpu(lab: Lab) -> None:
    """int8 where our C kernels run it (fast and row-invariant), float32 elsewhere."""
    expected = "native-w8a8" if cpu_kernels.kernel_available() else "native"
    assert lab.backend == expected == resolve_backend("auto", lab.engine.lm)
    with pytest.raises(UsageError, match="unknown backend"):
        resolve_backend("onnx", lab.engine.lm)


def test_each_method_is_compared_with_its_own_backends_greedy(lab: Lab) -> None:
    assert lab.reference("codeswift") == "ar"
    own, other = lab.backend, ({"native", "native-w8a8"} - {lab.backend}).pop()
    assert lab.reference(f"codeswift@{own}") == "ar"  # the lab's own backend
    assert lab.reference(f"codeswift@{other}") == f"ar@{other}"
    assert lab.reference("lookup@transformers") == "ar@transformers"
    assert lab.reference(f"codeswift-no-cache@{other}") == f"ar@{other}"
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
