"""`codeswift serve` end to end: the real server as a subprocess, driven over stdio by pygls'
client, with the real packaged model."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.conftest import require_real_model
from tests.lsp_tests.client import REPO, Session, position_at_end

pytestmark = pytest.mark.real_model

GEOMETRY = (
    'import math\n\n\ndef distance(p, q):\n    """Euclidean distance between two points."""\n    '
)
# a generous time cap: the tests check content, and CI machines can be slow
# predictions (the completion after each offer) off: these tests count the model's requests;
# test_the_completion_after_a_taken_offer_is_ready turns them on
OPTIONS = {"debounceMs": 0, "maxNewTokens": 48, "timeoutMs": 60000, "predictNext": False}


def run(scenario: Any) -> None:
    require_real_model()
    asyncio.run(asyncio.wait_for(scenario, 600))


def test_capabilities_completion_status_and_commands(tmp_path: Path) -> None:
    async def scenario() -> None:
        session = Session()
        result = await session.start(tmp_path, {**OPTIONS, "maxNewTokens": "many"})
        try:
            capabilities = result.capabilities
            assert capabilities.inline_completion_provider is not None
            assert capabilities.completion_provider is not None
            assert capabilities.execute_command_provider is not None
            commands = set(capabilities.execute_command_provider.commands)
            assert {"codeswift.accept", "codeswift.toggle", "codeswift.reindex"} <= commands
            ready = await session.wait_status("ready")
            assert ready["device"] == "cpu" and ready["model"] == "qwen2.5-coder-0.5b"
            states = [s["state"] for s in session.statuses]
            assert states.index("loading") < states.index("ready")
            assert any("maxNewTokens" in line for line in session.logs)  # bad value reported

            uri = session.open(tmp_path / "geometry.py", GEOMETRY)
            line, column = position_at_end(GEOMETRY)
            (text,) = await session.inline(uri, line, column)
            assert text.startswith("return ") and "p" in text and "q" in text

            started = time.perf_counter()
            assert await session.inline(uri, line, column) == [text]  # asked again: cached
            assert time.perf_counter() - started < 1.0

            # typing the start of the offer is answered with the rest, without the model
            session.replace(uri, GEOMETRY + text[:7])
            (rest,) = await session.inline(uri, line, column + 7)
            assert rest == text[7:]

            await session.command("codeswift.accept", "whatever-id")
            stats = await session.command("codeswift.stats")
            assert stats["accepted"] == 1 and stats["typedAheadHits"] >= 2
            deadline = time.monotonic() + 120  # a block answered early is still generating
            while stats["backend"]["requests"] < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                stats = await session.command("codeswift.stats")
            assert stats["backend"]["requests"] == 1  # one generation answered all three

            assert (await session.command("codeswift.toggle"))["enabled"] is False
            assert await session.inline(uri, line, column) == []
            assert (await session.command("codeswift.toggle"))["enabled"] is True
        finally:
            await session.stop()

    run(scenario())


def test_cancellation_and_unrelated_requests_while_generating(tmp_path: Path) -> None:
    async def scenario() -> None:
        session = Session()
        await session.start(tmp_path, {**OPTIONS, "maxNewTokens": 400, "multiline": "always"})
        try:
            await session.wait_status("ready")
            text = "# A long module of helpers for parsing dates.\n\n"
            uri = session.open(tmp_path / "long.py", text)
            msg_id, future = session.inline_request(uri, 2, 0)
            await session.wait_status("busy", 30)
            started = time.perf_counter()
            stats = await session.command("codeswift.stats")  # answered during the generation
            unrelated_s = time.perf_counter() - started
            assert stats["state"] == "busy"
            session.cancel(msg_id)
            started = time.perf_counter()
            with pytest.raises(JsonRpcException) as raised:
                await asyncio.wait_for(future, 30)
            cancel_s = time.perf_counter() - started
            assert raised.value.code == -32800
            assert unrelated_s < 2.0 and cancel_s < 2.0, (unrelated_s, cancel_s)
            # the worker is free again: a new request is answered
            short = "def double(x):\n    return "
            other = session.open(tmp_path / "short.py", short)
            assert await session.inline(other, *position_at_end(short))
        finally:
            await session.stop()

    run(scenario())


def test_flood_of_requests_with_cancellations(tmp_path: Path) -> None:
    async def scenario() -> None:
        session = Session()
        await session.start(tmp_path, {**OPTIONS, "debounceMs": 30})
        try:
            await session.wait_status("ready")
            uri = session.open(tmp_path / "flood.py", GEOMETRY)
            line, column = position_at_end(GEOMETRY)
            futures = []
            for n in range(200):
                msg_id, future = session.inline_request(uri, line, column, invoked=False)
                futures.append(future)
                if n % 3 and n < 199:  # the client gives up on two in three, never the last
                    session.cancel(msg_id)
            outcomes = await asyncio.gather(
                *(asyncio.wait_for(f, 120) for f in futures), return_exceptions=True
            )
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            assert all(isinstance(e, JsonRpcException) and e.code == -32800 for e in errors)
            answered = [o for o in outcomes if not isinstance(o, BaseException)]
            assert answered  # the newest request for the document is always answered
            assert await session.inline(uri, line, column)  # and the server is fine after
        finally:
            await session.stop()

    run(scenario())


def test_bad_inputs_never_hurt_the_server(tmp_path: Path) -> None:
    async def scenario() -> None:
        session = Session()
        await session.start(tmp_path, OPTIONS)
        try:
            await session.wait_status("ready")
            unknown = (tmp_path / "never_opened.py").as_uri()
            assert await session.inline(unknown, 0, 0) == []
            text = 'label = "😀 smile"\nvalue = 1\n'
            uri = session.open(tmp_path / "astral.py", text)
            await session.inline(uri, 0, 9)  # inside the string, after a surrogate pair
            await session.inline(uri, 0, 500)  # past the end of the line
            await session.inline(uri, 90, 3)  # past the end of the file
            settings = types.DidChangeConfigurationParams(settings={"multiline": 7})
            session.client.workspace_did_change_configuration(settings)
            await session.wait_for(lambda: any("multiline" in m for m in session.logs), 10)
            assert (await session.command("codeswift.stats"))["state"] in ("ready", "busy")
        finally:
            await session.stop()

    run(scenario())


def test_saved_file_is_indexed_and_drafted_from(tmp_path: Path) -> None:
    async def scenario() -> None:
        session = Session()
        await session.start(tmp_path, OPTIONS)
        try:
            await session.wait_status("ready")
            saved = tmp_path / "widgets.py"
            saved.write_text("def frobnicate_widget(widget, factor):\n    return widget * factor\n")
            uri = session.open(saved, saved.read_text())
            session.client.text_document_did_save(
                types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri))
            )

            async def files() -> int:
                stats = await session.command("codeswift.stats")
                folders = stats["backend"]["index"]["folders"]
                return sum(folder["files"] for folder in folders.values())

            deadline = time.monotonic() + 30
            while await files() < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert await files() == 1
        finally:
            await session.stop()

    run(scenario())


async def warmed_rows_once_settled(session: Session) -> int:
    """The server's `warmedRows` once it has stopped growing (the warm-up has ended)."""
    rows, deadline = -1, time.monotonic() + 120
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        now = int((await session.command("codeswift.stats"))["backend"]["warmedRows"])
        if now == rows and now > 0:
            break
        rows = now
    return rows


def test_cursor_notification_warms_the_prompt_without_changing_the_answer(
    tmp_path: Path,
) -> None:
    """A file is opened and the cursor rests: the server prefills that place's prompt, and the
    request that follows reuses the rows and answers as a cold server would (the same text in
    a second document, which nobody warmed)."""
    source = (REPO / "daemon" / "engine" / "budget.py").read_text()  # a real, long file
    head = source + "\n\n" + GEOMETRY

    async def scenario() -> None:
        session = Session()
        # the cold document must get the whole prompt too, not the short one
        await session.start(tmp_path, {**OPTIONS, "coldPrefixTokens": 0})
        try:
            await session.wait_status("ready")
            uri = session.open(tmp_path / "warm.py", head)
            line, column = position_at_end(head)
            session.cursor(uri, line, column)
            session.cursor(uri, -1, "x")  # type: ignore[arg-type]  # malformed: reported, nothing else happens

            async def backend() -> dict[str, Any]:
                return dict((await session.command("codeswift.stats"))["backend"])

            rows = await warmed_rows_once_settled(session)
            assert rows >= 500  # the prompt: ~1,000 tokens of prefix, the markers, no suffix
            assert any("codeswift/cursor" in line for line in session.logs)
            (warm_text,) = await session.inline(uri, line, column)
            deadline = time.monotonic() + 120
            while (await backend())["requests"] < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # a block is answered early and generated on
            stats = await backend()
            assert stats["warmHits"] == 1 and stats["requests"] == 1
            assert stats["reusedPromptTokens"] >= rows - 1
            assert stats["warmedRows"] == rows
            # the server's account of that generation: only the last prompt row was run again
            last = (await session.command("codeswift.stats"))["lastGeneration"]
            assert last["prefilledRows"] == 1 and last["tokens"] > 0
            assert last["prefillMs"] >= 0 and last["decodeMs"] > 0

            cold = session.open(tmp_path / "cold.py", head)
            assert await session.inline(cold, line, column) == [warm_text]
            stats = await backend()
            assert stats["warmHits"] == 1 and stats["warmedRows"] == rows
        finally:
            await session.stop()

    run(scenario())


def test_a_cold_document_is_answered_from_a_short_prompt_while_the_full_one_warms(
    tmp_path: Path,
) -> None:
    """Asked at once in a long file nothing has warmed: the answer comes from the short prompt
    (what a server with `prefixTokens` = `coldPrefixTokens` answers), the full prompt is warmed
    behind it, and the next key reuses the full prompt's rows."""
    source = (REPO / "daemon" / "engine" / "budget.py").read_text()
    head = source + "\n\n" + GEOMETRY

    async def scenario() -> None:
        session = Session()
        await session.start(tmp_path, {**OPTIONS, "coldPrefixTokens": 256})
        try:
            await session.wait_status("ready")

            async def backend() -> dict[str, Any]:
                return dict((await session.command("codeswift.stats"))["backend"])

            async def last_generation(requests: int) -> dict[str, Any]:
                """The server's account of its `requests`-th generation, once it has ended (a
                block is answered early and generated on)."""
                deadline = time.monotonic() + 120
                while (await backend())["requests"] < requests and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                return dict((await session.command("codeswift.stats"))["lastGeneration"])

            uri = session.open(tmp_path / "opened.py", head)
            line, column = position_at_end(head)
            (short_text,) = await session.inline(uri, line, column)
            last = await last_generation(1)
            assert last["shortPrompt"] is True
            assert 0 < last["prefilledRows"] <= 256 + 64 + 8  # prefix, suffix, markers, line
            rows = await warmed_rows_once_settled(session)  # the full prompt's warm-up
            assert rows >= 500
            stats = await backend()
            assert stats["shortAnswers"] == 1

            typed = head + "zz"  # not what is on offer: the model is asked
            session.replace(uri, typed)
            await session.inline(uri, *position_at_end(typed))
            last = await last_generation(2)
            assert last["shortPrompt"] is False and last["prefilledRows"] <= 4
            stats = await backend()
            assert stats["shortAnswers"] == 1 and stats["warmHits"] == 1

            # the short answer is plain greedy on the short prompt
            session.configure({**OPTIONS, "prefixTokens": 256, "coldPrefixTokens": 0})
            other = session.open(tmp_path / "other.py", head)
            assert await session.inline(other, line, column) == [short_text]
            last = await last_generation(3)
            assert last["shortPrompt"] is False
        finally:
            await session.stop()

    run(scenario())


def test_a_block_is_answered_with_its_first_line_then_the_rest_without_the_model(
    tmp_path: Path,
) -> None:
    fizzbuzz = "def fizzbuzz(n):\n    for i in range(1, n + 1):\n        "

    async def scenario() -> None:
        session = Session()
        await session.start(tmp_path, {**OPTIONS, "maxNewTokens": 64})
        try:
            await session.wait_status("ready")
            uri = session.open(tmp_path / "fizz.py", fizzbuzz)
            line, column = position_at_end(fizzbuzz)
            (first,) = await session.inline(uri, line, column)
            assert first.strip() and "\n" not in first  # the first line, the rest still coming
            stats = await session.command("codeswift.stats")
            assert stats["earlyAnswers"] == 1

            async def requests() -> int:
                return int((await session.command("codeswift.stats"))["backend"]["requests"])

            deadline = time.monotonic() + 120
            while await requests() < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            # the user takes the first line: the rest of the block is on offer already
            session.replace(uri, fizzbuzz + first)
            (rest,) = await session.inline(uri, line, column + len(first))
            assert rest.startswith("\n") and rest.strip()
            assert await requests() == 1
        finally:
            await session.stop()

    run(scenario())


def test_the_completion_after_a_taken_offer_is_ready(tmp_path: Path) -> None:
    async def scenario() -> None:
        session = Session()
        await session.start(tmp_path, {**OPTIONS, "predictNext": True})
        try:
            await session.wait_status("ready")
            uri = session.open(tmp_path / "geometry.py", GEOMETRY)
            line, column = position_at_end(GEOMETRY)
            (text,) = await session.inline(uri, line, column)

            async def stats() -> dict[str, Any]:
                return dict(await session.command("codeswift.stats"))

            deadline = time.monotonic() + 120
            while (await stats())["backend"]["requests"] < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # the prediction for the place after the offer
            assert (await stats())["predictions"] == 1
            session.replace(uri, GEOMETRY + text)  # the user takes the offer
            taken = position_at_end(GEOMETRY + text)
            started = time.perf_counter()
            answer = await session.inline(uri, *taken)
            assert time.perf_counter() - started < 1.0  # no prefill, no generation
            after = await stats()
            assert after["backend"]["requests"] == 2 and after["predictions"] == 1
            assert answer == [] or answer[0].strip()  # whatever follows, if anything
        finally:
            await session.stop()

    run(scenario())


def test_model_load_failure_is_reported_and_survived(tmp_path: Path) -> None:
    async def scenario() -> None:
        session = Session()
        await session.start(tmp_path, OPTIONS, "--model", str(tmp_path / "no-such-model"))
        try:
            error = await session.wait_status("error", 60)
            assert "no-such-model" in error["message"]
            uri = session.open(tmp_path / "a.py", "x = ")
            assert await session.inline(uri, 0, 4) == []
            assert (await session.command("codeswift.stats"))["backend"]["error"]
        finally:
            await session.stop()

    run(scenario())


def test_client_disconnecting_mid_request_ends_the_server(tmp_path: Path) -> None:
    require_real_model()
    import subprocess

    from tests.conftest import REPO

    process = subprocess.Popen(
        [sys.executable, "-m", "daemon", "serve"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    body = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}}'
    process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    process.stdin.flush()
    time.sleep(1)
    process.stdin.close()  # the editor went away
    try:
        process.wait(timeout=60)
    finally:
        process.kill()
    assert b"Traceback" not in process.stderr.read()  # type: ignore[union-attr]
