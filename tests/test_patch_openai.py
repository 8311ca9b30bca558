"""openai patch: the real SDK against tests/llm_server.py; calls are Model actions, nothing else changes."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import action_records, in_thread, installed_patch
from llm_server import LLMServer

from autotrace.runtime import actions

KEY = "sk-test-0123456789abcdef0123456789"
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def traced(trace_dir: Path) -> Iterator[Path]:
    """The openai patch installed in this process, for one test."""
    with installed_patch("openai"):
        yield trace_dir


def client(server: LLMServer, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(
        **{
            "base_url": server.openai_url,
            "api_key": KEY,
            "max_retries": 0,
            "timeout": 10,
            **options,
        }
    )


def async_client(server: LLMServer, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        **{
            "base_url": server.openai_url,
            "api_key": KEY,
            "max_retries": 0,
            "timeout": 10,
            **options,
        }
    )


def stable(value: Any) -> str:
    """A result as JSON, minus what changes from call to call (ids, timestamps)."""
    if isinstance(value, list):
        text = json.dumps([stable(v) for v in value])
    else:
        text = json.dumps(value.model_dump() if hasattr(value, "model_dump") else value)
    text = re.sub(r'"(created|created_at)": \d+', r'"\1": 0', text)
    return re.sub(r"\b(chatcmpl|cmpl|resp|msg|fc|call)([-_])\d+", r"\1\2N", text)


def model_pairs(trace_dir: Path) -> list[tuple[str, str]]:
    return [(r["event"], r["detail"]) for r in action_records(trace_dir) if r["action"] == "Model"]


def assert_no_key(trace_dir: Path) -> None:
    for path in trace_dir.glob("trace-*"):
        assert KEY.encode() not in path.read_bytes()


CALLS: dict[str, Callable[[Any], Any]] = {
    "chat": lambda c: c.chat.completions.create(model=MODEL, messages=MESSAGES),
    "chat-tools": lambda c: c.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        tools=[{"type": "function", "function": {"name": "add", "parameters": {}}}],
    ),
    "chat-parse": lambda c: c.chat.completions.parse(model=MODEL, messages=MESSAGES),
    "responses": lambda c: c.responses.create(model=MODEL, input="Say hello"),
    "beta-responses": lambda c: c.beta.responses.create(model=MODEL, input="Say hello"),
    "responses-parse": lambda c: c.responses.parse(model=MODEL, input="Say hello"),
    "completions": lambda c: c.completions.create(model=MODEL, prompt="Say hello"),
    "embeddings": lambda c: c.embeddings.create(model=MODEL, input=["a", "bb"]),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_each_endpoint_sync_and_async_is_one_model_action_with_unchanged_result(
    name: str, llm: LLMServer, trace_dir: Path
) -> None:
    call = CALLS[name]
    steps = [{"do": "reply", "tool_calls": [{"name": "add", "arguments": {"a": 1}}]}]

    async def run_async() -> Any:
        async with async_client(llm) as c:
            return await call(c)

    def run_both() -> tuple[Any, Any]:
        if name == "chat-tools":
            llm.script(steps * 2)
        return call(client(llm)), asyncio.run(run_async())

    plain = run_both()
    with installed_patch("openai"):
        traced = run_both()
    assert [stable(r) for r in traced] == [stable(r) for r in plain]
    assert [type(r) for r in traced] == [type(r) for r in plain]
    detail = f"generate (openai/{MODEL})"
    assert model_pairs(trace_dir) == [("enter", detail), ("exit", detail)] * 2
    assert_no_key(trace_dir)


def test_wrapped_methods_keep_signature_and_async_ness() -> None:
    from openai.resources import completions, embeddings
    from openai.resources.chat.completions import completions as chat
    from openai.resources.responses import responses

    targets = [
        (chat.Completions, "create"),
        (chat.AsyncCompletions, "create"),
        (chat.AsyncCompletions, "parse"),
        (responses.Responses, "create"),
        (responses.AsyncResponses, "create"),
        (completions.AsyncCompletions, "create"),
        (embeddings.Embeddings, "create"),
        (embeddings.AsyncEmbeddings, "create"),
    ]

    def shape() -> list[tuple[inspect.Signature, bool]]:
        sdk = openai.AsyncOpenAI(api_key=KEY)
        bound = [sdk.chat.completions.create, sdk.embeddings.create, sdk.responses.create]
        methods = [getattr(c, m) for c, m in targets] + bound
        return [(inspect.signature(f), inspect.iscoroutinefunction(f)) for f in methods]

    before = shape()
    originals = [vars(c)[m] for c, m in targets]
    with installed_patch("openai"):
        after = shape()
        assert all(vars(c)[m] is not o for (c, m), o in zip(targets, originals, strict=True))
        # wrapped once, though chat completions is reachable through two modules
        assert all(inspect.isfunction(vars(c)[m].__wrapped__) for c, m in targets)
    assert after == before
    assert [vars(c)[m] for c, m in targets] == originals  # uninstall puts the originals back


def test_stream_action_lasts_until_stream_exhausted(llm: LLMServer, traced: Path) -> None:
    stream = client(llm).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.Stream)
    assert model_pairs(traced) == [("enter", f"generate (openai/{MODEL})")]  # still running
    chunks = [chunk.choices[0].delta.content for chunk in stream if chunk.choices]
    assert "".join(c or "" for c in chunks) == "Hello! This is the local test model."
    assert [e for e, _ in model_pairs(traced)] == ["enter", "exit"]
    assert not actions.open_actions


def test_stream_closed_early_ends_action_as_closed(llm: LLMServer, traced: Path) -> None:
    with client(llm).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        assert isinstance(stream, openai.Stream)
        next(iter(stream))
    end = action_records(traced)[-1]
    assert (end["event"], end["stream"]) == ("exit", "closed")


def test_abandoned_stream_ends_action_when_collected(llm: LLMServer, traced: Path) -> None:
    stream = client(llm).completions.create(model=MODEL, prompt="hi", stream=True)
    next(stream)
    del stream
    gc.collect()
    end = action_records(traced)[-1]
    assert (end["event"], end["stream"]) == ("exit", "abandoned")


@pytest.mark.parametrize("step", ["stream_error", "drop"])
def test_error_mid_stream_is_recorded_and_raised_unchanged(
    step: str, llm: LLMServer, trace_dir: Path
) -> None:
    def consume() -> BaseException:
        llm.script([{"do": step, "chunks": 2}])
        stream = client(llm).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        with pytest.raises(Exception) as caught:
            list(stream)
        return caught.value

    plain = consume()
    with installed_patch("openai"):
        traced = consume()
    assert (type(traced), str(traced)) == (type(plain), str(plain))
    end = action_records(trace_dir)[-1]
    assert (end["event"], end["error_type"]) == ("error", type(plain).__name__)


def test_async_stream_cancelled_while_stalled_ends_as_cancel(llm: LLMServer, traced: Path) -> None:
    llm.script([{"do": "stall", "chunks": 2}])

    async def main() -> None:
        got_chunk = asyncio.Event()
        async with async_client(llm) as c:
            stream = await c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            assert isinstance(stream, openai.AsyncStream)

            async def consume() -> None:
                async for _ in stream:
                    got_chunk.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(got_chunk.wait(), 10)
            await asyncio.to_thread(llm.wait_hanging, 1)
            assert [e for e, _ in model_pairs(traced)] == ["enter"]
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert [e for e, _ in model_pairs(traced)] == ["enter", "cancel"]
    assert not actions.open_actions


def test_never_answering_server_shows_a_running_model_action(llm: LLMServer, traced: Path) -> None:
    llm.script([{"do": "hang"}])
    worker, errors = in_thread(
        lambda: client(llm).chat.completions.create(model=MODEL, messages=MESSAGES)
    )
    llm.wait_hanging(1)
    assert model_pairs(traced) == [("enter", f"generate (openai/{MODEL})")]
    (running,) = actions.open_actions.values()
    assert running.thread_name == worker.name
    llm.stop()
    worker.join(10)
    assert isinstance(errors[0], openai.APIConnectionError)
    assert [e for e, _ in model_pairs(traced)] == ["enter", "error"]


def test_client_timeout_ends_action_as_timeout(llm: LLMServer, traced: Path) -> None:
    llm.script([{"do": "hang"}])
    with pytest.raises(openai.APITimeoutError):
        client(llm, timeout=0.3).chat.completions.create(model=MODEL, messages=MESSAGES)
    assert [e for e, _ in model_pairs(traced)] == ["enter", "timeout"]


def test_http_error_raises_the_same_exception(llm: LLMServer, trace_dir: Path) -> None:
    def fail() -> BaseException:
        llm.script([{"do": "error", "status": 429, "message": f"slow down {KEY}"}])
        with pytest.raises(openai.APIStatusError) as caught:
            client(llm).responses.create(model=MODEL, input="x")
        return caught.value

    plain = fail()
    with installed_patch("openai"):
        traced = fail()
    assert (type(traced), str(traced), traced.status_code) == (type(plain), str(plain), 429)
    end = action_records(trace_dir)[-1]
    assert (end["event"], end["error_type"]) == ("error", "RateLimitError")
    assert_no_key(trace_dir)  # the key in the error message is redacted


def test_chat_stream_helper_ends_action_on_exhaustion_and_on_early_exit(
    llm: LLMServer, traced: Path
) -> None:
    c = client(llm)
    with c.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Hello! This is the local test model."
    with c.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
        next(iter(stream))
        assert [e for e, _ in model_pairs(traced)] == ["enter", "exit", "enter"]
    events = [(r["event"], r.get("stream")) for r in action_records(traced)]
    assert events == [("enter", None), ("exit", None), ("enter", None), ("exit", "closed")]


def test_async_responses_stream_helper_is_one_model_action(llm: LLMServer, traced: Path) -> None:
    async def main() -> str:
        async with async_client(llm) as c:
            async with c.responses.stream(model=MODEL, input="hi") as stream:
                async for _ in stream:
                    pass
                return (await stream.get_final_response()).output_text

    assert asyncio.run(main()) == "Hello! This is the local test model."
    assert [e for e, _ in model_pairs(traced)] == ["enter", "exit"]


def test_call_inside_a_model_action_or_suppressed_adds_no_action(
    llm: LLMServer, traced: Path
) -> None:
    c = client(llm)
    with actions.trace_action("Model", "generate (openai/outer)"):
        c.chat.completions.create(model=MODEL, messages=MESSAGES)
        list(c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    with actions.suppress_tracing():
        c.embeddings.create(model=MODEL, input="x")
    assert model_pairs(traced) == [
        ("enter", "generate (openai/outer)"),
        ("exit", "generate (openai/outer)"),
    ]


def test_async_call_to_never_answering_server_runs_in_its_task_until_cancelled(
    llm: LLMServer, traced: Path
) -> None:
    llm.script([{"do": "hang"}])

    async def main() -> None:
        async with async_client(llm) as c:
            task = asyncio.create_task(c.responses.create(model=MODEL, input="hi"), name="sample-1")
            await asyncio.to_thread(llm.wait_hanging, 1)
            (running,) = actions.open_actions.values()
            assert (running.detail, running.task_name) == (f"generate (openai/{MODEL})", "sample-1")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert [e for e, _ in model_pairs(traced)] == ["enter", "cancel"]


def test_async_call_inside_a_model_action_is_the_sdks_own_coroutine(
    llm: LLMServer, traced: Path
) -> None:
    """Inside a Model action (inspect's generate) the client call is not traced again: the
    caller gets the SDK's own coroutine, with no coroutine of ours for every resumption
    to pass through; outside one, the call is one Model action as before."""

    async def main() -> tuple[str, str, Any]:
        async with async_client(llm) as c:
            with actions.trace_action("Model", "generate (inspect)"):
                inner = c.chat.completions.create(model=MODEL, messages=MESSAGES)
                inner_code = inner.cr_code
                result = await inner
            outer = c.chat.completions.create(model=MODEL, messages=MESSAGES)
            outer_code = outer.cr_code
            await outer
        return inner_code, outer_code, result

    inner_code, outer_code, result = asyncio.run(main())
    assert "/openai/" in inner_code.co_filename  # the SDK's create
    assert "/autotrace/" in outer_code.co_filename  # ours: the call is traced
    assert result.choices[0].message.content
    detail = f"generate (openai/{MODEL})"
    assert model_pairs(traced) == [
        ("enter", "generate (inspect)"),
        ("exit", "generate (inspect)"),
        ("enter", detail),
        ("exit", detail),
    ]
