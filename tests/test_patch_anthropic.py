"""anthropic patch: the real SDK against tests/llm_server.py; messages calls are Model actions."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from conftest import action_records, in_thread, installed_patch
from llm_server import LLMServer

from autotrace.runtime import actions

KEY = "sk-ant-test-0123456789abcdef0123456789"
MODEL = "claude-test"
ARGS: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello"}],
}
TEXT = "Hello! This is the local test model."
DETAIL = f"generate (anthropic/{MODEL})"


@pytest.fixture
def traced(trace_dir: Path) -> Iterator[Path]:
    """The anthropic patch installed in this process, for one test."""
    with installed_patch("anthropic"):
        yield trace_dir


def client(server: LLMServer, **options: Any) -> anthropic.Anthropic:
    settings = {"base_url": server.anthropic_url, "api_key": KEY, "max_retries": 0, "timeout": 10}
    return anthropic.Anthropic(**{**settings, **options})


def async_client(server: LLMServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=server.anthropic_url, api_key=KEY, max_retries=0, timeout=10
    )


def stable(value: Any) -> str:
    text = json.dumps(value.model_dump() if hasattr(value, "model_dump") else value)
    return re.sub(r"\b(msg|toolu)_\d+", r"\1_N", text)


def model_events(trace_dir: Path) -> list[tuple[str, str | None]]:
    return [(r["event"], r.get("stream")) for r in action_records(trace_dir)]


def assert_no_key(trace_dir: Path) -> None:
    for path in trace_dir.glob("trace-*"):
        assert KEY.encode() not in path.read_bytes()


def test_create_sync_async_and_beta_are_model_actions_with_unchanged_results(
    llm: LLMServer, trace_dir: Path
) -> None:
    tool_step = {"do": "reply", "tool_calls": [{"name": "add", "arguments": {"a": 1}}]}

    async def run_async() -> list[Any]:
        async with async_client(llm) as c:
            return [await c.messages.create(**ARGS), await c.beta.messages.create(**ARGS)]

    def run() -> list[Any]:
        c = client(llm)
        llm.script([tool_step])
        return [
            c.messages.create(**ARGS),
            c.beta.messages.create(**ARGS),
            *asyncio.run(run_async()),
        ]

    plain = run()
    with installed_patch("anthropic"):
        traced = run()
    assert [stable(r) for r in traced] == [stable(r) for r in plain]
    assert [type(r) for r in traced] == [type(r) for r in plain]
    records = [(r["event"], r["detail"]) for r in action_records(trace_dir)]
    assert records == [("enter", DETAIL), ("exit", DETAIL)] * 4
    assert_no_key(trace_dir)


def test_wrapped_methods_keep_signature_and_async_ness() -> None:
    from anthropic.resources.beta.messages import messages as beta
    from anthropic.resources.messages import messages

    def shape() -> list[tuple[inspect.Signature, bool]]:
        sync, aio = anthropic.Anthropic(api_key=KEY), anthropic.AsyncAnthropic(api_key=KEY)
        methods = [
            messages.Messages.create,
            messages.AsyncMessages.create,
            messages.Messages.stream,
            messages.AsyncMessages.stream,
            beta.AsyncMessages.create,
            beta.AsyncMessages.parse,
            sync.messages.stream,
            aio.messages.create,
            aio.beta.messages.stream,
        ]
        return [(inspect.signature(f), inspect.iscoroutinefunction(f)) for f in methods]

    before = shape()
    with installed_patch("anthropic"):
        assert shape() == before
        for cls in (messages.Messages, messages.AsyncMessages, beta.Messages):
            for name in ("create", "parse", "stream"):
                wrapper = vars(cls)[name]
                assert type(wrapper).__name__ == "FunctionWrapper"
                assert inspect.isfunction(wrapper.__wrapped__)  # wrapped once
    assert inspect.isfunction(vars(messages.Messages)["create"])


def test_stream_helper_text_stream_is_one_action_ending_with_the_stream(
    llm: LLMServer, traced: Path
) -> None:
    with client(llm).messages.stream(**ARGS) as stream:
        assert isinstance(stream, anthropic.lib.streaming.MessageStream)
        assert [(r["event"], r["detail"]) for r in action_records(traced)] == [("enter", DETAIL)]
        assert "".join(stream.text_stream) == TEXT
        assert model_events(traced) == [("enter", None), ("exit", None)]
    assert model_events(traced) == [("enter", None), ("exit", None)]


def test_stream_helper_left_early_ends_action_as_closed(llm: LLMServer, traced: Path) -> None:
    with client(llm).beta.messages.stream(**ARGS) as stream:
        next(iter(stream))
    assert model_events(traced) == [("enter", None), ("exit", "closed")]


def test_async_stream_helper_final_message_and_tool_use(llm: LLMServer, traced: Path) -> None:
    llm.script([{"do": "reply", "tool_calls": [{"name": "add", "arguments": {"a": 1}}]}])

    async def main() -> Any:
        async with async_client(llm) as c, c.messages.stream(**ARGS) as stream:
            return await stream.get_final_message()

    message = asyncio.run(main())
    assert message.content[0].input == {"a": 1}
    assert model_events(traced) == [("enter", None), ("exit", None)]


def test_create_stream_closed_abandoned_and_exhausted(llm: LLMServer, traced: Path) -> None:
    c = client(llm)
    exhausted = c.messages.create(**ARGS, stream=True)
    assert isinstance(exhausted, anthropic.Stream)
    assert [e.type for e in exhausted][-1] == "message_stop"
    closed = c.messages.create(**ARGS, stream=True)
    next(iter(closed))
    closed.close()
    abandoned = c.messages.create(**ARGS, stream=True)
    next(iter(abandoned))
    del abandoned
    gc.collect()
    ends = [e for e in model_events(traced) if e[0] != "enter"]
    assert ends == [("exit", None), ("exit", "closed"), ("exit", "abandoned")]


def test_error_event_mid_stream_is_recorded_and_raised_unchanged(
    llm: LLMServer, trace_dir: Path
) -> None:
    def consume() -> BaseException:
        llm.script([{"do": "stream_error", "chunks": 2}])
        with pytest.raises(anthropic.APIError) as caught:
            with client(llm).messages.stream(**ARGS) as stream:
                stream.until_done()
        return caught.value

    plain = consume()
    with installed_patch("anthropic"):
        traced = consume()
    assert (type(traced), str(traced)) == (type(plain), str(plain))
    assert [r["event"] for r in action_records(trace_dir)] == ["enter", "error"]


def test_stream_cancelled_while_stalled_ends_as_cancel(llm: LLMServer, traced: Path) -> None:
    llm.script([{"do": "stall", "chunks": 2}])

    async def main() -> None:
        got_event = asyncio.Event()

        async def consume() -> None:
            async with async_client(llm) as c, c.messages.stream(**ARGS) as stream:
                async for _ in stream:
                    got_event.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(got_event.wait(), 10)
        await asyncio.to_thread(llm.wait_hanging, 1)
        assert model_events(traced) == [("enter", None)]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert [e for e, _ in model_events(traced)] == ["enter", "cancel"]
    assert not actions.open_actions


def test_never_answering_server_shows_a_running_model_action(llm: LLMServer, traced: Path) -> None:
    llm.script([{"do": "hang"}])
    worker, errors = in_thread(lambda: client(llm).messages.create(**ARGS))
    llm.wait_hanging(1)
    assert [(r["event"], r["detail"]) for r in action_records(traced)] == [("enter", DETAIL)]
    assert [a.detail for a in actions.open_actions.values()] == [DETAIL]
    llm.stop()
    worker.join(10)
    assert isinstance(errors[0], anthropic.APIConnectionError)
    assert [e for e, _ in model_events(traced)] == ["enter", "error"]


def test_http_error_raises_the_same_exception_and_key_is_redacted(
    llm: LLMServer, trace_dir: Path
) -> None:
    def fail() -> BaseException:
        llm.script([{"do": "error", "status": 500, "message": f"bad key {KEY}"}])
        with pytest.raises(anthropic.InternalServerError) as caught:
            client(llm).messages.create(**ARGS)
        return caught.value

    plain = fail()
    with installed_patch("anthropic"):
        traced = fail()
    assert (type(traced), str(traced)) == (type(plain), str(plain))
    assert [r["event"] for r in action_records(trace_dir)] == ["enter", "error"]
    assert_no_key(trace_dir)


def test_call_inside_a_model_action_adds_no_action(llm: LLMServer, traced: Path) -> None:
    c = client(llm)
    with actions.trace_action("Model", "generate (anthropic/outer)"):
        c.messages.create(**ARGS)
        with c.messages.stream(**ARGS) as stream:
            stream.until_done()
    assert [r["detail"] for r in action_records(traced)] == ["generate (anthropic/outer)"] * 2


def test_stream_helper_refused_at_entry_is_an_error(llm: LLMServer, traced: Path) -> None:
    llm.script([{"do": "error", "status": 429}])
    with pytest.raises(anthropic.RateLimitError), client(llm).messages.stream(**ARGS):
        pass
    assert model_events(traced) == [("enter", None), ("error", None)]
