"""autotrace.runtime.streams: stream proxies end their action once, whatever ends the stream."""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import action_records

from autotrace import records
from autotrace.runtime import actions, streams


class Chunks:
    """A stream shaped like the SDKs': iterator over a generator, close(), context manager."""

    def __init__(self, items: list[object], fail_at: int | None = None) -> None:
        self.items = items
        self.fail_at = fail_at
        self.closed = False
        self._iterator = self._stream()

    def _stream(self) -> Iterator[object]:
        for i, item in enumerate(self.items):
            if i == self.fail_at:
                raise ValueError("broken stream")
            yield item

    def __iter__(self) -> Iterator[object]:
        yield from self._iterator

    def __next__(self) -> object:
        return next(self._iterator)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Chunks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncChunks:
    """An async stream: async iterator, async close(), async context manager."""

    def __init__(self, items: list[object], stall_at: int | None = None) -> None:
        self.items = items
        self.stall_at = stall_at
        self.stalled = asyncio.Event()
        self.closed = False
        self._iterator = self._stream()

    async def _stream(self) -> AsyncIterator[object]:
        for i, item in enumerate(self.items):
            if i == self.stall_at:
                self.stalled.set()
                await asyncio.Event().wait()  # never set
            yield item

    async def __aiter__(self) -> AsyncIterator[object]:
        async for item in self._iterator:
            yield item

    async def __anext__(self) -> object:
        return await self._iterator.__anext__()

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> AsyncChunks:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def ends(trace_dir: Path) -> list[dict]:
    return [r for r in action_records(trace_dir) if r["event"] != "enter"]


def test_stream_action_ends_when_exhausted(trace_dir: Path) -> None:
    stream = streams.follow(Chunks([1, 2, 3]), actions.start_action("Model", "generate (x/y)"))
    assert list(stream) == [1, 2, 3]
    assert [r["event"] for r in ends(trace_dir)] == ["exit"]
    assert not actions.open_actions


def test_stream_proxy_keeps_isinstance_attributes_and_protocols(trace_dir: Path) -> None:
    real = Chunks([1, 2])
    stream = streams.follow(real, actions.start_action("Model", "generate (x/y)"))
    assert isinstance(stream, Chunks)
    assert stream.items == [1, 2]
    with stream as entered:
        assert entered is stream  # the proxy, as the real stream returns itself
        assert next(entered) == 1
    assert real.closed
    assert ends(trace_dir)[0]["stream"] == "closed"


def test_stream_action_ends_when_closed_early(trace_dir: Path) -> None:
    stream = streams.follow(Chunks([1, 2, 3]), actions.start_action("Model", "generate (x/y)"))
    for _ in stream:
        break
    assert not ends(trace_dir)  # leaving a loop does not end the stream
    stream.close()
    stream.close()  # idempotent
    records = ends(trace_dir)
    assert [(r["event"], r["stream"]) for r in records] == [("exit", "closed")]


def test_stream_action_ends_when_abandoned(trace_dir: Path) -> None:
    stream = streams.follow(Chunks([1, 2]), actions.start_action("Model", "generate (x/y)"))
    next(stream)
    del stream
    gc.collect()
    assert [(r["event"], r["stream"]) for r in ends(trace_dir)] == [("exit", "abandoned")]


def test_stream_error_is_recorded_and_reraised_untouched(trace_dir: Path) -> None:
    stream = streams.follow(Chunks([1, 2, 3], fail_at=1), actions.start_action("Model", "g"))
    with pytest.raises(ValueError, match="broken stream"):
        list(stream)
    (record,) = ends(trace_dir)
    assert record["event"] == "error" and record["error_type"] == "ValueError"


def test_stream_proxy_errors_never_reach_the_caller(trace_dir: Path) -> None:
    class BrokenSpan:
        def end(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("agent bug")

    stream = streams.follow(Chunks([1, 2]), BrokenSpan())  # type: ignore[arg-type]
    assert list(stream) == [1, 2]
    stream.close()


def test_untraced_result_is_returned_as_is() -> None:
    real = Chunks([1])
    assert streams.follow(real, None) is real


def test_async_stream_action_ends_when_exhausted_and_with_block_left(trace_dir: Path) -> None:
    async def main() -> list[object]:
        stream = streams.follow(AsyncChunks([1, 2]), actions.start_action("Model", "g"))
        assert isinstance(stream, AsyncChunks)
        async with stream as entered:
            assert entered is stream
            return [item async for item in entered]

    assert asyncio.run(main()) == [1, 2]
    assert [r["event"] for r in ends(trace_dir)] == ["exit"]


def test_async_stream_cancelled_while_awaiting_next_chunk_ends_as_cancel(trace_dir: Path) -> None:
    async def main() -> None:
        real = AsyncChunks([1, 2, 3], stall_at=1)
        stream = streams.follow(real, actions.start_action("Model", "generate (x/y)"))

        async def consume() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(consume())
        await asyncio.wait_for(real.stalled.wait(), 10)
        assert len(actions.open_actions) == 1  # running while it waits
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert [r["event"] for r in ends(trace_dir)] == ["cancel"]
    assert not actions.open_actions


def test_async_stream_close_is_awaitable_and_ends_the_action(trace_dir: Path) -> None:
    async def main() -> None:
        real = AsyncChunks([1, 2])
        stream = streams.follow(real, actions.start_action("Model", "g"))
        assert await stream.__anext__() == 1
        assert inspect.iscoroutinefunction(stream.close)
        await stream.close()
        assert real.closed

    asyncio.run(main())
    assert [(r["event"], r["stream"]) for r in ends(trace_dir)] == [("exit", "closed")]


def test_sdk_timeout_classes_end_as_timeout() -> None:
    class APITimeoutError(Exception):
        pass

    assert records.outcome_of(APITimeoutError()) == "timeout"
    assert records.outcome_of(asyncio.CancelledError()) == "cancel"
    assert records.outcome_of(ValueError()) == "error"
    assert records.outcome_of(None) == "exit"
