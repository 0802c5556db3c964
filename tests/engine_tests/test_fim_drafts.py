"""Drafts across a fill-in-the-middle prompt's markers: the text before the hole and the text
after the middle marker are looked up as one, and no draft ever proposes a marker."""

from __future__ import annotations

from daemon.engine.datastore import SuffixIndex
from daemon.engine.plan import CODESWIFT
from daemon.engine.retrieval import DraftSources, PlanMemory, RetrievalDrafter

PREFIX, HOLE, MIDDLE = 900, 901, 902
NEWLINE, RETURN, X = 10, 20, 30


def _drafter(memory: PlanMemory, project: tuple[SuffixIndex, ...] = ()) -> RetrievalDrafter:
    sources = DraftSources(project=project, fim_ids=(PREFIX, HOLE, MIDDLE))
    return RetrievalDrafter(CODESWIFT, sources, memory)


def test_the_first_tokens_after_the_middle_marker_are_drafted_from_the_text_before_the_hole() -> (
    None
):
    # the file: "... 5 6 \n return x \n ... 5 6 \n" then the hole; the suffix is 7 8
    head = [1, 2, 5, 6, NEWLINE, RETURN, X, NEWLINE, 3, 4, 5, 6, NEWLINE]
    prompt = [PREFIX, *head, HOLE, 7, 8, MIDDLE]
    drafter = _drafter(PlanMemory())
    drafter.begin(prompt)
    drafts = {c.tokens for c in drafter.propose(prompt, 4) if c.source == "context"}
    assert (RETURN, X, NEWLINE, 3) in drafts
    assert not any(set(tokens) & {PREFIX, HOLE, MIDDLE} for tokens in drafts)
    # one token written: the document-order end is now "... 6 \n return"
    drafts = {c.tokens for c in drafter.propose([*prompt, RETURN], 2) if c.source == "context"}
    assert (X, NEWLINE) in drafts


def test_the_previous_answer_drafts_the_next_line_across_requests() -> None:
    """An editor asks at every line: the last answer (its committed tokens past the stop
    included) is found again by the line the user then wrote."""
    memory = PlanMemory()
    first = [PREFIX, 1, 2, NEWLINE, HOLE, MIDDLE]
    drafter = _drafter(memory)
    drafter.begin(first)
    drafter.finish([40, 41, NEWLINE, RETURN, X, NEWLINE])  # line 1, then the next line
    second = [PREFIX, 1, 2, NEWLINE, 40, 41, NEWLINE, HOLE, MIDDLE]
    drafter = _drafter(memory)
    drafter.begin(second)
    drafts = {c.tokens for c in drafter.propose(second, 3) if c.source == "history"}
    assert (RETURN, X, NEWLINE) in drafts


def test_prompts_without_markers_are_looked_up_as_they_are() -> None:
    prompt = [1, 2, 3, 1, 2]
    drafter = _drafter(PlanMemory())
    drafter.begin(prompt)
    assert (3, 1) in {c.tokens for c in drafter.propose(prompt, 2)}
    # a store holding the document's continuation is searched with the same end
    store = SuffixIndex.build([[5, 6, NEWLINE, RETURN, X]], {})
    fim = [PREFIX, 5, 6, NEWLINE, HOLE, MIDDLE]
    drafter = _drafter(PlanMemory(), (store,))
    drafter.begin(fim)
    assert (RETURN, X) in {c.tokens for c in drafter.propose(fim, 2) if c.source == "project"}


def test_an_answer_is_found_again_where_a_later_context_ends_as_its_did() -> None:
    """The same ending elsewhere in the file (here `4 5 \n`): the model's earlier answer there
    drafts the new answer from its first token, not only its continuation."""
    memory = PlanMemory()
    first = [PREFIX, 1, 2, 4, 5, NEWLINE, HOLE, MIDDLE]
    drafter = _drafter(memory)
    drafter.begin(first)
    drafter.finish([RETURN, X, NEWLINE])
    second = [PREFIX, 7, 8, 9, 4, 5, NEWLINE, HOLE, 3, MIDDLE]
    drafter = _drafter(memory)
    drafter.begin(second)
    drafts = {c.tokens for c in drafter.propose(second, 3) if c.source == "history"}
    assert (RETURN, X, NEWLINE) in drafts
