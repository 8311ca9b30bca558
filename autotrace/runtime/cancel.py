"""Ending one open action from outside (``inspect-trace cancel PID TRACE_ID``).

Runs in the traced process, in the watchdog's thread, when the channel asks. The least
harmful way that works for the action is chosen:

1. an action that waits on a child process (``Subprocess`` / ``Docker``, ours or
   inspect's own): the child is terminated (SIGTERM, SIGKILL after ``GRACE`` seconds);
   the program sees the process end, as if it had been killed from outside;
2. an action of an asyncio task: ``task.cancel()`` on the task's loop, so the call
   raises ``CancelledError`` in the program, as a timeout would;
3. an action of a thread running Python code: ``ActionCancelled`` is raised in that
   thread (``PyThreadState_SetAsyncExc``); a thread blocked in C code (a sleep, a lock,
   a socket read) cannot be interrupted that way, and the answer says so.

The action's own end record says ``ended_by: "cancel"`` (written by the usual end
path), and an ``[autotrace] cancel`` record tells what was done, for inspect's native
actions too, whose end record inspect writes.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autotrace.runtime import process_info, registry

if TYPE_CHECKING:
    from autotrace.runtime.actions import OpenAction

GRACE = 3.0  # seconds between SIGTERM and SIGKILL
SETTLE = 4.0  # seconds the answer waits for the action to end
ENDED_BY = "cancel"


class ActionCancelled(concurrent.futures.CancelledError):
    """Raised in a thread whose action was cancelled with ``inspect-trace cancel``.

    A ``concurrent.futures.CancelledError`` (an ``Exception``): handlers that catch a
    failed call catch it, as they would a cancelled future's; records call it ``cancel``.
    """

    autotrace_cancel = True


Progress = Callable[[dict[str, Any]], None]


def cancel_action(trace_id: str, progress: Progress | None = None) -> dict[str, Any]:
    """End open action ``trace_id`` of this process; {"ok", "message", ...} says how it went.

    ``progress`` gets a first answer as soon as the request is acted on: a program that
    ends right after its action ends may not live to send the final one.
    """
    span = registry.open_actions.get(trace_id)
    if span is None or span.ended or span.pid != os.getpid():
        return {"ok": False, "message": f"no open action {trace_id} in process {os.getpid()}"}
    what = f"{span.action}: {span.detail}"

    def acted(message: str) -> None:
        # Written and sent before each step: the program may end as soon as it is taken.
        _record(what, trace_id, message, ok=True)
        if progress is not None:
            progress(
                {"ok": True, "final": False, "message": message, "trace_id": trace_id}
                | {"action": span.action, "detail": span.detail}
            )

    if span.child_pid is not None and _alive(span.child_pid):
        answer = _terminate_child(span, acted)
    elif span.task is not None and not span.task.done():
        answer = _cancel_task(span, acted)
    elif span.thread_id is not None:
        answer = _raise_in_thread(span, acted)
    else:
        answer = {"ok": False, "message": f"{what} runs nowhere this process can reach"}
    answer.setdefault("action", span.action)
    answer.setdefault("detail", span.detail)
    answer["trace_id"] = trace_id
    answer["ended"] = span.ended
    answer["final"] = True
    _record(what, trace_id, answer["message"], ok=answer["ok"])
    return answer


def _record(what: str, trace_id: str, message: str, ok: bool) -> None:
    """One ``[autotrace] cancel`` record: what was asked, and what was done."""
    registry.agent_message(
        f"cancel: {what}: {message}", event_kind="cancel", trace_id=trace_id, ok=ok
    )


def _wait_ended(span: OpenAction, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not span.ended and time.monotonic() < deadline:
        time.sleep(0.02)
    return span.ended


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a child that exited and is not yet reaped does not)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # not our child (or reaped): ask the kernel directly
        return process_info.pid_alive(pid)
    except (OSError, AttributeError):
        return True
    return info is None


def _terminate_child(span: OpenAction, acted: Callable[[str], None]) -> dict[str, Any]:
    pid = span.child_pid
    assert pid is not None
    span.ended_by = ENDED_BY
    acted(f"terminating child process {pid} (SIGTERM)")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        span.ended_by = None
        return {"ok": False, "message": f"cannot signal child process {pid}: {exc.strerror}"}
    how = f"terminated child process {pid} (SIGTERM)"
    deadline = time.monotonic() + GRACE
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(pid):
        how = f"killed child process {pid} (SIGKILL {GRACE:g} s after SIGTERM)"
        acted(how)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    ended = _wait_ended(span, SETTLE)
    return {
        "ok": True,
        "how": "child",
        "message": how + ("" if ended else "; the program has not seen it end yet"),
    }


def _cancel_task(span: OpenAction, acted: Callable[[str], None]) -> dict[str, Any]:
    task = span.task
    try:
        loop = task.get_loop()
        span.ended_by = ENDED_BY
        acted(f"cancelling asyncio task {span.task_name}")
        loop.call_soon_threadsafe(task.cancel)
    except Exception as exc:  # its loop is closed or gone
        span.ended_by = None
        return {"ok": False, "message": f"cannot cancel task {span.task_name}: {exc}"}
    ended = _wait_ended(span, SETTLE)
    return {
        "ok": True,
        "how": "task",
        "message": f"cancelled asyncio task {span.task_name} (CancelledError raised in it)"
        + ("" if ended else f"; still open after {SETTLE:g} s (the task may ignore it)"),
    }


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> int:
    import ctypes

    return int(
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
        )
    )


def _raise_in_thread(span: OpenAction, acted: Callable[[str], None]) -> dict[str, Any]:
    thread_id = span.thread_id
    assert thread_id is not None
    name = span.thread_name
    if thread_id == threading.get_ident():
        return {"ok": False, "message": "the action runs in the watchdog's own thread"}
    span.ended_by = ENDED_BY
    acted(f"raising ActionCancelled in thread {name}")
    try:
        if _set_async_exc(thread_id, ActionCancelled) != 1:
            span.ended_by = None
            return {"ok": False, "message": f"thread {name} is gone"}
    except Exception as exc:  # no ctypes, or not CPython
        span.ended_by = None
        return {"ok": False, "message": f"cannot raise an exception in thread {name}: {exc!r}"}
    if _wait_ended(span, SETTLE):
        return {
            "ok": True,
            "how": "thread",
            "message": f"raised ActionCancelled in thread {name}",
        }
    # Still inside a call that does not return to Python (sleep, lock, socket read):
    # take the exception back rather than let it land later somewhere else.
    try:
        _set_async_exc(thread_id, None)
    except Exception:
        pass
    span.ended_by = None
    if span.ended:  # it ended just now after all
        return {"ok": True, "how": "thread", "message": f"raised ActionCancelled in thread {name}"}
    return {
        "ok": False,
        "message": f"thread {name} is blocked in a call outside Python code "
        "(sleep, lock, socket or C extension): an exception cannot interrupt it",
    }
