"""The stream proxy classes behind ``autotrace.runtime.streams`` (``wrapt.ObjectProxy`` subclasses).

Kept apart so that loading a patch at start-up does not import wrapt: this module is
imported on the first streamed call, when the patched library (and wrapt) is loaded.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import wrapt

from autotrace.runtime.actions import OpenAction
from autotrace.runtime.actions import end_quietly as end_action
from autotrace.runtime.invisible import hide_from_warnings


@hide_from_warnings
class _Following(wrapt.ObjectProxy):  # type: ignore[misc]
    """Shared part of the stream proxies: the action and its one-time end."""

    _autotrace_stream_proxy = True

    def __init__(self, wrapped: Any, span: OpenAction | None) -> None:
        super().__init__(wrapped)
        self._self_span = span

    def _self_finish(self, exc: BaseException | None = None, how: str | None = None) -> None:
        span, self._self_span = self._self_span, None
        if span is None:
            return
        if how is None:
            end_action(span, exc)
        else:
            end_action(span, exc, stream=how)

    def __del__(self) -> None:
        try:
            self._self_finish(None, "abandoned")
        except Exception:
            pass

    def __enter__(self) -> Any:
        result = self.__wrapped__.__enter__()
        return self if result is self.__wrapped__ else result

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_finish(None, "closed")

    def close(self, *args: Any, **kwargs: Any) -> Any:
        """The real ``close`` (sync or async), then the action ends as closed."""
        try:
            result = self.__wrapped__.close(*args, **kwargs)
        except BaseException:
            self._self_finish(None, "closed")
            raise
        if inspect.isawaitable(result):
            return self._self_after(result)
        self._self_finish(None, "closed")
        return result

    async def _self_after(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        finally:
            self._self_finish(None, "closed")


@hide_from_warnings
class StreamProxy(_Following):
    """A sync stream (iterator, iterable, context manager) whose end ends its action."""

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.__wrapped__)
        if iterator is self.__wrapped__:
            return self  # type: ignore[return-value]
        return self._self_iterate(iterator)

    def _self_iterate(self, iterator: Iterator[Any]) -> Iterator[Any]:
        try:
            for item in iterator:  # noqa: UP028 (no send/throw forwarding)
                yield item
        except GeneratorExit:
            raise  # the loop was left early: the stream itself may go on (or be closed)
        except BaseException as exc:
            self._self_finish(exc)
            raise
        self._self_finish(None)

    def __next__(self) -> Any:
        try:
            return next(self.__wrapped__)
        except StopIteration:
            self._self_finish(None)
            raise
        except BaseException as exc:
            self._self_finish(exc)
            raise


@hide_from_warnings
class AsyncStreamProxy(_Following):
    """An async stream (async iterator, async context manager) whose end ends its action."""

    def __aiter__(self) -> AsyncIterator[Any]:
        iterator = self.__wrapped__.__aiter__()
        if iterator is self.__wrapped__:
            return self  # type: ignore[return-value]
        return self._self_iterate(iterator)

    async def _self_iterate(self, iterator: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for item in iterator:
                yield item
        except GeneratorExit:
            raise
        except BaseException as exc:  # CancelledError included: a cancelled stream ends as cancel
            self._self_finish(exc)
            raise
        self._self_finish(None)

    async def __anext__(self) -> Any:
        try:
            return await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_finish(None)
            raise
        except BaseException as exc:
            self._self_finish(exc)
            raise

    async def __aenter__(self) -> Any:
        result = await self.__wrapped__.__aenter__()
        return self if result is self.__wrapped__ else result

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_finish(None, "closed")

    async def close(self, *args: Any, **kwargs: Any) -> Any:  # a coroutine function, as the SDKs'
        try:
            result = self.__wrapped__.close(*args, **kwargs)
            return (await result) if inspect.isawaitable(result) else result
        finally:
            self._self_finish(None, "closed")

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            self._self_finish(None, "closed")


@hide_from_warnings
class EnteredStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """A context manager that makes the request on entry (``client.messages.stream(...)``).

    ``begin()`` starts the action when the block is entered; ``attach(stream, span)``
    returns what ``__enter__`` hands back, made to end ``span`` when the stream ends
    (by default the stream passed to ``follow``, as ``autotrace.runtime.streams`` gives it). Leaving the block ends it as closed.
    """

    _autotrace_stream_proxy = True

    def __init__(
        self,
        wrapped: Any,
        begin: Callable[[], OpenAction | None],
        attach: Callable[[Any, OpenAction], Any] | None = None,
        follow: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(wrapped)
        self._self_begin = begin
        self._self_attach = attach
        self._self_follow = follow
        self._self_span: OpenAction | None = None

    def _self_start(self) -> OpenAction | None:
        try:
            span = self._self_span = self._self_begin()
            return span
        except Exception:
            return None

    def _self_entered(self, stream: Any, span: OpenAction | None, is_async: bool) -> Any:
        if span is None:
            return stream
        try:
            if self._self_attach is not None:
                return self._self_attach(stream, span)
            if self._self_follow is not None:
                return self._self_follow(stream, span, is_async=is_async)
            return stream
        except Exception:
            end_action(span)
            return stream

    def _self_finish(self, exc: BaseException | None = None, how: str | None = "closed") -> None:
        span, self._self_span = self._self_span, None
        if span is not None:
            end_action(span, exc, **({"stream": how} if how else {}))

    def __enter__(self) -> Any:
        span = self._self_start()
        try:
            stream = self.__wrapped__.__enter__()
        except BaseException as exc:
            self._self_finish(exc, None)
            raise
        return self._self_entered(stream, span, False)

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_finish()

    async def __aenter__(self) -> Any:
        span = self._self_start()
        try:
            stream = await self.__wrapped__.__aenter__()
        except BaseException as exc:
            self._self_finish(exc, None)
            raise
        return self._self_entered(stream, span, True)

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_finish()
