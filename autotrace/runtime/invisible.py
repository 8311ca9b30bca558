"""How the agent stays out of the program's view: its frames and its threads.

Frames. A wrapper of ours stands between the program and the library it calls, so a
warning the library issues "at its caller's line" (``stacklevel=2``, as deprecations
and subprocess's EncodingWarning do) would name our line, and the default filter
(which shows DeprecationWarning only for ``__main__``) would hide it. CPython's
warnings machinery (C and Python alike, 3.10 to 3.13) skips, while counting
``stacklevel``, every frame whose file name contains both "importlib" and
"_bootstrap": that is how the import system keeps its own frames out of warnings.
``hide_from_warnings`` gives a function's code object (and the code of the functions
defined inside it) such a file name: the real path plus a suffix, so tracebacks still
show the source line (linecache finds it through the module's loader). A warning then
names the program's line whatever the library's ``stacklevel``, as without us.

Threads. ``Background`` runs a loop in a thread started with ``_thread``, below the
``threading`` registry, so it is not in ``threading.enumerate()`` / ``active_count()``
nor in ``threading._dangling``. It runs only while it has work and leaves as soon as
it has none, so ``_thread._count()`` (what CPython's regrtest compares) is back where
it was when a test's work is done. It is stopped before ``os.fork()`` (and a
``preexec_fn`` spawn) and started again after it in the parent (from Python 3.12 on,
with the next work that comes: 3.13 counts threads after the fork hooks), so the
process forks with no thread of ours (Python 3.12+ warns when a process with more than
one OS thread forks); the child starts its own when it has work. Code that runs in these threads must
not call ``threading.current_thread()``, which would register a dummy thread:
``thread_name()`` is the way to name the current thread.
"""

from __future__ import annotations

import _thread
import atexit
import os
import select
import sys
import threading
import time
from _weakrefset import WeakSet  # what threading itself uses: loaded already
from types import CodeType

from autotrace.runtime import forks

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (every traced process pays for it)
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

# Contains "importlib" and "_bootstrap": warnings skip the frame when counting stacklevel.
HIDDEN_SUFFIX = " (autotrace wrapper, skipped by warnings like importlib._bootstrap)"


# -- frames hidden from warnings ------------------------------------------------------


def _hidden_code(code: CodeType) -> CodeType:
    if code.co_filename.endswith(HIDDEN_SUFFIX):
        return code
    consts = tuple(_hidden_code(c) if isinstance(c, CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=code.co_filename + HIDDEN_SUFFIX, co_consts=consts)


def hide_from_warnings(obj: T) -> T:
    """``obj`` (a function, or every function of a class) skipped by warnings' stacklevel.

    Functions defined inside are hidden too. Anything without Python code is left as is.
    """
    if isinstance(obj, type):
        for value in vars(obj).values():
            hide_from_warnings(getattr(value, "__func__", value))
            if isinstance(value, property):
                for accessor in (value.fget, value.fset, value.fdel):
                    if accessor is not None:
                        hide_from_warnings(accessor)
        return obj
    function: Any = getattr(obj, "__func__", obj)
    code = getattr(function, "__code__", None)
    if isinstance(code, CodeType):
        try:
            function.__code__ = _hidden_code(code)
        except (AttributeError, TypeError, ValueError):
            pass
    return obj


# -- threads below the registry -------------------------------------------------------

_ours: dict[int, str] = {}  # thread ident -> name, for our running background threads


def thread_name() -> str:
    """The current thread's name, without registering a dummy thread as current_thread() does."""
    ident = _thread.get_ident()
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    if thread is not None:
        return str(thread.name)
    return _ours.get(ident) or f"thread-{ident}"


def our_thread_idents() -> set[int]:
    """Idents of our running background threads (left out of stack snapshots)."""
    return set(_ours)


class Background:
    """A loop in a thread of ours that runs while it has work (see the module docstring).

    ``body(loop)`` runs in the thread and returns when there is no work left; it sleeps
    with ``loop.sleep(timeout, fds)`` and returns as soon as ``loop.stopping`` is set.
    ``has_work()`` is asked after the body returns, so that work that came in just then
    is not left without a thread.
    """

    def __init__(
        self, name: str, body: Callable[[Background], None], has_work: Callable[[], bool]
    ) -> None:
        self.name = name
        self._body = body
        self._has_work = has_work
        self._lock = _thread.allocate_lock()
        self.running = False
        self.stopping = False
        self._done: Any = None  # a lock held while the thread runs
        self.native_id: int | None = None  # the running thread's, for /proc and benchmarks
        self._wakeup = _thread.allocate_lock()  # released by wake(): a binary semaphore
        self._wakeup.acquire()
        self._wakeable = False  # the thread is in a sleep that wake() may interrupt
        self._woken = False  # ... and someone already did
        self._wake_r: int | None = None  # a pipe, made when sleep() is given descriptors
        self._wake_w: int | None = None
        _registry.add(self)

    def start(self) -> None:
        """Start the thread unless it runs (or the loop is stopped for a fork or exit)."""
        if self.running:
            return
        with self._lock:
            if self.running or self.stopping:
                return
            _register_exit_hook()
            done = _thread.allocate_lock()
            done.acquire()
            self._done = done
            self.running = True
            try:
                _thread.start_new_thread(self._run, (done,))
            except BaseException:
                self.running = False
                done.release()
                raise

    def _run(self, done: Any) -> None:
        ident = _thread.get_ident()
        _ours[ident] = self.name
        self.native_id = _thread.get_native_id() if hasattr(_thread, "get_native_id") else None
        try:
            while True:
                try:
                    self._body(self)
                except Exception as exc:  # never reaches the program
                    try:
                        sys.stderr.write(f"[autotrace] {self.name} stopped: {exc!r}\n")
                    except Exception:
                        pass
                    break
                with self._lock:
                    if self.stopping or not self._has_work():
                        self.running = False
                        break
        finally:
            _ours.pop(ident, None)
            done.release()
        # Work that came in between the last look and running=False found the thread
        # still running and started none: start one for it.
        if not self.stopping and self._has_work():
            self.start()

    def wake(self) -> None:
        """End the thread's current wakeable ``sleep``, or its next one if it is not asleep.

        Cheap when called often (at the end of every action): one system call at most per
        sleep, none while the thread is not in a wakeable sleep.
        """
        if not self.running or self._woken:
            return
        self._woken = True
        if self._wakeable:
            self._interrupt()

    def _interrupt(self) -> None:
        try:
            self._wakeup.release()
        except RuntimeError:
            pass  # already released
        fd = self._wake_w
        if fd is not None:
            try:
                os.write(fd, b"w")
            except OSError:
                pass  # the pipe is full: the thread is awake anyway

    def sleep(self, timeout: float, fds: tuple[int, ...] = (), wakeable: bool = True) -> list[int]:
        """Wait up to ``timeout`` seconds for one of ``fds``, a ``stop``, or (if ``wakeable``)
        a ``wake``; return the ready ``fds``."""
        timeout = max(0.0, timeout)
        # Flag first, then look: a wake() in between either saw the flag (and interrupts
        # the wait below) or set _woken before the look.
        self._wakeable = wakeable
        try:
            if wakeable and self._woken:
                return []
            if not fds:
                self._wakeup.acquire(timeout=timeout)
                return []
            if self._wake_r is None:
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_w, False)
            self._wakeup.acquire(blocking=False)  # an earlier wake-up: the pipe says it too
            poller = select.poll()  # not select(): a descriptor may be above FD_SETSIZE
            wake = self._wake_r
            poller.register(wake, select.POLLIN)
            for fd in fds:
                poller.register(fd, select.POLLIN)
            ready = [fd for fd, _ in poller.poll(timeout * 1000)]
            if wake in ready:
                try:
                    os.read(wake, 512)
                except OSError:
                    pass
            return [fd for fd in ready if fd != wake]
        finally:
            self._wakeable = False
            self._woken = False

    def stop(self, timeout: float = 1.0, until_os_thread_gone: bool = True) -> bool:
        """Stop the thread and wait until it is gone (True if it was running); with
        ``until_os_thread_gone``, until the kernel has let it go too (what a fork counts)."""
        with self._lock:
            self.stopping = True
            was_running = self.running
            done = self._done
        if not was_running or done is None:
            return False
        self._interrupt()
        if done.acquire(timeout=timeout):
            done.release()
            if until_os_thread_gone:
                _wait_os_thread_gone(self.native_id, deadline=time.monotonic() + 0.2)
        return True

    def resume(self, start: bool = True) -> None:
        """Allow starting again (and, if ``start``, start now if there is work)."""
        with self._lock:
            self.stopping = False
        if start and self._has_work():
            self.start()

    def reset_in_child(self) -> None:
        """After fork, in the child: no thread, a fresh lock, a pipe of its own."""
        self._lock = _thread.allocate_lock()
        self.running = False
        self.stopping = False
        self._done = None
        self._wakeup = _thread.allocate_lock()
        self._wakeup.acquire()
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_r = self._wake_w = None


def _wait_os_thread_gone(native_id: int | None, deadline: float) -> None:
    """On Linux, wait until the kernel has let the thread go (what os.fork counts)."""
    if native_id is None or not sys.platform.startswith("linux"):
        return
    path = f"/proc/self/task/{native_id}"
    delay = 0.0001
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.005)


_registry: WeakSet[Background] = WeakSet()  # every loop, for the fork and exit hooks


def _before_fork() -> None:
    for loop in list(_registry):
        try:
            loop.stop()
        except Exception:
            pass


# Python 3.13 counts the process's threads for its fork warning after the after-fork
# hooks have run (3.12.1 before them): from 3.12 on, a thread started in the hook could
# be counted, so the loops start again with the next work that comes (an action opened
# or ended, a child spawned or seen to end) instead.
_RESTART_IN_FORK_HOOK = sys.version_info < (3, 12)


def _after_fork_in_parent() -> None:
    for loop in list(_registry):
        try:
            loop.resume(start=_RESTART_IN_FORK_HOOK)
        except Exception:
            pass


def _after_fork_in_child() -> None:
    _ours.clear()
    for loop in list(_registry):
        try:
            loop.reset_in_child()
        except Exception:
            pass


def stop_all() -> None:
    """Stop every background loop for good (at exit: nothing of ours runs during shutdown;
    no fork follows, so the kernel's last step of each thread is not waited for)."""
    for loop in list(_registry):
        try:
            loop.stop(timeout=0.5, until_os_thread_gone=False)
        except Exception:
            pass


_exit_hook_registered = False


def _register_exit_hook() -> None:
    # Registered when the first loop starts, so it runs before the exit hooks registered
    # earlier (atexit runs the last registered first): the program's and inspect's.
    global _exit_hook_registered
    if not _exit_hook_registered:
        _exit_hook_registered = True
        atexit.register(stop_all)


forks.before_fork(_before_fork)
forks.after_fork_in_parent(_after_fork_in_parent)
forks.after_fork_in_child(_after_fork_in_child)
