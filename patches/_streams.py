"""Shared by the model-client patches: wrap an SDK's stream classes once, at class level.

With these rows installed, ``autotrace.streams.follow`` / ``entered`` follow the SDK's
own objects in place: the program gets back exactly what the SDK returned (its type,
repr and identity), and the action still ends when the stream ends, is closed, broken,
cancelled or collected. Every row is optional: a release without a method keeps the
proxy as the fallback for it.
"""

from __future__ import annotations

from autotrace.runtime import streams
from autotrace.startup.patching import Wrap


def stream_rows(module: str, sync_class: str, async_class: str) -> list[Wrap]:
    """Rows for a sync and an async stream class (iteration and close)."""
    sync = {"__next__": streams.on_next, "__iter__": streams.on_iter, "close": streams.on_close}
    asynchronous = {
        "__anext__": streams.on_anext,
        "__aiter__": streams.on_aiter,
        "close": streams.on_close,
    }
    return [
        *(Wrap(module, f"{sync_class}.{m}", wrapper=w, optional=True) for m, w in sync.items()),
        *(
            Wrap(module, f"{async_class}.{m}", wrapper=w, optional=True)
            for m, w in asynchronous.items()
        ),
    ]


def entered_rows(module: str, sync_class: str, async_class: str) -> list[Wrap]:
    """Rows for context managers that send their request on entry (``messages.stream()``)."""
    return [
        Wrap(module, f"{sync_class}.__enter__", wrapper=streams.on_enter, optional=True),
        Wrap(module, f"{sync_class}.__exit__", wrapper=streams.on_exit, optional=True),
        Wrap(module, f"{async_class}.__aenter__", wrapper=streams.on_aenter, optional=True),
        Wrap(module, f"{async_class}.__aexit__", wrapper=streams.on_aexit, optional=True),
    ]
