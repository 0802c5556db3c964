"""The native forward: transformers' logits in float32; tree rows, one-token rows and prompt
rows bit for bit equal at the same position; a KV buffer that grows and compacts; int8
products that do not depend on the other rows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from daemon.engine import cpu_kernels
from daemon.engine.exact_attention import causal_layout, tree_layout
from daemon.engine.linears import DenseLinear, Int8Linear
from daemon.engine.models import LoadedModel
from daemon.engine.native_forward import KVBuffer, NativeForward, supports_native
from daemon.engine.tree import Candidate, ancestor_matrix, build_tree
from tests.engine_tests.tiny_model import VOCAB, tiny_qwen2


@pytest.fixture(scope="module")
def tiny_lm() -> LoadedModel:
    return tiny_qwen2()


@pytest.fixture(scope="module")
def tiny_bf16() -> LoadedModel:

    lm = tiny_qwen2()
    return dataclasses.replace(lm, model=lm.model.to(torch.bfloat16), dtype=torch.bfloat16)


# weights: "same" (float32 products), "int8" (W8A8), "bf16" (the model in bf16, its own
# weights through the bf16 kernel: row-invariant where the CPU has avx512_bf16)
WEIGHTS = [
    "same",
    pytest.param(
        "int8",
        marks=pytest.mark.skipif(
            not cpu_kernels.kernel_available(),
            reason="without the C kernels torch's attention is row-invariant on some CPUs only"
            " (an AMD EPYC's matrix products grouped a row's sums by the number of rows)",
        ),
    ),
    pytest.param(
        "bf16",
        marks=pytest.mark.skipif(
            not cpu_kernels.bf16_available(), reason="no avx512_bf16 kernel on this CPU"
        ),
    ),
]


def _native(tiny_lm: LoadedModel, tiny_bf16: LoadedModel, weights: str) -> NativeForward:
    if weights == "bf16":
        return NativeForward(tiny_bf16, "same")
    return NativeForward(tiny_lm, weights)


def test_logits_equal_transformers_in_float32(tiny_lm: LoadedModel) -> None:
    assert supports_native(tiny_lm)
    native = NativeForward(tiny_lm)
    tokens = [(7 * i + 3) % VOCAB for i in range(600)]  # past the buffer's first capacity
    with torch.inference_mode():
        expected = tiny_lm.model(input_ids=torch.tensor([tokens])).logits[0]
        cache = native.new_cache()
        first = native._forward(cache, tokens[:300], torch.arange(300), causal_layout(0, 300))
        rest = native._forward(cache, tokens[300:], torch.arange(300, 600), causal_layout(300, 300))
    assert cache.length == 600 and cache.capacity >= 600
    # logits reach ~20 here; the C kernels' exp and sums round differently from torch's
    assert torch.allclose(torch.cat([first, rest]), expected, atol=2e-3)


def _same(a: torch.Tensor, b: torch.Tensor, weights: str) -> bool:
    """int8 and bf16-kernel products are row-invariant, so their rows must match bit for bit;
    torch's float32 matrix products take another kernel for one row than for many, so they
    match to rounding only."""
    return torch.equal(a, b) if weights != "same" else torch.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("prompt_len", [40, 60, 127, 128, 300])  # trees across block edges too
def test_tree_rows_equal_one_token_steps(
    tiny_lm: LoadedModel, tiny_bf16: LoadedModel, weights: str, prompt_len: int
) -> None:
    """A tree row's keys, values and logits are those of plain greedy steps over its path;
    with row-invariant products bit for bit: what makes verification lossless in that
    precision."""
    native = _native(tiny_lm, tiny_bf16, weights)
    prompt = [(5 * i + 1) % VOCAB for i in range(prompt_len)]
    candidates = [Candidate((1, 2, 3, 9, 9, 9)), Candidate((1, 4)), Candidate((5, 6, 7))]
    tree = build_tree(candidates, 16, 8)
    with torch.inference_mode():
        cache = native.new_cache()
        native.prefill(cache, prompt)
        depths = torch.tensor((0, *tree.depths)) + len(prompt)
        layout = tree_layout(len(prompt), ancestor_matrix(tree))
        tree_logits = native._forward(cache, [7, *tree.tokens], depths, layout)
        for node in range(tree.size):
            path, walk = [], node
            while walk >= 0:
                path.append(tree.tokens[walk])
                walk = tree.parents[walk]
            steps = native.new_cache()
            native.prefill(steps, prompt)
            for token in [7, *reversed(path)]:
                one = tree_layout(steps.length, np.ones((1, 1), dtype=bool))
                position = torch.tensor([steps.length])
                alone = native._forward(steps, [token], position, one)[-1]
            assert _same(tree_logits[node + 1], alone, weights)
            row = len(prompt) + 1 + node
            assert _same(cache.keys[:, :, row], steps.keys[:, :, steps.length - 1], weights)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_chunked_prefill_rows_equal_one_by_one_rows(
    tiny_lm: LoadedModel, tiny_bf16: LoadedModel, weights: str
) -> None:
    native = _native(tiny_lm, tiny_bf16, weights)
    tokens = [(3 * i + 2) % VOCAB for i in range(600)]
    whole, stepped = native.new_cache(), native.new_cache()
    first = native.prefill(whole, tokens)  # chunks of 512 (kernels) or 256 rows
    native.prefill(stepped, tokens[:100])
    for token in tokens[100:]:
        last = native.prefill(stepped, [token])
    assert _same(whole.keys[:, :, :600], stepped.keys[:, :, :600], weights)
    assert _same(whole.values[:, :, :600], stepped.values[:, :, :600], weights)
    assert first == last  # only the last chunk's last row has logits


def test_keep_gathers_the_accepted_rows(tiny_lm: LoadedModel) -> None:
    native = NativeForward(tiny_lm)
    cache = native.new_cache()
    native.prefill(cache, [1, 2, 3])
    visible = np.tril(np.ones((4, 4), dtype=bool))
    native.verify(cache, [4, 5, 6, 7], [0, 1, 2, 3], visible)
    row_of_six = cache.keys[:, :, 5].clone()
    native.keep(cache, 3, [0, 2])
    assert cache.length == 5
    assert torch.equal(cache.keys[:, :, 4], row_of_six)
    native.crop(cache, 2)
    assert cache.length == 2


def test_buffer_grows_and_keeps_its_rows() -> None:
    buffer = KVBuffer(layers=2, kv_heads=1, head_dim=4, capacity=4)
    buffer.keys[:, :, :3] = 1.0
    buffer.length = 3
    buffer.reserve(10)
    assert buffer.capacity >= 13
    assert torch.all(buffer.keys[:, :, :3] == 1.0)


def test_int8_products_do_not_depend_on_the_other_rows() -> None:
    torch.manual_seed(1)
    weight, bias = torch.randn(4864, 896), torch.randn(4864)
    linear = Int8Linear(weight, bias)
    rows = torch.randn(33, 896) * torch.linspace(0.1, 10, 33)[:, None]
    together = linear(rows)
    for i in (0, 7, 32):
        assert torch.equal(together[i], linear(rows[i : i + 1])[0])
    dense = DenseLinear(weight, bias)(rows)
    relative = (together - dense).norm() / dense.norm()
    assert relative < 0.02  # per-channel int8 weights, per-row int8 activations


@pytest.mark.parametrize(("outputs", "inputs"), [(64, 896), (48, 4864), (40, 1041)])
def test_int8_float_products_equal_int_mm_bit_for_bit(outputs: int, inputs: int) -> None:
    """The path of CPUs without the kernels: float32 products of the int8 values, cut into blocks
    whose sums are exact, give `_int_mm`'s bits, at the extremes of int8 too (every product
    +-127 * 127, the largest sums there are)."""
    torch.manual_seed(inputs)
    weight = torch.randn(outputs, inputs)
    weight[0] = 1.0  # row 0 quantizes to all +127
    weight[1, ::2], weight[1, 1::2] = 1.0, -0.999  # alternating signs: cancellations
    floats, reference = Int8Linear(weight, None, "float"), Int8Linear(weight, None, "int_mm")
    assert len(floats.blocks) == -(-inputs // 1040)
    rows = torch.randn(5, inputs) * 4
    rows[0] = 2.5  # quantizes to all +127: row 0 x weight row 0 = 127 * 127 * inputs
    assert torch.equal(floats(rows), reference(rows))


def test_unsupported_models_are_refused(tiny_lm: LoadedModel) -> None:

    on_gpu = dataclasses.replace(tiny_lm, device=torch.device("cuda"))
    assert not supports_native(on_gpu)
    with pytest.raises(ValueError, match="no native forward"):
        NativeForward(on_gpu)


def test_cost_curve_name_follows_the_weights(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    """Two checkpoints of one name must not share a cost curve or replayed outputs: the
    identity carries the weights' fingerprint, which a rewritten weight file changes."""
    from daemon.engine.models import weights_fingerprint
    from daemon.engine.registry import MODELS

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    weights = folder / "model.safetensors"
    weights.write_bytes(b"first")
    first = weights_fingerprint(str(folder), str(folder), None)
    weights.write_bytes(b"second, longer")
    second = weights_fingerprint(str(folder), str(folder), None)
    assert first != second and len(first) == len(second) == 12
    packaged = next(iter(MODELS.values()))
    assert weights_fingerprint(packaged.name, "unused", None) == packaged.sha256[:12]
    hub = type("Hub", (), {"config": type("Config", (), {"_commit_hash": "0123456789abcdef"})})
    assert weights_fingerprint("org/model", "org/model", hub) == "0123456789ab"
    one = dataclasses.replace(tiny_lm, fingerprint=first)
    two = dataclasses.replace(tiny_lm, fingerprint=second)
    assert NativeForward(one).identity != NativeForward(two).identity
    assert NativeForward(one).identity.startswith(f"{tiny_lm.name}@{first}-")


def test_cost_curve_name_follows_the_kernel_build(tiny_lm: LoadedModel) -> None:
    """A rebuilt kernel makes another cost curve: its cache name must not be the old build's."""
    forward = NativeForward(tiny_lm)
    if not forward.kernels:
        assert "-c" not in forward.identity.removeprefix(tiny_lm.name)
        return
    build = cpu_kernels.kernel_build()
    assert len(build) == 8 and set(build) <= set("0123456789abcdef"), build  # the build hash
    assert f"-c{build}" in forward.identity
    # bf16 tile attention beside int8 products only (float32 weights keep float32 attention),
    # and a curve of its own
    assert not forward.tile_attention and "-bf16att" not in forward.identity
    int8 = NativeForward(tiny_lm, "int8")
    assert int8.tile_attention == cpu_kernels.tile_attention_available()
    assert ("-bf16att" in int8.identity) == int8.tile_attention
