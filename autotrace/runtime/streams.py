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

The proxies (autotrace.runtime.stream_proxies) are ``wrapt.ObjectProxy`` objects: ``isinstance``, attributes and every
method the program uses behave as on the real stream; iteration, async iteration and
(async) context-manager protocols are forwarded, and ``__enter__`` returns the proxy
when the real stream returns itself. Nothing here raises into the program: the
bookkeeping is guarded, and the program's own exceptions pass through untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autotrace.runtime.actions import OpenAction


# Class names (anywhere in the exception's MRO) that mean "the call timed out".
def end_action(span: OpenAction | None, exc: BaseException | None = None, **extra: Any) -> None:
    """End ``span`` (None: nothing to do) with the outcome of ``exc``; never raises."""
    if span is None:
        return
    try:
        span.end(exc, extra=extra or None)
    except Exception:
        pass


def follow(result: Any, span: OpenAction | None, *, is_async: bool | None = None) -> Any:
    """``result`` in a proxy that ends ``span`` when the stream ends (``span`` None: as is).

    ``is_async`` picks the proxy; by default, an object with ``__aiter__`` is async.
    """
    if span is None:
        return result
    from autotrace.runtime.stream_proxies import AsyncStreamProxy, StreamProxy

    if is_async is None:
        is_async = hasattr(type(result), "__aiter__")
    return AsyncStreamProxy(result, span) if is_async else StreamProxy(result, span)


def is_followed(obj: Any) -> bool:
    """True for a proxy made here (``isinstance`` sees the real class instead)."""
    return bool(getattr(type(obj), "_autotrace_stream_proxy", False))


def finish(obj: Any, exc: BaseException | None = None, how: str | None = "closed") -> None:
    """End the action of a ``follow`` proxy now (a helper closed the stream past the proxy)."""
    if is_followed(obj):
        obj._self_finish(exc, how)


def entered(
    manager: Any,
    begin: Callable[[], OpenAction | None],
    attach: Callable[[Any, OpenAction], Any] | None = None,
) -> Any:
    """A context manager that sends its request on entry (``client.messages.stream(...)``).

    ``begin()`` starts the action when the block is entered; ``attach(stream, span)``
    returns what ``__enter__`` hands back, made to end ``span`` when the stream ends
    (by default the stream in a ``follow`` proxy). Leaving the block ends it as closed.
    """
    from autotrace.runtime.stream_proxies import EnteredStreamProxy

    return EnteredStreamProxy(manager, begin, attach)


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
    from autotrace.runtime import actions

    def sync_wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        span = begin(instance, args, kwargs)
        if span is None:
            return wrapped(*args, **kwargs)
        result = actions.call_under(span, wrapped, args, kwargs)
        return _settle(result, span, stream_types)

    async def async_wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        span = begin(instance, args, kwargs)
        if span is None:
            return await wrapped(*args, **kwargs)
        result = await actions.await_under(span, wrapped, args, kwargs)
        return _settle(result, span, stream_types)

    return sync_wrapper, async_wrapper
