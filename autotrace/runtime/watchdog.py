"""The watchdog: names the action that is stuck and the line it waits on.

A thread of ours (autotrace.runtime.invisible: below the ``threading`` registry, stopped
around ``os.fork``) that runs while actions are open: the first action starts it
(``actions`` checks one flag), and it leaves LINGER seconds after the last one ends.
It sleeps until the earliest moment an open action could cross the stuck threshold
(``AUTOTRACE_STUCK_AFTER``), so while nothing is stuck it wakes once per threshold
and does nothing else. For an action older than the threshold it writes a
``[autotrace] stuck action`` record with the action's ``trace_id``, its age and the
Python stack where it waits: the owning thread's frames for synchronous code, the
owning asyncio task's coroutine chain (down to the innermost await) for async code.
The same action is reported again at doubling ages (T, 2T, 4T, ...).

The same thread answers ``inspect-trace stacks PID`` on a Unix socket (abstract
namespace on Linux), so no signal of the program is taken over. It binds the socket once
an action has been open ``LISTEN_AFTER`` (0.2 s); the socket then stays bound while no
thread runs, and a request made then is answered when the next action opens.

Stacks carry file, line, function and the (redacted) source line: never a value
of a local variable. Frames of autotrace and wrapt are left out.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from autotrace import config
from autotrace.channel import (
    CANCEL_VERB,
    LISTEN_AFTER,
    MAX_REQUEST,
    REQUEST,
    peer_credentials,
    socket_address,
)
from autotrace.runtime import forks, guard, invisible, origins, registry

# socket, json, struct and typing are imported by the watchdog thread when it needs
# them, not on the path of the program's first action.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from types import FrameType
    from typing import Any

    from autotrace.runtime.actions import OpenAction

MAX_FRAMES = 40  # innermost frames kept per stack
# Seconds the thread stays once no action is open: back-to-back actions reuse it, and a
# thread-leak check that polls after a test (CPython's regrtest: first after 10 ms) finds
# it gone. (50 ms made each asyncio subprocess test of CPython's suite 80 ms longer.)
LINGER = 0.005
STUCK_MESSAGE = "stuck action"
SNAPSHOT_MESSAGE = "stacks snapshot"
_AGENT_MODULES = ("autotrace", "wrapt")


# -- stacks -------------------------------------------------------------------


def _is_agent_frame(frame: FrameType) -> bool:
    name = frame.f_globals.get("__name__") or ""
    return isinstance(name, str) and (
        name in _AGENT_MODULES or name.startswith(("autotrace.", "wrapt."))
    )


def _frame_entry(frame: FrameType) -> dict[str, Any]:
    code = frame.f_code
    lineno = frame.f_lineno or code.co_firstlineno
    return {
        "file": code.co_filename,
        "line": lineno,
        "function": getattr(code, "co_qualname", code.co_name),
        "code": _source_line(code.co_filename, lineno),
    }


def _source_line(filename: str, lineno: int) -> str:
    try:
        import linecache

        from autotrace.redact import redact_text

        return redact_text(linecache.getline(filename, lineno).strip())[:200]
    except Exception:
        return ""


def _entries(frames: list[FrameType]) -> list[dict[str, Any]]:
    """Frames (outermost first) as entries, without agent frames, innermost MAX_FRAMES."""
    kept = [f for f in frames if not _is_agent_frame(f)]
    return [_frame_entry(f) for f in kept[-MAX_FRAMES:]]


def thread_frames(thread_id: int | None) -> list[FrameType]:
    """The frames a thread is executing now, outermost first (empty if the thread is gone)."""
    frame = sys._current_frames().get(thread_id) if thread_id is not None else None
    frames: list[FrameType] = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    return frames


def coroutine_frames(task: Any) -> list[FrameType]:
    """A suspended task's await chain, outermost first, down to the innermost awaiting frame.

    Follows cr_await / gi_yieldfrom / ag_await inside a task, then the future the task
    waits on (``_fut_waiter``): into another task it awaits, or into the first unfinished
    child of an ``asyncio.gather`` it awaits.
    """
    frames: list[FrameType] = []
    tasks_seen: set[int] = set()
    while task is not None and id(task) not in tasks_seen and len(tasks_seen) < 100:
        tasks_seen.add(id(task))
        try:
            frames.extend(_await_chain(task.get_coro()))
            task = _task_behind(getattr(task, "_fut_waiter", None))
        except Exception:  # a task or future of another kind: the chain ends here
            break
    return frames


def _await_chain(node: Any) -> list[FrameType]:
    """The frames of one coroutine and what it awaits, down to a future (outermost first)."""
    frames: list[FrameType] = []
    seen: set[int] = set()
    while node is not None and id(node) not in seen and len(seen) < 1000:
        seen.add(id(node))
        nxt = None
        for frame_attr, await_attr in (
            ("cr_frame", "cr_await"),
            ("gi_frame", "gi_yieldfrom"),
            ("ag_frame", "ag_await"),
        ):
            if hasattr(node, frame_attr):
                frame = getattr(node, frame_attr)
                if frame is not None:
                    frames.append(frame)
                nxt = getattr(node, await_attr, None)
                break
        node = nxt
    return frames


def _task_behind(future: Any) -> Any:
    """The task a waiting task is held up by: the task it awaits, or gather's first unfinished child."""
    if future is None:
        return None
    if callable(getattr(future, "get_coro", None)):
        return future
    for child in getattr(future, "_children", None) or ():
        if not child.done():
            return child if callable(getattr(child, "get_coro", None)) else None
    return None


def action_frames(span: OpenAction) -> tuple[list[FrameType], str]:
    """Where an open action waits, and how that was found ('task', 'thread' or 'none')."""
    thread = thread_frames(span.thread_id)
    task = span.task
    if task is not None:
        chain = coroutine_frames(task)
        # A task that runs right now (CPU-bound coroutine) is best seen on its thread.
        if chain and not any(f is chain[0] for f in thread):
            return chain, "task"
        if not chain and not thread:
            return [], "none"
    return thread, "thread" if thread else "none"


_stdlib_dirs: tuple[str, ...] | None = None

PROGRAM, INSTALLED, STDLIB = "program", "installed", "stdlib"


def frame_kind(filename: str) -> str:
    """Whose code a file is: the stdlib's, an installed package's, or the program's own."""
    global _stdlib_dirs
    if "/site-packages/" in filename or "/dist-packages/" in filename:
        return INSTALLED
    if filename.startswith("<"):  # <frozen ...>, <string>
        return STDLIB
    if _stdlib_dirs is None:
        import sysconfig

        paths = sysconfig.get_paths()
        dirs = {paths.get(k, "") for k in ("stdlib", "platstdlib")}
        dirs |= {os.path.dirname(os.__file__), os.path.dirname(threading.__file__)}
        _stdlib_dirs = tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d) + tuple(
            os.path.join(d, "") for d in dirs if d
        )
    return STDLIB if filename.startswith(_stdlib_dirs) else PROGRAM


def where_of(stack: list[dict[str, Any]]) -> str:
    """The line to blame: the innermost frame of the program itself, else the innermost
    frame of an installed package (a pip-installed agent, inspect's own tools), else the
    innermost frame. Agent frames (autotrace, wrapt) are not in ``stack``."""
    if not stack:
        return ""
    kinds = [frame_kind(str(e.get("file", ""))) for e in stack]
    for wanted in (PROGRAM, INSTALLED):
        for entry, kind in zip(reversed(stack), reversed(kinds), strict=True):
            if kind == wanted:
                return format_frame(entry)
    return format_frame(stack[-1])


def format_frame(entry: dict[str, Any]) -> str:
    """``file:line in function``."""
    return f"{entry.get('file')}:{entry.get('line')} in {entry.get('function')}"


MAX_HOPS = 4  # callers followed back across hand-overs (a worker of a worker of ...)


def caller_frames(span: OpenAction) -> tuple[list[FrameType], str | None]:
    """The frames of whoever waits for ``span``'s work in another thread (outermost caller
    first), and that thread's name; ([], None) when the work was not handed over."""
    worker = thread_frames(span.thread_id)
    if span.task is not None:  # a task of a loop that runs work for a caller elsewhere
        origin = span.origin or origins.caller_of(worker)
    else:  # the executor's work item is the nearest hand-over
        origin = origins.caller_of(worker) or span.origin
    frames: list[FrameType] = []
    name = None
    seen: set[int] = set()
    while origin is not None and id(origin) not in seen and len(seen) < MAX_HOPS:
        seen.add(id(origin))
        worker = thread_frames(origin.thread_id)
        waiting = coroutine_frames(origin.task) if origin.task is not None else []
        if not waiting or any(f is waiting[0] for f in worker):
            waiting = worker  # a task running right now is seen on its thread
        frames = waiting + frames
        name = name or origin.thread_name
        origin = origin.parent or origins.caller_of(worker)
    return frames, name


def action_stack(span: OpenAction, now_mono: float | None = None) -> dict[str, Any]:
    """An open action with its stack, as the stuck record and the snapshot carry it."""
    frames, source = action_frames(span)
    stack = _entries(frames)
    age = (now_mono if now_mono is not None else time.monotonic()) - span.start_mono
    entry = {
        "trace_id": span.trace_id,
        "stuck_action": span.action,
        "detail": span.detail,
        "age": round(age, 3),
        "start_time": span.start_time,
        "parent_id": span.parent_id,
        "thread": span.thread_name,
        "task": span.task_name,
        "stack_source": source,
        "stack": stack,
        "where": where_of(stack),
    }
    if span.child_pid is not None:
        entry["child_pid"] = span.child_pid
    try:
        callers, caller_thread = caller_frames(span)
    except Exception:  # a hand-over we cannot read: the action's own stack still counts
        callers, caller_thread = [], None
    if callers:
        caller_stack = _entries(callers)
        entry["caller_thread"] = caller_thread
        entry["caller_stack"] = caller_stack
        entry["caller_where"] = where_of(caller_stack)
    return entry


def snapshot() -> dict[str, Any]:
    """Every open action of this process with its stack, and every thread's stack."""
    now = time.monotonic()
    pid = os.getpid()
    spans = [s for s in list(registry.open_actions.values()) if s.pid == pid]
    spans.sort(key=lambda s: s.start_mono)
    ours = invisible.our_thread_idents()
    names = {t.ident: t for t in threading.enumerate()}
    threads = []
    for ident in list(sys._current_frames()):
        if ident in ours:
            continue
        thread = names.get(ident)
        stack = _entries(thread_frames(ident))
        threads.append(
            {
                "thread_id": ident,
                "name": thread.name if thread is not None else f"thread-{ident}",
                "daemon": thread.daemon if thread is not None else None,
                "stack": stack,
                "where": where_of(stack),
            }
        )
    return {
        "pid": pid,
        "time": time.time(),
        "trace_file": str(registry.writer.path) if registry.writer.path else None,
        "actions": [action_stack(s, now) for s in spans],
        "threads": threads,
    }


# -- the thread ---------------------------------------------------------------


def stuck_after() -> float:
    """Seconds an action may stay open before it is reported (<= 0: never)."""
    return config.stuck_after()


class Watchdog:
    """Reports stuck actions of this process and answers stack requests."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._next_age: dict[str, float] = {}  # trace_id -> age of its next report
        self._sock: Any = None  # a _socket.socket listening, once listening
        self._listened = False
        self.loop = invisible.Background("autotrace-watchdog", self.run, _has_work)
        self.reports = 0
        self.checks = 0  # wake-ups (measured by benchmarks/bench_watchdog.py)

    def check(self, now: float) -> float:
        """Report the actions due at ``now`` (monotonic); return seconds until the next is due."""
        self.checks += 1
        threshold = self.threshold
        if threshold <= 0:
            return 3600.0
        wake = now + threshold
        due = self._next_age
        pid = os.getpid()
        for span in list(registry.open_actions.values()):
            if span.pid != pid or span.ended:
                continue
            next_age = due.get(span.trace_id, threshold)
            age = now - span.start_mono
            if age >= next_age:
                self.report(span, now)
                while next_age <= age:
                    next_age *= 2
                due[span.trace_id] = next_age
            wake = min(wake, span.start_mono + next_age)
        if len(due) > 2 * len(registry.open_actions) + 16:
            self._next_age = {k: v for k, v in due.items() if k in registry.open_actions}
        # A floor on the sleep bounds the wake-ups when many actions end just short
        # of the threshold; a report is at most threshold/10 (1 s at most) late.
        return max(min(1.0, threshold / 10), wake - now)

    def report(self, span: OpenAction, now: float) -> None:
        """Write one ``[autotrace] stuck action`` record for ``span``."""
        entry = action_stack(span, now)
        message = (
            f"{STUCK_MESSAGE}: {span.action}: {span.detail} open {entry['age']:.1f} s"
            + (f", called from {entry['caller_where']}" if entry.get("caller_where") else "")
            + (f", waiting at {entry['where']}" if entry["where"] else "")
        )
        registry.agent_message(message, event_kind="stack", **entry)
        self.reports += 1

    # The listener lives in the same thread: poll() on its socket is the sleep.

    def _listen(self) -> None:
        self._listened = True
        try:
            # The C module, not socket.py (which costs a short process milliseconds,
            # most of them enum conversions): a request, when one comes, wraps the
            # accepted descriptor in a socket.socket.
            import _socket

            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            address = socket_address(os.getpid())
            if isinstance(address, str) and not address.startswith("\0"):
                try:
                    os.unlink(address)
                except OSError:
                    pass
            sock.bind(address)
            if isinstance(address, str) and not address.startswith("\0"):
                os.chmod(address, 0o600)
            sock.listen(4)
            sock.setblocking(False)
            self._sock = sock
        except OSError:
            self._sock = None

    def serve_one(self) -> None:
        """Answer one ``stacks`` request: the snapshot as JSON, also written to the trace."""
        assert self._sock is not None
        try:
            fd, _ = self._sock._accept()
        except OSError:
            return
        import socket

        with socket.socket(fileno=fd) as conn:
            try:
                conn.settimeout(2.0)
                if not _same_user(conn):
                    return
                request = conn.recv(MAX_REQUEST)
                if request.startswith(CANCEL_VERB):
                    _answer_cancel(conn, request)
                    return
                if not request.startswith(REQUEST.strip()):
                    return
                import json

                snap = snapshot()
                registry.agent_message(
                    f"{SNAPSHOT_MESSAGE}: {len(snap['actions'])} open actions, "
                    f"{len(snap['threads'])} threads",
                    event_kind="snapshot",
                    actions=snap["actions"],
                    threads=snap["threads"],
                )
                conn.sendall(json.dumps(snap, default=str).encode() + b"\n")
            except OSError:
                pass

    def run(self, loop: invisible.Background) -> None:
        """The thread's body: report, answer, sleep; return once no action has been open for LINGER.

        It starts listening once an action has been open LISTEN_AFTER (short actions,
        most of them, cost no socket); the socket then stays bound while no thread
        runs: a request made then is answered when the next action starts the thread
        again.
        """
        idle_since: float | None = None
        for entry in registry.periodic:
            entry[2] = None  # first due an interval after this start
        while not loop.stopping:
            now = time.monotonic()
            if _has_work():
                idle_since = None
                timeout = min(self.check(now), _run_periodic(now))
                if not self._listened:
                    listen_in = LISTEN_AFTER - _oldest_age(now)
                    if listen_in <= 0:
                        self._listen()
                    else:
                        timeout = min(timeout, listen_in)
            else:
                idle_since = now if idle_since is None else idle_since
                if now - idle_since >= LINGER:
                    return
                timeout = LINGER - (now - idle_since)
            sock = self._sock
            # Woken when the last open action ends (to leave soon), not while lingering.
            fds = (sock.fileno(),) if sock is not None else ()
            if loop.sleep(timeout, fds, wakeable=idle_since is None):
                self.serve_one()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def _same_user(conn: socket.socket) -> bool:
    """Only the same user (or root) may read this process's stacks or cancel its actions."""
    creds = peer_credentials(conn)
    if creds is None:
        return True  # the socket file is 0600 there
    return creds[1] in (os.getuid(), 0)


def _answer_cancel(conn: socket.socket, request: bytes) -> None:
    """Answer ``cancel <trace_id>``: JSON lines, a first one once acted on, then the outcome."""
    trace_id = request[len(CANCEL_VERB) :].strip().decode("ascii", "replace")

    import json

    def send(answer: dict[str, Any]) -> None:
        try:
            conn.sendall(json.dumps(answer, default=str).encode() + b"\n")
        except OSError:
            pass

    try:
        from autotrace.runtime import cancel

        answer = cancel.cancel_action(trace_id, send)
    except Exception as exc:
        answer = {"ok": False, "message": f"cancel failed inside the process: {exc!r}"}
    send(answer)


def _run_periodic(now: float) -> float:
    """Run the jobs of ``registry.every`` that are due; seconds until the next one is."""
    wait = 3600.0
    for entry in list(registry.periodic):
        interval, job, due = entry
        if due is None:
            entry[2] = due = now + interval
        elif now >= due:
            guard.call(job)  # a job reports its own trouble; the watchdog goes on
            entry[2] = due = time.monotonic() + interval
        wait = min(wait, due - now)
    return max(0.0, wait)


def _has_work() -> bool:
    return bool(registry.open_actions)


def _oldest_age(now: float) -> float:
    """Seconds the oldest action open in this process has been open."""
    pid = os.getpid()
    starts = [s.start_mono for s in list(registry.open_actions.values()) if s.pid == pid]
    return now - min(starts) if starts else 0.0


_lock = threading.Lock()
_watchdog: Watchdog | None = None


def start() -> Watchdog | None:
    """Start this process's watchdog thread unless it runs (called when an action opens)."""
    global _watchdog
    dog = _watchdog
    if dog is None:
        with _lock:
            if _watchdog is None:
                _watchdog = Watchdog(stuck_after())
            dog = _watchdog
    dog.loop.start()
    return dog


def current() -> Watchdog | None:
    """This process's watchdog, if one was started."""
    return _watchdog


def _after_fork_in_child() -> None:
    # The thread did not survive the fork (autotrace.runtime.invisible resets its loop); the
    # inherited socket must not answer for the child, which binds its own when it starts.
    global _lock
    _lock = threading.Lock()
    dog = _watchdog
    if dog is not None:
        dog.close()
        dog._listened = False
        dog._next_age.clear()


forks.after_fork_in_child(_after_fork_in_child)
