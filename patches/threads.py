"""Hand-overs to other threads and loops: who waits for the work (no action of its own).

When a stuck action runs on a worker thread or another event loop's thread, the program's
line is in the caller that waits for it. This patch notes that caller (its thread and
asyncio task) when the work is handed over, so the watchdog's stuck report can name it
(``caller_stack`` / ``caller_where``):

- ``concurrent.futures.ThreadPoolExecutor.submit`` (so ``loop.run_in_executor`` and
  ``asyncio.to_thread``): the returned future is noted; the watchdog finds it again in
  the worker's ``_WorkItem.run`` frame;
- ``asyncio.run_coroutine_threadsafe`` (so fsspec/s3fs ``sync()`` and
  ``anyio.from_thread.run``) and ``anyio.to_thread.run_sync``: the caller is set in a
  context variable while the call copies the caller's context for the other loop's task
  (and the tasks it starts) or anyio's worker; actions opened there keep it.

Nothing is changed in what runs or what it returns: no argument is replaced.
"""

from __future__ import annotations

import sys
from typing import Any

from autotrace.runtime import origins
from autotrace.startup.patching import Patch, Wrap


def _submit(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    future = wrapped(*args, **kwargs)
    if PATCH.enabled:
        try:
            origins.note_future(future, origins.here())
        except Exception as exc:
            PATCH.fail(f"submit: {exc!r}")
    return future


def _run_coroutine_threadsafe(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # The loop's callback runs in a copy of this context, and the task copies that.
    if not PATCH.enabled:
        return wrapped(*args, **kwargs)
    with origins.waiting_here():
        return wrapped(*args, **kwargs)


async def _to_thread_run_sync(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not PATCH.enabled:
        return await wrapped(*args, **kwargs)
    with origins.waiting_here():
        return await wrapped(*args, **kwargs)


def _on_import(module: Any) -> None:
    """asyncio binds ``run_coroutine_threadsafe`` from asyncio.tasks: the same wrapper there.

    (It is ours already when asyncio.tasks was wrapped first, as in every traced program;
    one wrapper object, so that pickling finds it again by name.)
    """
    if module.__name__ != "asyncio":
        return
    ours = getattr(sys.modules.get("asyncio.tasks"), "run_coroutine_threadsafe", None)
    bound = getattr(module, "run_coroutine_threadsafe", None)
    if ours is not None and bound is not ours and getattr(ours, "__wrapped__", None) is bound:
        module.run_coroutine_threadsafe = ours
        PATCH.installed.append((module, "run_coroutine_threadsafe", bound))


PATCH = Patch(
    name="threads",
    description="hand-overs to worker threads and other loops (executors, "
    "run_coroutine_threadsafe, anyio to_thread): who waits, for stuck reports",
    wraps=[
        Wrap("concurrent.futures.thread", "ThreadPoolExecutor.submit", wrapper=_submit),
        Wrap("asyncio.tasks", "run_coroutine_threadsafe", wrapper=_run_coroutine_threadsafe),
        Wrap("anyio.to_thread", "run_sync", wrapper=_to_thread_run_sync, optional=True),
    ],
    modules=("asyncio",),
    on_import=_on_import,
)
