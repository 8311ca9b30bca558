"""The one registry of fork hooks, and the one cache of this process's pid.

A child of ``os.fork()`` keeps the parent's memory but not its threads: locks a parent
thread held stay held, descriptors and open actions are the parent's. Each module that
keeps such state registers one hook here (``after_fork_in_child``); the registry runs
them in registration order, each guarded, after updating ``pid``. ``pid`` is read on
the hot path instead of calling ``os.getpid()`` (a system call) for every line. Our
background threads stop around a fork (``before_fork``, ``after_fork_in_parent``), so
that the program's fork sees the threads it would see without us.
"""

from __future__ import annotations

import os

from autotrace.runtime import guard

TYPE_CHECKING = False  # typing costs milliseconds at start-up (hooks.py registers here)
if TYPE_CHECKING:
    from collections.abc import Callable

pid = os.getpid()  # this process's pid, current in a forked child too

_hooks: list[Callable[[], None]] = []
_before: list[Callable[[], None]] = []
_in_parent: list[Callable[[], None]] = []


def after_fork_in_child(hook: Callable[[], None]) -> None:
    """Run ``hook()`` in the child after every fork (once per hook, whatever the calls)."""
    if hook not in _hooks:
        _hooks.append(hook)


def before_fork(hook: Callable[[], None]) -> None:
    """Run ``hook()`` in the parent just before every fork (the last registered first)."""
    if hook not in _before:
        _before.append(hook)


def after_fork_in_parent(hook: Callable[[], None]) -> None:
    """Run ``hook()`` in the parent just after every fork (in registration order)."""
    if hook not in _in_parent:
        _in_parent.append(hook)


def _run_hooks() -> None:
    global pid
    pid = os.getpid()
    for hook in list(_hooks):
        guard.call(hook, on_error=_hook_failed)


def _run_before() -> None:
    for hook in reversed(list(_before)):
        guard.call(hook, on_error=_hook_failed)


def _run_in_parent() -> None:
    for hook in list(_in_parent):
        guard.call(hook, on_error=_hook_failed)


def _hook_failed(exc: Exception) -> None:
    guard.warn(f"after-fork hook failed: {exc!r}")


os.register_at_fork(before=_run_before, after_in_parent=_run_in_parent, after_in_child=_run_hooks)
