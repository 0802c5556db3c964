"""A tiny random Qwen2 wrapped as a loaded model: the real decoder code on a model built from a
config, fast enough for every engine test."""

from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from daemon.engine.models import LoadedModel

VOCAB = 97


def tiny_qwen2(layers: int = 2, max_positions: int = 1024) -> LoadedModel:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=256,
        intermediate_size=256,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
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
