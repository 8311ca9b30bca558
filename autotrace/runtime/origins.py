"""Who waits for work handed to another thread or event loop.

Work often runs away from the code that waits for it: an executor's worker thread,
anyio's worker threads, fsspec's private event-loop thread (``run_coroutine_threadsafe``).
A stack of that worker alone shows library frames; the program's line is in the caller,
blocked in another thread (or an asyncio task awaiting the result). The patch
``autotrace.patches.threads`` notes the caller when work is handed over, and the
watchdog asks ``caller_of`` only when it reports a stuck action: nothing is paid per
action, and only a dictionary entry per hand-over.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any


class Origin:
    """The caller that waits: its thread, and its asyncio task if it waits in one."""

    __slots__ = ("thread_id", "thread_name", "task")

    def __init__(self, thread_id: int, thread_name: str, task: Any) -> None:
        self.thread_id = thread_id
        self.thread_name = thread_name
        self.task = task

    def __repr__(self) -> str:
        return f"<Origin thread {self.thread_name} task {self.task!r}>"


# worker thread ident -> the caller its current work item runs for
_by_thread: dict[int, Origin] = {}
# coroutine handed to another loop -> the caller waiting for it
_by_coroutine: weakref.WeakKeyDictionary[Any, Origin] = weakref.WeakKeyDictionary()
# executor future -> the caller that submitted its work item
_by_future: weakref.WeakKeyDictionary[Any, Origin] = weakref.WeakKeyDictionary()
# set while a caller hands work to a thread that runs it in a copy of the caller's context
_waiting: contextvars.ContextVar[Origin | None] = contextvars.ContextVar(
    "autotrace_waiting_caller", default=None
)


def here() -> Origin:
    """The calling thread, and the asyncio task running in it (if any)."""
    thread = threading.current_thread()
    task = None
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        try:
            if asyncio._get_running_loop() is not None:
                task = asyncio.current_task()
        except Exception:
            task = None
    return Origin(threading.get_ident(), thread.name, task)


def run_for(origin: Origin, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` in this (worker) thread, noted as working for ``origin`` meanwhile."""
    ident = threading.get_ident()
    previous = _by_thread.get(ident)
    _by_thread[ident] = origin
    try:
        return fn(*args, **kwargs)
    finally:
        if previous is None:
            _by_thread.pop(ident, None)
        else:
            _by_thread[ident] = previous


def note_coroutine(coro: Any, origin: Origin) -> None:
    """``coro`` will run as a task of another loop, for ``origin``."""
    try:
        _by_coroutine[coro] = origin
    except TypeError:  # not weak-referenceable: nothing noted
        pass


def note_future(future: Any, origin: Origin) -> None:
    """``future`` is an executor's future for work submitted by ``origin``."""
    try:
        _by_future[future] = origin
    except TypeError:
        pass


class waiting_here:
    """Within this block, work run in a copy of this context runs for this caller."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _waiting.set(here())

    def __exit__(self, *exc_info: object) -> None:
        try:
            _waiting.reset(self._token)
        except ValueError:
            _waiting.set(None)


def caller_of(thread_id: int | None, task: Any, frames: list[FrameType]) -> Origin | None:
    """Who waits for the work running in ``task`` or on thread ``thread_id``, if noted.

    ``frames``: the thread's current frames (outermost first), where a worker's
    hand-over frame is found (an executor's ``_WorkItem.run``, anyio's worker loop).
    """
    if task is not None:
        try:
            found = _by_coroutine.get(task.get_coro())
        except Exception:
            found = None
        if found is not None:
            return found
    if thread_id is not None:
        found = _by_thread.get(thread_id)
        if found is not None:
            return found
    for frame in reversed(frames):
        found = _handed_over_in(frame)
        if found is not None:
            return found
    return None


def _handed_over_in(frame: FrameType) -> Origin | None:
    """The caller a worker's frame runs for: read from the frame's own locals, never shown."""
    code = frame.f_code
    if code.co_name != "run":
        return None
    module = frame.f_globals.get("__name__")
    try:
        if module == "concurrent.futures.thread":
            item = frame.f_locals.get("self")
            future = getattr(item, "future", None)
            return _by_future.get(future) if future is not None else None
        if module == "anyio._backends._asyncio":
            context = frame.f_locals.get("context")
            if isinstance(context, contextvars.Context):
                return context.get(_waiting)
    except Exception:
        return None
    return None


def _after_fork_in_child() -> None:
    _by_thread.clear()  # no worker thread survives a fork


os.register_at_fork(after_in_child=_after_fork_in_child)
