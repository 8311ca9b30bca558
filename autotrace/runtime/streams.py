"""Actions that last as long as a streamed result, without changing the result.

A call that returns a stream (an SSE response, a generator of chunks) has not finished
its work when it returns. ``follow(result, span)`` hands back the result made to end
``span`` exactly once, when the stream is

- exhausted (``exit``),
- closed or its ``with`` block left early (``exit``, ``extra={"stream": "closed"}``),
- garbage-collected while still open (``exit``, ``extra={"stream": "abandoned"}``),
- broken by an exception (``error``; an SDK or httpx timeout class gives ``timeout``),
- cancelled while awaiting the next chunk (``asyncio.CancelledError``, anyio's
  cancellation, ``KeyboardInterrupt``: ``cancel``). Every ``BaseException`` is seen,
  not only ``Exception``, so a cancelled stream never leaves its action open.

In place, where a patch wraps the stream's class (``in_place_rows``: the SDKs' own
``__next__`` / ``__iter__`` / ``close`` and their async twins, once, at class level):
the program gets the very object the SDK returned, so ``type()``, ``repr`` and identity
are the SDK's; the instance is only registered here (by id, with a weak reference that
tells when it is collected). A context manager that sends its request on entry
(``client.messages.stream(...)``) is handled the same way (``entered``).

Otherwise, for a class no patch wraps, the result comes back in a proxy
(autotrace.runtime.stream_proxies, ``wrapt.ObjectProxy``): ``isinstance``, attributes and every
method behave as on the real stream, but ``type()`` and ``repr`` are the proxy's.

Nothing here raises into the program: the bookkeeping is guarded, and the program's
own exceptions pass through untouched. The wrappers are hidden from warnings
(autotrace.runtime.invisible), as every frame of ours between the program and a library is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autotrace.runtime.actions import OpenAction, end_quietly
from autotrace.runtime.invisible import hide_from_warnings

# Ends a stream's action, never raising (patches call it through this module).
end_action = end_quietly


def follow(result: Any, span: OpenAction | None, *, is_async: bool | None = None) -> Any:
    """``result`` made to end ``span`` when the stream ends (``span`` None: as is).

    In place (the same object) when a patch wraps its class, else in a proxy. ``is_async``
    picks the protocol; by default, an object with ``__aiter__`` is async.
    """
    if span is None:
        return result
    if is_async is None:
        is_async = hasattr(type(result), "__aiter__")
    method = "__anext__" if is_async else "__next__"
    if (
        _tracked(_streams, result) is None  # one action per object in place
        and _wrapped_by_us(type(result), method)
        and _track(_streams, result, span)
    ):
        return result
    from autotrace.runtime.stream_proxies import AsyncStreamProxy, StreamProxy

    return AsyncStreamProxy(result, span) if is_async else StreamProxy(result, span)


def is_followed(obj: Any) -> bool:
    """True for a stream ``follow`` is following (in place or in a proxy)."""
    return _tracked(_streams, obj) is not None or bool(
        getattr(type(obj), "_autotrace_stream_proxy", False)
    )


def finish(obj: Any, exc: BaseException | None = None, how: str | None = "closed") -> None:
    """End the action ``follow`` attached to ``obj`` now (a helper closed the stream past it)."""
    if _tracked(_streams, obj) is not None:
        _release(obj, exc, how)
    elif getattr(type(obj), "_autotrace_stream_proxy", False):
        obj._self_finish(exc, how)


def entered(
    manager: Any,
    begin: Callable[[], OpenAction | None],
    attach: Callable[[Any, OpenAction], Any] | None = None,
) -> Any:
    """A context manager that sends its request on entry (``client.messages.stream(...)``).

    ``begin()`` starts the action when the block is entered; ``attach(stream, span)``
    returns what ``__enter__`` hands back, made to end ``span`` when the stream ends
    (by default the stream ``follow``ed). Leaving the block ends it as closed. In place
    when a patch wraps the manager's class (``entered_rows``), else in a proxy.
    """
    for method in ("__enter__", "__aenter__"):
        if _wrapped_by_us(type(manager), method):
            if _track(_managers, manager, (begin, attach)):
                return manager
            break
    from autotrace.runtime.stream_proxies import EnteredStreamProxy

    return EnteredStreamProxy(manager, begin, attach, follow)


# -- in place ---------------------------------------------------------------------------

# id(stream) -> (weak reference, span); id(manager) -> (weak reference, (begin, attach))
# before its block is entered, then (weak reference, span) while it is open.
_streams: dict[int, tuple[Any, Any]] = {}
_managers: dict[int, tuple[Any, Any]] = {}
_open_blocks: dict[int, tuple[Any, Any]] = {}


def _wrapped_by_us(cls: type, method: str) -> bool:
    """True when ``cls`` gets ``method`` from a class where a patch of ours wrapped it."""
    try:
        for klass in cls.__mro__:
            found = vars(klass).get(method)
            if found is not None:
                return getattr(found, "_self_autotrace", False) is True
    except Exception:
        pass
    return False


def _track(table: dict[int, tuple[Any, Any]], obj: Any, value: Any) -> bool:
    """Register ``obj`` (by id, weakly) in ``table``; False if it cannot be weakly referenced."""
    import weakref

    key = id(obj)

    def collected(_ref: Any) -> None:
        entry = table.get(key)
        if entry is not None and entry[0] is _ref:
            del table[key]
            if table is not _managers:  # a stream or an entered block: its action ends
                end_action(entry[1], stream="abandoned")

    try:
        table[key] = (weakref.ref(obj, collected), value)
    except TypeError:
        return False
    return True


def _tracked(table: dict[int, tuple[Any, Any]], obj: Any) -> Any:
    entry = table.get(id(obj))
    if entry is None or entry[0]() is not obj:
        return None
    return entry[1]


def _untrack(table: dict[int, tuple[Any, Any]], obj: Any) -> Any:
    value = _tracked(table, obj)
    if value is not None:
        table.pop(id(obj), None)
    return value


def _release(stream: Any, exc: BaseException | None = None, how: str | None = None) -> None:
    """End the action of an in-place stream once (nothing if it has none)."""
    span = _untrack(_streams, stream)
    if span is not None:
        if how is None:
            end_action(span, exc)
        else:
            end_action(span, exc, stream=how)


_named_cache: dict[tuple[Any, str, str], Any] = {}


def _named_like(fn: Any, like: Any) -> Any:
    """``fn`` under the name of ``like``: the generator or coroutine it makes reprs as like's."""
    name = getattr(like, "__name__", None)
    qualname = getattr(like, "__qualname__", None)
    if not isinstance(name, str) or not isinstance(qualname, str):
        return fn
    key = (fn, name, qualname)
    copy = _named_cache.get(key)
    if copy is None:
        from types import FunctionType

        copy = FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
        copy.__qualname__ = qualname
        _named_cache[key] = copy
    return copy


# Wrappers installed at class level by the patches' rows. Each one looks the instance
# up and passes straight through for a stream no action follows.


@hide_from_warnings
def on_next(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``Stream.__next__``: the end of the stream, or its error, ends the action."""
    if id(instance) not in _streams:
        return wrapped(*args, **kwargs)
    try:
        return wrapped(*args, **kwargs)
    except StopIteration:
        _release(instance)
        raise
    except BaseException as exc:
        _release(instance, exc)
        raise


@hide_from_warnings
def on_iter(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``Stream.__iter__``: the SDK's iterator, followed to its end (named as the SDK's)."""
    iterator = wrapped(*args, **kwargs)
    if id(instance) not in _streams or iterator is instance:
        return iterator
    return _named_like(_iterate, wrapped)(instance, iterator)


@hide_from_warnings
def _iterate(instance: Any, iterator: Any) -> Any:
    try:
        yield from iterator
    except GeneratorExit:
        raise  # the loop was left early: the stream itself may go on (or be closed)
    except BaseException as exc:
        _release(instance, exc)
        raise
    _release(instance)


@hide_from_warnings
def on_close(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``close`` (sync, or async returning a coroutine): the action ends as closed."""
    if id(instance) not in _streams:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException:
        _release(instance, None, "closed")
        raise
    if hasattr(result, "__await__"):
        return _named_like(_closed_after, wrapped)(instance, result)
    _release(instance, None, "closed")
    return result


@hide_from_warnings
async def _closed_after(instance: Any, awaitable: Any) -> Any:
    try:
        return await awaitable
    finally:
        _release(instance, None, "closed")


@hide_from_warnings
def on_anext(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``AsyncStream.__anext__``: the SDK's coroutine, or one that follows it."""
    awaitable = wrapped(*args, **kwargs)
    if id(instance) not in _streams:
        return awaitable
    return _named_like(_anext, wrapped)(instance, awaitable)


@hide_from_warnings
async def _anext(instance: Any, awaitable: Any) -> Any:
    try:
        return await awaitable
    except StopAsyncIteration:
        _release(instance)
        raise
    except BaseException as exc:  # CancelledError included: a cancelled stream ends as cancel
        _release(instance, exc)
        raise


@hide_from_warnings
def on_aiter(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``AsyncStream.__aiter__``: the SDK's async iterator, followed to its end."""
    iterator = wrapped(*args, **kwargs)
    if id(instance) not in _streams or iterator is instance:
        return iterator
    return _named_like(_aiterate, wrapped)(instance, iterator)


@hide_from_warnings
async def _aiterate(instance: Any, iterator: Any) -> Any:
    try:
        async for item in iterator:
            yield item
    except GeneratorExit:
        raise
    except BaseException as exc:
        _release(instance, exc)
        raise
    _release(instance)


def _enter(instance: Any) -> tuple[OpenAction | None, Any] | None:
    """Start the action of a registered manager's block: (span, attach), or None."""
    registered = _untrack(_managers, instance)
    if registered is None:
        return None
    begin, attach = registered
    try:
        span = begin()
    except Exception:
        span = None
    if span is not None:
        _track(_open_blocks, instance, span)
    return span, attach


def _entered_result(stream: Any, span: OpenAction | None, attach: Any, is_async: bool) -> Any:
    if span is None:
        return stream
    try:
        if attach is not None:
            return attach(stream, span)
        return follow(stream, span, is_async=is_async)
    except Exception:
        end_action(span)
        return stream


def _left(instance: Any, exc: BaseException | None = None, how: str | None = "closed") -> None:
    span = _untrack(_open_blocks, instance)
    if span is not None:
        end_action(span, exc, **({"stream": how} if how else {}))


@hide_from_warnings
def on_enter(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A manager's ``__enter__``: the request goes out now, so the action starts now."""
    started = _enter(instance) if id(instance) in _managers else None
    if started is None:
        return wrapped(*args, **kwargs)
    span, attach = started
    try:
        stream = wrapped(*args, **kwargs)
    except BaseException as exc:
        _left(instance, exc, None)
        raise
    return _entered_result(stream, span, attach, False)


@hide_from_warnings
def on_exit(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A manager's ``__exit__``: leaving the block ends the action as closed."""
    if id(instance) not in _open_blocks:
        return wrapped(*args, **kwargs)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _left(instance)


@hide_from_warnings
def on_aenter(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A manager's ``__aenter__`` (the SDK's coroutine, or one that starts the action)."""
    if id(instance) not in _managers:
        return wrapped(*args, **kwargs)
    return _named_like(_aenter, wrapped)(instance, wrapped, args, kwargs)


@hide_from_warnings
async def _aenter(instance: Any, wrapped: Any, args: Any, kwargs: Any) -> Any:
    started = _enter(instance)
    if started is None:
        return await wrapped(*args, **kwargs)
    span, attach = started
    try:
        stream = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _left(instance, exc, None)
        raise
    return _entered_result(stream, span, attach, True)


@hide_from_warnings
def on_aexit(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A manager's ``__aexit__``: leaving the block ends the action as closed."""
    if id(instance) not in _open_blocks:
        return wrapped(*args, **kwargs)
    return _named_like(_aexit, wrapped)(instance, wrapped(*args, **kwargs))


@hide_from_warnings
async def _aexit(instance: Any, awaitable: Any) -> Any:
    try:
        return await awaitable
    finally:
        _left(instance)


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


def call_wrappers(
    begin: Begin, stream_types: StreamTypes, passes_through: Callable[[], bool] | None = None
) -> tuple[Any, Any]:
    """wrapt wrappers (sync, async) for calls that may return a stream.

    ``begin(instance, args, kwargs)`` starts the action (None: pass through untraced);
    the action is current during the call, ends when it returns or raises, or, when the
    result is an instance of ``stream_types()`` (sync classes, async classes), when the
    stream ends. Errors in ``begin`` must be handled by it. ``passes_through()``, when
    given, says cheaply that ``begin`` would start nothing here (asked when a coroutine
    function is called): the caller then gets the library's own coroutine, with no
    coroutine of ours around it for every resumption to pass through.
    """
    from autotrace.runtime import actions

    @hide_from_warnings
    def sync_wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        span = begin(instance, args, kwargs)
        if span is None:
            return wrapped(*args, **kwargs)
        result = actions.call_under(span, wrapped, args, kwargs)
        return _settle(result, span, stream_types)

    @hide_from_warnings
    async def traced_call(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        span = begin(instance, args, kwargs)
        if span is None:
            return await wrapped(*args, **kwargs)
        result = await actions.await_under(span, wrapped, args, kwargs)
        return _settle(result, span, stream_types)

    @hide_from_warnings
    def async_wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            passing = passes_through is not None and passes_through()
        except Exception:
            passing = False  # begin decides, and reports its own errors
        if passing:
            return wrapped(*args, **kwargs)
        return traced_call(wrapped, instance, args, kwargs)

    return sync_wrapper, async_wrapper
