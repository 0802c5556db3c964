"""The editor's prompt with the real Qwen tokenizer: the line after the middle marker, the word
being typed as a lead (no model needed: only the tokenizer is loaded)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import require_real_model

pytestmark = pytest.mark.real_model

HEAD = "import os\n\n\ndef walk(root):\n"
SUFFIX = "\n    return found\n"


def _asked(prefix: str) -> Any:
    from daemon.engine.models import load_tokenizer
    from daemon.service import request_prompt
    from lsp.backend import CompletionRequest
    from lsp.settings import Settings

    engine: Any = SimpleNamespace(
        lm=SimpleNamespace(tokenizer=load_tokenizer("qwen2.5-coder-0.5b"))
    )
    request = CompletionRequest(prefix, SUFFIX, Path("/w/walk.py"), "python", Settings(), bool)
    return request_prompt(engine, request), engine.lm.tokenizer


@pytest.mark.parametrize(
    ("line", "middle", "lead"),
    [
        ("    ", "", ""),  # blanks only: the model writes the indentation
        ("    fo", "", "    fo"),  # a word being typed: held as the lead, blanks with it
        ("    found = os.pa", "    found = os.", "pa"),
        ("    found = ", "    found =", ""),  # after a blank: no word, the blank left out
        ("    name = 'café_na", "    name = 'café", "_na"),  # ASCII words only
        ("    name = 'caf", "    name = '", "caf"),
        ("    x = é", "    x = é", ""),  # a non-ASCII character is never a lead
        ("    h = " + "ab" * 30, "    h = " + "ab" * 30, ""),  # nor a run too long to lead in
    ],
)
def test_the_typed_line_follows_the_middle_marker_and_the_word_is_a_lead(
    line: str, middle: str, lead: str
) -> None:
    require_real_model()
    asked, tokenizer = _asked(HEAD + line)
    text = tokenizer.decode(asked.ids)
    assert text.startswith("<|fim_prefix|>" + HEAD + "<|fim_suffix|>" + SUFFIX + "<|fim_middle|>")
    assert text.endswith("<|fim_middle|>" + middle)
    assert asked.lead == lead
    if lead:
        assert asked.typed(lead + "th.join") == "th.join"
        assert asked.typed(lead[:-1]) == ""  # the lead-in is not done yet: nothing to show
