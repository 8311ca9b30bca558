"""The action API: an ``enter`` record now, one end record later, open actions in memory.

``trace_action`` is what programs and patches use; ``start_action`` returns a handle
whose ``end()`` a patch calls when the work ends somewhere else (a process reaped
later, a stream exhausted later). Timing, outcome, nesting and writing all happen
here; a patch only names the action and its detail.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import sys
import threading
import time

from autotrace import records
from autotrace.redact import redact_text
from autotrace.runtime import forks, guard, invisible, origins
from autotrace.runtime.registry import agent_message as agent_message
from autotrace.runtime.registry import internal_error as _internal_error
from autotrace.runtime.registry import open_actions as open_actions
from autotrace.runtime.registry import trace_message as trace_message
from autotrace.runtime.registry import writer as writer

# typing, inspect and functools cost milliseconds to import, before a process's first
# action: for type checkers only (and the decorator form imports what it needs).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])


_current: contextvars.ContextVar[OpenAction | None] = contextvars.ContextVar(
    "autotrace_current_action", default=None
)

_waiting_caller = origins.current
_ids = itertools.count(1)
_id_prefix = f"{os.urandom(4).hex()}-{forks.pid}-"
_suppressed: contextvars.ContextVar[int] = contextvars.ContextVar("autotrace_suppressed", default=0)


def _new_trace_id() -> str:
    return f"{_id_prefix}{next(_ids)}"


def _task_name() -> tuple[str | None, Any]:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None, None
    try:
        if asyncio._get_running_loop() is None:
            return None, None
        task = asyncio.current_task()
    except Exception:
        return None, None
    if task is None:
        return None, None
    return task.get_name(), task


class OpenAction:
    """One action that has written its ``enter`` and not yet its end record."""

    __slots__ = (
        "trace_id",
        "action",
        "detail",
        "start_time",
        "start_mono",
        "parent_id",
        "pid",
        "thread_id",
        "thread_name",
        "task_name",
        "task",
        "ended",
        "lines",
        "extra",
        "child_pid",
        "ended_by",
        "origin",
        "__weakref__",
    )

    def __init__(
        self,
        action: str,
        detail: str,
        parent_id: str | None,
        extra: dict[str, Any] | None,
    ) -> None:
        self._bind(action, detail, _new_trace_id(), parent_id, extra)
        self.lines = records.ActionLines(
            action,
            detail,
            self.trace_id,
            pid=forks.pid,
            thread=self.thread_name,
            task=self.task_name,
            parent_id=parent_id,
        )
        self.start_time = time.time()
        self.start_mono = time.monotonic()
        writer.write(
            self.lines.line(records.ENTER, self.start_time, start_time=self.start_time, extra=extra)
        )
        # Registered after its enter is written: a file (re)opened by that write
        # repeats only the actions whose enter it does not already get.
        open_actions[self.trace_id] = self
        loop = _watchdog_loop  # the only watchdog cost on the hot path
        if loop is None or not loop.running:
            _start_watchdog()

    def _bind(
        self,
        action: str,
        detail: str,
        trace_id: str,
        parent_id: str | None,
        extra: dict[str, Any] | None,
    ) -> None:
        """Name the action and tie it to this process, thread and asyncio task."""
        self.trace_id = trace_id
        self.action = action
        self.detail = detail
        self.parent_id = parent_id
        self.pid = forks.pid
        self.thread_id = threading.get_ident()
        self.thread_name = invisible.thread_name()
        self.task_name, self.task = _task_name()
        self.ended = False
        self.extra = extra
        self.child_pid: int | None = None  # the process this action waits on, if known
        self.ended_by: str | None = None  # who ends it from outside ("cancel"), if anyone
        self.origin = _waiting_caller()  # the caller in another thread this work is for

    def enter_line(self) -> bytes:
        """The ``enter`` record again (written when the trace file is reopened)."""
        return self.lines.line(
            records.ENTER, self.start_time, start_time=self.start_time, extra=self.extra
        )

    def end(
        self,
        exc: BaseException | None = None,
        *,
        event: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write the end record once: the outcome follows ``exc`` unless ``event`` is given."""
        if self.ended:
            return
        self.ended = True
        if self.pid != forks.pid:  # opened before a fork: its enter is in the parent's file
            open_actions.pop(self.trace_id, None)
            return
        try:
            duration = time.monotonic() - self.start_mono
            outcome = event or records.outcome_of(exc)
            if self.ended_by is not None:  # ended from outside (inspect-trace cancel)
                extra = {**(extra or {}), "ended_by": self.ended_by}
                if outcome == records.EXIT:  # a terminated child returns: still a cancel
                    outcome = records.CANCEL
            # Still registered while its end is written: if this write reopens a file
            # rotated away, the new file gets this action's enter before its end.
            writer.write(
                self.lines.line(outcome, time.time(), duration=duration, error=exc, extra=extra)
            )
        except Exception as internal:
            _internal_error(internal)
        finally:
            open_actions.pop(self.trace_id, None)
            loop = _watchdog_loop
            if loop is not None:
                if not open_actions:
                    loop.wake()  # nothing left to watch: its thread leaves
                elif not loop.running:
                    loop.start()  # stopped for a fork: back with the next action's end

    def __repr__(self) -> str:
        return f"<OpenAction {self.action}: {self.detail} {self.trace_id}>"


# The watchdog (autotrace.runtime.watchdog) is loaded with the first action of a process; its
# thread runs while actions are open. Started and no loop: it could not be loaded.
_watchdog_started = False
_watchdog_loop: Any = None


def _start_watchdog() -> None:
    global _watchdog_started
    if _watchdog_started and _watchdog_loop is None:
        return
    _watchdog_started = True
    guard.call(_import_and_start_watchdog, on_error=_watchdog_failed)


def _import_and_start_watchdog() -> None:
    global _watchdog_loop
    from autotrace.runtime import watchdog

    dog = watchdog.start()
    _watchdog_loop = dog.loop if dog is not None else None


def _watchdog_failed(exc: Exception) -> None:  # no watchdog, tracing goes on
    guard.warn(f"watchdog not started: {exc!r}")


def end_quietly(span: OpenAction | None, exc: BaseException | None = None, **extra: Any) -> None:
    """End ``span`` (None: nothing to do) with the outcome of ``exc``; never raises."""
    if span is None:
        return
    try:
        span.end(exc, extra=extra or None)
    except Exception:
        pass


def note_child_process(pid: int) -> None:
    """The current action started process ``pid`` without tracing it itself.

    A native ``Subprocess`` (inspect's) or a sandbox exec whose process start is the
    same work learns which child it waits on: ``cancel`` can then terminate it.
    """
    span = _current.get()
    if (
        span is not None
        and span.action in (records.SUBPROCESS, records.DOCKER)  # one process is the work
        and not span.ended
        and span.child_pid is None
    ):
        span.child_pid = pid


def current_action() -> OpenAction | None:
    """The innermost action open in this context (thread or asyncio task)."""
    return _current.get()


def traces_nothing() -> bool:
    """Whether ``start_action`` would trace nothing here (tracing off, or the work in this
    context already traced as other work): a patch may skip describing it."""
    return writer.disabled or bool(_suppressed.get())


def start_action(
    action: str,
    detail: str = "",
    *,
    extra: dict[str, Any] | None = None,
    parent: OpenAction | None = None,
) -> OpenAction | None:
    """Write ``enter`` now and return the handle to ``end()`` later (None if tracing is off).

    The action is not made current: use ``trace_action`` for work that nests.
    """
    if traces_nothing():
        return None
    try:
        parent = parent if parent is not None else _current.get()
        return OpenAction(
            action, redact_text(detail), parent.trace_id if parent is not None else None, extra
        )
    except Exception as internal:
        _internal_error(internal)
        return None


@invisible.hide_from_warnings
class trace_action:
    """Trace one action as a context manager (sync or async) or as a decorator.

    ``with trace_action("Model", "generate (openai/gpt-4o)"): ...`` writes ``enter``,
    then ``exit``, ``error``, ``cancel`` or ``timeout``; the exception is re-raised
    untouched. Actions opened inside become its children.
    """

    __slots__ = ("action", "detail", "extra", "_span", "_token")

    def __init__(self, action: str, detail: str = "", *, extra: dict[str, Any] | None = None):
        self.action = action
        self.detail = detail
        self.extra = extra
        self._span: OpenAction | None = None
        self._token: contextvars.Token[OpenAction | None] | None = None

    def __enter__(self) -> OpenAction | None:
        span = self._span = start_action(self.action, self.detail, extra=self.extra)
        if span is not None:
            self._token = _current.set(span)
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span, token = self._span, self._token
        self._span = self._token = None
        if token is not None:
            _restore(token)
        if span is not None:
            span.end(exc)

    async def __aenter__(self) -> OpenAction | None:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: F) -> F:
        import functools
        import inspect

        action, detail, extra = self.action, self.detail, self.extra
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_traced(*args: Any, **kwargs: Any) -> Any:
                with trace_action(action, detail, extra=extra):
                    return await fn(*args, **kwargs)

            return async_traced  # type: ignore[return-value]

        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            with trace_action(action, detail, extra=extra):
                return fn(*args, **kwargs)

        return traced  # type: ignore[return-value]


class ForeignAction(OpenAction):
    """An action another tracer writes (inspect's own ``trace_action``): never written by us.

    Made current by ``adopt_action`` so that our actions inside it name it as parent and
    patches can see which work is already traced (``current_action().action``).
    """

    __slots__ = ()

    def __init__(self, action: str, detail: str, trace_id: str, parent_id: str | None) -> None:
        self._bind(action, detail, trace_id, parent_id, None)
        self.lines = None  # type: ignore[assignment]
        self.start_time = time.time()
        self.start_mono = time.monotonic()
        # Open for the watchdog (stuck reports, stacks, cancel) as our own actions are.
        open_actions[trace_id] = self
        if not _watchdog_started:
            _start_watchdog()

    def enter_line(self) -> bytes:
        return b""

    def end(self, *args: Any, **kwargs: Any) -> None:
        self.ended = True
        open_actions.pop(self.trace_id, None)


class adopt_action:
    """Within this block an action written by another tracer is the current parent."""

    __slots__ = ("action", "_token")

    def __init__(self, action: str, detail: str, trace_id: str) -> None:
        parent = _current.get()
        self.action = ForeignAction(
            action, detail, trace_id, parent.trace_id if parent is not None else None
        )
        self._token: contextvars.Token[OpenAction | None] | None = None

    def __enter__(self) -> ForeignAction:
        self._token = _current.set(self.action)
        return self.action

    def __exit__(self, *exc_info: object) -> None:
        self.action.end()
        token, self._token = self._token, None
        if token is None:
            return
        _restore(token)


class under:
    """Within this block ``span`` is the current action (None: the context is left as is).

    For work one action started that goes on in another thread or event loop (an
    executor's worker, fsspec's loop thread): actions opened inside name it as parent.
    """

    __slots__ = ("span", "_token")

    def __init__(self, span: OpenAction | None) -> None:
        self.span = span
        self._token: contextvars.Token[OpenAction | None] | None = None

    def __enter__(self) -> OpenAction | None:
        if self.span is not None:
            self._token = _current.set(self.span)
        return self.span

    def __exit__(self, *exc_info: object) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        _restore(token)


def _restore(token: contextvars.Token[OpenAction | None]) -> None:
    """Put back the current action a ``_current.set`` replaced, even from another context."""
    try:
        _current.reset(token)
    except ValueError:  # exited in another context (a generator moved across tasks)
        old = token.old_value
        _current.set(None if old is contextvars.Token.MISSING else old)


@invisible.hide_from_warnings
def call_under(
    span: OpenAction, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Call ``fn`` with ``span`` current; if it raises, end ``span`` with that outcome.

    On return ``span`` stays open: the caller ends it (now, or when a stream ends).
    """
    try:
        with under(span):
            return fn(*args, **kwargs)
    except BaseException as exc:
        span.end(exc)
        raise


@invisible.hide_from_warnings
async def await_under(
    span: OpenAction, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``call_under`` for a coroutine function."""
    try:
        with under(span):
            return await fn(*args, **kwargs)
    except BaseException as exc:
        span.end(exc)
        raise


class suppress_tracing:
    """Within this block no action is traced in this context (work already traced natively)."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _suppressed.set(_suppressed.get() + 1)

    def __exit__(self, *exc_info: object) -> None:
        try:
            _suppressed.reset(self._token)
        except ValueError:
            _suppressed.set(0)


def _process_header(write_first: Callable[[bytes], None]) -> None:
    """First lines of every (re)opened file: the process record, then still-open actions."""
    from autotrace.runtime import process_info

    write_first(process_info.header_line(time.time()))
    for span in list(open_actions.values()):
        if span.pid == forks.pid:
            line = span.enter_line()
            if line:
                write_first(line)


writer.on_open.append(_process_header)


def _after_fork_in_child() -> None:
    global _id_prefix, _ids
    _id_prefix = f"{os.urandom(4).hex()}-{forks.pid}-"
    _ids = itertools.count(1)
    open_actions.clear()
    writer.after_fork_in_child()


forks.after_fork_in_child(_after_fork_in_child)
