"""Actions that last as long as a streamed result: transparent stream proxies.

A call that returns a stream (an SSE response, a generator of chunks) has not finished
its work when it returns. ``follow(result, span)`` hands back the result wrapped in a
proxy that ends ``span`` exactly once, when the stream is

- exhausted (``exit``),
- closed or its ``with`` block left early (``exit``, ``extra={"stream": "closed"}``),
- garbage-collected while still open (``exit``, ``extra={"stream": "abandoned"}``),
- broken by an exception (``error``; an SDK or httpx timeout class gives ``timeout``),
- cancelled while awaiting the next chunk (``asyncio.CancelledError``, anyio's
  cancellation, ``KeyboardInterrupt``: ``cancel``). Every ``BaseException`` is seen,
  not only ``Exception``, so a cancelled stream never leaves its action open.

The proxies are ``wrapt.ObjectProxy`` objects: ``isinstance``, attributes and every
method the program uses behave as on the real stream; iteration, async iteration and
(async) context-manager protocols are forwarded, and ``__enter__`` returns the proxy
when the real stream returns itself. Nothing here raises into the program: the
bookkeeping is guarded, and the program's own exceptions pass through untouched.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import wrapt

from autotrace import records
from autotrace.actions import OpenAction

# Class names (anywhere in the exception's MRO) that mean "the call timed out".
TIMEOUT_CLASS_NAMES = frozenset(
    {"APITimeoutError", "TimeoutException", "ReadTimeout", "TimeoutError", "TimeoutExpired"}
)


def end_event(exc: BaseException | None) -> str:
    """The end event for ``exc``: like ``records.outcome_of``, SDK timeout classes included."""
    if exc is not None and any(c.__name__ in TIMEOUT_CLASS_NAMES for c in type(exc).__mro__):
        return records.TIMEOUT
    return records.outcome_of(exc)


def end_action(span: OpenAction | None, exc: BaseException | None = None, **extra: Any) -> None:
    """End ``span`` (None: nothing to do) with the outcome of ``exc``; never raises."""
    if span is None:
        return
    try:
        span.end(exc, event=end_event(exc), extra=extra or None)
    except Exception:
        pass


class _Following(wrapt.ObjectProxy):  # type: ignore[misc]
    """Shared part of the stream proxies: the action and its one-time end."""

    def __init__(self, wrapped: Any, span: OpenAction | None) -> None:
        super().__init__(wrapped)
        self._self_span = span
        self._self_autotrace_stream = True

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

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            self._self_finish(None, "closed")


def follow(result: Any, span: OpenAction | None, *, is_async: bool | None = None) -> Any:
    """``result`` in a proxy that ends ``span`` when the stream ends (``span`` None: as is).

    ``is_async`` picks the proxy; by default, an object with ``__aiter__`` is async.
    """
    if span is None:
        return result
    if is_async is None:
        is_async = hasattr(type(result), "__aiter__")
    return AsyncStreamProxy(result, span) if is_async else StreamProxy(result, span)


def is_followed(obj: Any) -> bool:
    """True for a proxy made by ``follow`` (``isinstance`` sees the real class instead)."""
    return isinstance(obj, wrapt.ObjectProxy) and bool(
        getattr(obj, "_self_autotrace_stream", False)
    )


def finish(obj: Any, exc: BaseException | None = None, how: str | None = "closed") -> None:
    """End the action of a ``follow`` proxy now (a helper closed the stream past the proxy)."""
    if is_followed(obj):
        obj._self_finish(exc, how)


class EnteredStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """A context manager that makes the request on entry (``client.messages.stream(...)``).

    ``begin()`` starts the action when the block is entered; ``attach(stream, span)``
    returns what ``__enter__`` hands back, made to end ``span`` when the stream ends
    (by default the stream in a ``follow`` proxy). Leaving the block ends it as closed.
    """

    def __init__(
        self,
        wrapped: Any,
        begin: Callable[[], OpenAction | None],
        attach: Callable[[Any, OpenAction], Any] | None = None,
    ) -> None:
        super().__init__(wrapped)
        self._self_begin = begin
        self._self_attach = attach
        self._self_span: OpenAction | None = None
        self._self_autotrace_stream = True

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
            return follow(stream, span, is_async=is_async)
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


Begin = Callable[[Any, tuple[Any, ...], dict[str, Any]], "OpenAction | None"]
StreamTypes = Callable[[], tuple[tuple[type, ...], tuple[type, ...]]]


def _settle(result: Any, span: OpenAction, stream_types: StreamTypes) -> Any:
    """End ``span`` now, or hand back ``result`` followed when it is a stream."""
    try:
        sync_types, async_types = stream_types()
        if async_types and isinstance(result, async_types):
            return follow(result, span, is_async=True)
        if sync_types and isinstance(result, sync_types):
            return follow(result, span, is_async=False)
    except Exception:
        pass
    end_action(span)
    return result


def call_wrappers(begin: Begin, stream_types: StreamTypes) -> tuple[Any, Any]:
    """wrapt wrappers (sync, async) for calls that may return a stream.

    ``begin(instance, args, kwargs)`` starts the action (None: pass through untraced);
    the action is current during the call, ends when it returns or raises, or, when the
    result is an instance of ``stream_types()`` (sync classes, async classes), when the
    stream ends. Errors in ``begin`` must be handled by it.
    """
    from autotrace import actions

    def sync_wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        span = begin(instance, args, kwargs)
        if span is None:
            return wrapped(*args, **kwargs)
        try:
            with actions.under(span):
                result = wrapped(*args, **kwargs)
        except BaseException as exc:
            end_action(span, exc)
            raise
        return _settle(result, span, stream_types)

    async def async_wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        span = begin(instance, args, kwargs)
        if span is None:
            return await wrapped(*args, **kwargs)
        try:
            with actions.under(span):
                result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            end_action(span, exc)
            raise
        return _settle(result, span, stream_types)

    return sync_wrapper, async_wrapper
