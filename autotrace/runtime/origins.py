"""Who waits for work handed to another thread or event loop.

Work often runs away from the code that waits for it: an executor's worker thread,
anyio's worker threads, fsspec's private event-loop thread (``run_coroutine_threadsafe``).
A stack of that worker alone shows library frames; the program's line is in the caller,
blocked in another thread (or an asyncio task awaiting the result). The patch
``autotrace.patches.threads`` notes the caller when work is handed over:

- where the work runs in a copy of the caller's context (anyio's worker threads, and a
  coroutine handed to another loop: ``call_soon_threadsafe`` copies the caller's context
  and the task copies that), a context variable names the caller, and an action opened
  there keeps it (one ``ContextVar.get`` per action);
- an executor's future is mapped to its submitter; the watchdog finds the future again
  in the worker's ``_WorkItem.run`` frame.

The watchdog follows the callers only when it reports a stuck action.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import weakref
from types import FrameType

TYPE_CHECKING = False  # typing costs milliseconds before a process's first action
if TYPE_CHECKING:
    from typing import Any


class Origin:
    """The caller that waits: its thread, its asyncio task if it waits in one, and whoever
    that caller itself works for (a worker of a worker)."""

    __slots__ = ("thread_id", "thread_name", "task", "parent")

    def __init__(self, thread_id: int, thread_name: str, task: Any, parent: Origin | None) -> None:
        self.thread_id = thread_id
        self.thread_name = thread_name
        self.task = task
        self.parent = parent

    def __repr__(self) -> str:
        return f"<Origin thread {self.thread_name} task {self.task!r}>"


# executor future -> the caller that submitted its work item
_by_future: weakref.WeakKeyDictionary[Any, Origin] = weakref.WeakKeyDictionary()
# set while a caller hands work to code that runs it in a copy of the caller's context
_waiting: contextvars.ContextVar[Origin | None] = contextvars.ContextVar(
    "autotrace_waiting_caller", default=None
)
current = _waiting.get  # the caller this context works for (None: its own work)


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
    return Origin(threading.get_ident(), thread.name, task, _waiting.get())


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


def caller_of(frames: list[FrameType]) -> Origin | None:
    """Who waits for the work item a worker thread runs, found in its ``frames``."""
    for frame in reversed(frames):
        found = _handed_over_in(frame)
        if found is not None:
            return found
    return None


def _handed_over_in(frame: FrameType) -> Origin | None:
    """The caller an executor's work item runs for, read from its frame (never shown)."""
    code = frame.f_code
    if code.co_name != "run" or frame.f_globals.get("__name__") != "concurrent.futures.thread":
        return None
    try:
        future = getattr(frame.f_locals.get("self"), "future", None)
        return _by_future.get(future) if future is not None else None
    except Exception:
        return None
