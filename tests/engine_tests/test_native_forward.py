"""The native forward: transformers' logits in float32, tree rows equal to one-by-one rows, a
KV buffer that grows and compacts, and int8 products that do not depend on the other rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from daemon.engine.linears import DenseLinear, Int8Linear
from daemon.engine.models import LoadedModel
from daemon.engine.native_forward import KVBuffer, NativeForward, supports_native
from daemon.engine.tree import Candidate, ancestor_matrix, build_tree

VOCAB = 97


@pytest.fixture(scope="module")
def tiny_lm() -> LoadedModel:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.3,
        tie_word_embeddings=False,
    )
    return LoadedModel(
        model=Qwen2ForCausalLM(config).eval(),
        tokenizer=None,  # type: ignore[arg-type]
        name="tiny-qwen2",
        device=torch.device("cpu"),
        dtype=torch.float32,
        eos_ids=frozenset(),
        load_seconds=0.0,
    )


def test_logits_equal_transformers_in_float32(tiny_lm: LoadedModel) -> None:
    assert supports_native(tiny_lm)
    native = NativeForward(tiny_lm)
    tokens = [(7 * i + 3) % VOCAB for i in range(600)]  # past the buffer's first capacity
    with torch.inference_mode():
        expected = tiny_lm.model(input_ids=torch.tensor([tokens])).logits[0]
        cache = native.new_cache()
        first = native._forward(cache, tokens[:300], torch.arange(300), None)
        rest = native._forward(cache, tokens[300:], torch.arange(300, 600), None)
    assert cache.length == 600 and cache.capacity >= 600
    assert torch.allclose(torch.cat([first, rest]), expected, atol=1e-4)


@pytest.mark.parametrize("weights", ["same", "int8"])
def test_tree_rows_equal_one_by_one_rows(tiny_lm: LoadedModel, weights: str) -> None:
    native = NativeForward(tiny_lm, weights)
    prompt = list(range(40))
    tree = build_tree([Candidate((1, 2, 3)), Candidate((1, 4)), Candidate((5, 6))], 16, 8)
    with torch.inference_mode():
        cache = native.new_cache()
        native._forward(cache, prompt, torch.arange(len(prompt)), None)
        depths = torch.tensor((0, *tree.depths)) + len(prompt)
        blocked = torch.from_numpy(~ancestor_matrix(tree))
        tree_logits = native._forward(cache, [7, *tree.tokens], depths, blocked)
        for node in range(tree.size):
            path, walk = [], node
            while walk >= 0:
                path.append(tree.tokens[walk])
                walk = tree.parents[walk]
            sequence = [*prompt, 7, *reversed(path)]
            alone = native._forward(
                native.new_cache(), sequence, torch.arange(len(sequence)), None
            )[-1]
            assert torch.allclose(tree_logits[node + 1], alone, atol=1e-4)


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


def test_unsupported_models_are_refused(tiny_lm: LoadedModel) -> None:
    import dataclasses

    on_gpu = dataclasses.replace(tiny_lm, device=torch.device("cuda"))
    assert not supports_native(on_gpu)
    with pytest.raises(ValueError, match="no native forward"):
        NativeForward(on_gpu)
