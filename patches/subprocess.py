"""Child processes: every ``subprocess.Popen`` (and so run, call, check_output, os.popen,
asyncio / anyio / inspect subprocesses) is one ``Subprocess`` action, ``Docker`` when
argv[0] is docker, docker-compose or podman.

- enter: when ``Popen._execute_child`` has spawned the child (extra ``child_pid``: the
  record's own ``pid`` is the traced process); a spawn that raises
  (``FileNotFoundError``, ``PermissionError``) is one ``error`` action. Not
  ``Popen.__init__``: subprocess counts its own frames above ``__init__`` to place its
  EncodingWarning on the program's line, and a frame of ours there would stop the count.
- end: when the program observes the end, whichever way it does: ``wait`` / ``communicate``
  / ``__exit__`` (``Popen._wait``), ``poll`` / ``__del__`` (``Popen._internal_poll``), or,
  for asyncio and anyio children, which are never waited on through Popen, the
  transport's ``_process_exited``. Extra ``returncode``.
- timeout: ``TimeoutExpired`` from ``wait(timeout)`` / ``communicate(timeout)`` does not
  end the child, so the action stays open; if the child then ends by a signal (as
  ``subprocess.run(timeout=)`` kills it), the action ends as ``timeout``.
- a child nobody waits on: the watchdog's thread (autotrace.runtime.invisible: not in
  ``threading.enumerate()``; it runs while actions are open, and a child's action is
  open) looks every second with ``os.waitid(WNOWAIT)`` (which reaps nothing) and ends an
  action whose child has been gone for two looks (``ended_by: "watcher"``); also once at
  exit. No thread of its own: a program that starts many short children starts no
  thread for each.
- a Popen without a pid (a test that mocks ``_execute_child``) started no child: it is
  not traced, and the patch stays on.

The open action of each Popen is kept in a WeakKeyDictionary: the program's objects
get no new attribute.
"""

from __future__ import annotations

import atexit
import os
import shlex
import threading
import weakref

from autotrace import records
from autotrace.redact import redact_argv, redact_text
from autotrace.runtime import actions, forks, guard, registry
from autotrace.startup.patching import Patch, Wrap

TYPE_CHECKING = False  # typing costs milliseconds: every program imports subprocess
if TYPE_CHECKING:
    from typing import Any

DETAIL_WIDTH = 300  # a command line is cut here
DOCKER_PROGRAMS = records.DOCKER_PROGRAMS
WATCH_INTERVAL = 1.0  # seconds between two looks at children nobody waits on

_open: weakref.WeakKeyDictionary[Any, actions.OpenAction] = weakref.WeakKeyDictionary()
_timed_out: weakref.WeakSet[Any] = weakref.WeakSet()  # Popens that raised TimeoutExpired
_by_pid: dict[int, actions.OpenAction] = {}  # open actions by child pid, for the watcher
_lock = threading.Lock()


# --- details -------------------------------------------------------------------------


def _argv_of(popen: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if "args" in vars(popen):
        return popen.args
    return args[0] if args else kwargs.get("args", "")


def _program(argv: Any) -> str:
    """The basename of the program a command line runs."""
    if isinstance(argv, (str, bytes, os.PathLike)):
        text = os.fsdecode(argv)
        try:
            words = shlex.split(text)
        except ValueError:
            words = text.split()
        first = words[0] if words else ""
    else:
        items = _words(argv)
        first = items[0] if items else ""
    return os.path.basename(first)


def _words(argv: Any) -> list[str]:
    """An argv sequence as text words (a bad argument, which Popen rejects, as one word)."""
    try:
        return [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in argv]
    except TypeError:
        return [repr(argv)]


def describe(argv: Any) -> tuple[str, str]:
    """(action name, detail): the redacted, shell-joined command line, shortened."""
    if isinstance(argv, (str, bytes, os.PathLike)):
        detail = redact_text(os.fsdecode(argv))
    else:
        detail = shlex.join(redact_argv(_words(argv)))
    if len(detail) > DETAIL_WIDTH:
        detail = detail[: DETAIL_WIDTH - 3] + "..."
    name = records.DOCKER if _program(argv) in DOCKER_PROGRAMS else records.SUBPROCESS
    return name, detail


# --- bookkeeping ---------------------------------------------------------------------


def _opened(popen: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    pid = getattr(popen, "pid", None)
    if type(pid) is not int or pid <= 0:
        return  # no child was started (a mocked _execute_child): nothing to trace
    span = None
    if not actions.traces_nothing():
        name, detail = describe(_argv_of(popen, args, kwargs))
        span = actions.start_action(name, detail, extra={"child_pid": pid})
    if span is None:  # already traced as other work (inspect's own Subprocess, a sandbox exec)
        actions.note_child_process(pid)
        return
    span.child_pid = popen.pid
    with _lock:
        _open[popen] = span
        _by_pid[pid] = span


def _spawn_failed(
    popen: Any, args: tuple[Any, ...], kwargs: dict[str, Any], exc: BaseException
) -> None:
    name, detail = describe(_argv_of(popen, args, kwargs))
    span = actions.start_action(name, detail)
    if span is not None:
        span.end(exc)


def _ended(popen: Any, returncode: Any = None) -> None:
    """The program has seen ``popen`` end: write the action's end record once."""
    if returncode is None:
        returncode = popen.returncode
    if returncode is None:
        return
    with _lock:
        span = _open.pop(popen, None)
        if span is None:
            return
        if _by_pid.get(popen.pid) is span:
            del _by_pid[popen.pid]
        timed_out = popen in _timed_out
    event = (
        records.TIMEOUT if timed_out and isinstance(returncode, int) and returncode < 0 else None
    )
    span.end(event=event, extra={"returncode": returncode})


def _mark_timeout(popen: Any) -> None:
    with _lock:
        if popen in _open:
            _timed_out.add(popen)


# --- the watcher of children nobody waits on -------------------------------------------


def _exit_status(pid: int) -> tuple[bool, int | None]:
    """(ended, returncode) of our child ``pid``, without reaping it."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True, None  # already reaped by its owner (or not our child any more)
    except OSError:
        return False, None
    except (TypeError, ValueError, OverflowError):
        return True, None  # not a pid after all: stop watching it, keep the patch
    if info is None:
        return False, None
    if info.si_code == os.CLD_EXITED:
        return True, info.si_status
    return True, -info.si_status


def _sweep(seen: set[int], at_exit: bool = False) -> None:
    """End the actions of children that have been gone for two sweeps (at exit: one)."""
    with _lock:
        items = list(_by_pid.items())
    for pid, span in items:
        if span.ended:
            with _lock:
                if _by_pid.get(pid) is span:
                    del _by_pid[pid]
            continue
        ended, returncode = _exit_status(pid)
        if not ended:
            seen.discard(pid)
            continue
        if pid not in seen and not at_exit:
            seen.add(pid)  # give its owner a moment to observe it first
            continue
        seen.discard(pid)
        with _lock:
            if _by_pid.get(pid) is not span:
                continue
            del _by_pid[pid]
            for popen, open_span in list(_open.items()):
                if open_span is span:
                    del _open[popen]
        span.end(extra={"returncode": returncode, "ended_by": "watcher"})


_seen: set[int] = set()  # children seen gone by the last look


def _look() -> None:
    """One look at the children nobody waits on (every WATCH_INTERVAL, in the watchdog's
    thread)."""
    if not _by_pid:
        _seen.clear()
        return
    try:
        _sweep(_seen)
    except Exception as exc:  # never reaches the program
        PATCH.fail(f"watcher failed: {exc!r}")


def _at_exit() -> None:
    if _by_pid and hasattr(os, "waitid"):
        try:
            _sweep(set(), at_exit=True)
        except Exception:
            pass


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _open.clear()
    _by_pid.clear()
    _seen.clear()


# --- wrappers ------------------------------------------------------------------------


def _popen_spawn(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not PATCH.enabled:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        _guard(_spawn_failed, instance, args, kwargs, exc)
        raise
    _guard(_opened, instance, args, kwargs)
    return result


def _popen_wait(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        if type(exc).__name__ == "TimeoutExpired":
            _guard(_mark_timeout, instance)
        raise
    if instance in _open:
        _guard(_ended, instance)
    return result


def _popen_poll(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = wrapped(*args, **kwargs)
    if result is not None and instance in _open:
        _guard(_ended, instance)
    return result


def _process_exited(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        return wrapped(*args, **kwargs)
    finally:
        popen = getattr(instance, "_proc", None)
        if popen is not None and popen in _open:
            returncode = args[0] if args else kwargs.get("returncode")
            _guard(_ended, popen, returncode)


def _guard(fn: Any, *args: Any) -> None:
    """Run our bookkeeping for one Popen; an error skips that Popen, the patch stays on."""
    guard.call(fn, *args, on_error=lambda exc: PATCH.skip(f"{fn.__name__} failed: {exc!r}"))


def _on_import(module: Any) -> None:
    if module.__name__ == "subprocess":
        atexit.register(_at_exit)
        if hasattr(os, "waitid"):
            registry.every(WATCH_INTERVAL, _look)


def _on_remove() -> None:
    atexit.unregister(_at_exit)
    registry.stop_every(_look)


PATCH = Patch(
    name="subprocess",
    description="child processes (subprocess, os.popen, asyncio, anyio, inspect): Subprocess / Docker",
    wraps=[
        Wrap("subprocess", "Popen._execute_child", wrapper=_popen_spawn),
        Wrap("subprocess", "Popen._wait", wrapper=_popen_wait),
        Wrap("subprocess", "Popen.communicate", wrapper=_popen_wait),
        Wrap("subprocess", "Popen._internal_poll", wrapper=_popen_poll),
        Wrap(
            "asyncio.base_subprocess",
            "BaseSubprocessTransport._process_exited",
            wrapper=_process_exited,
        ),
    ],
    on_import=_on_import,
    on_remove=_on_remove,
    plain_functions=True,  # every program imports subprocess: no wrapt (tens of ms) for it
)

forks.after_fork_in_child(_after_fork_in_child)
