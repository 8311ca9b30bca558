"""Child programs of the hardening suites, run as ``python torture_child.py MODE ...``.

Each mode is a small traced program: the tests start it in a fresh interpreter with
AUTOTRACE_DIR pointing at a test directory and judge its trace files and output.

- ``torture``: threads, asyncio tasks and processes (fork and spawn) tracing at once.
- ``spin``: threads writing actions (some with very long lines) until killed.
- ``program``: a deterministic computation, traced or plain, for the fault suite.
- ``forks``: os.fork from a thread, and multiprocessing fork/spawn/forkserver children.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import hashlib
import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from autotrace.runtime import actions
from autotrace.runtime.actions import start_action, trace_action

if os.environ.get("TORTURE_PLAIN") == "1":  # the benchmark's baseline: the same work untraced

    def trace_action(action: str, detail: str = "", **_: Any) -> Any:  # type: ignore[no-redef]
        return _Untraced()


class _Untraced:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


ACTION = "Torture"


def units(n: int) -> int:
    """How many actions ``work(n)`` traces: one per step, plus a nested one every 10th."""
    return n + (n + 9) // 10


def _wait_for(path: Path, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not path.exists():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.001)


def work(label: str, n: int) -> int:
    """Trace ``units(n)`` actions with every outcome but cancel; returns the count."""
    for i in range(n):
        try:
            with trace_action(ACTION, f"{label} step {i}"):
                if i % 10 == 0:
                    with trace_action(ACTION, f"{label} nested {i}"):
                        pass
                if i % 7 == 3:
                    raise ValueError(f"step {i} failed")
                if i % 13 == 5:
                    raise TimeoutError(f"step {i} timed out")
        except (ValueError, TimeoutError):
            pass
    return units(n)


def process_main(label: str, n: int, go: str) -> None:
    """A multiprocessing child of ``torture``: waits for the start signal, then works."""
    _wait_for(Path(go))
    work(label, n)


async def task_work(label: str, n: int) -> int:
    for i in range(n):
        async with trace_action(ACTION, f"{label} async {i}"):
            await asyncio.sleep(0)
    return n


async def cancelled_task(started: asyncio.Event) -> None:
    async with trace_action(ACTION, "waits forever"):
        started.set()
        await asyncio.Event().wait()


async def async_part(tasks: int, per_task: int, cancelled: int) -> int:
    count = sum(await asyncio.gather(*(task_work(f"task {t}", per_task) for t in range(tasks))))
    events = [asyncio.Event() for _ in range(cancelled)]
    waiting = [asyncio.create_task(cancelled_task(e)) for e in events]
    for e in events:
        await e.wait()
    for w in waiting:
        w.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    return count + cancelled


def torture(args: argparse.Namespace) -> None:
    directory = Path(os.environ["AUTOTRACE_DIR"])
    go = directory / "go"
    procs = []
    for i, method in enumerate(m for m in args.procs.split(",") if m):
        ctx = multiprocessing.get_context(method)
        p = ctx.Process(target=process_main, args=(f"proc {i} {method}", args.per_proc, str(go)))
        p.start()
        procs.append(p)
    counts: list[int] = []
    barrier = threading.Barrier(args.threads + 1)

    def thread_main(t: int) -> None:
        barrier.wait()
        counts.append(work(f"thread {t}", args.per_thread))

    threads = [threading.Thread(target=thread_main, args=(t,)) for t in range(args.threads)]
    for t in threads:
        t.start()
    go.parent.mkdir(parents=True, exist_ok=True)
    go.touch()
    started = time.monotonic()
    barrier.wait()
    counts.append(asyncio.run(async_part(args.tasks, args.per_task, args.cancelled)))
    for t in threads:
        t.join()
    codes = []
    for p in procs:
        p.join(120)
        codes.append(p.exitcode)
    counts.extend(units(args.per_proc) for _ in procs)
    elapsed = time.monotonic() - started
    print(json.dumps({"expected_actions": sum(counts), "exitcodes": codes, "seconds": elapsed}))


def spin(args: argparse.Namespace) -> None:
    """Write actions from several threads until killed; every 50th line is very long."""
    big = "x" * args.big

    def loop(t: int) -> None:
        i = 0
        while True:
            detail = big if i % 50 == 49 else f"spin {t} {i}"
            with trace_action(ACTION, detail):
                pass
            i += 1

    for t in range(args.threads):
        threading.Thread(target=loop, args=(t,), daemon=True).start()
    threading.Event().wait()


class _FaultyOs:
    """autotrace.runtime.writer's view of ``os``: ``call`` fails with ``code`` after ``budget`` calls.

    The seam for faults the machine cannot make (a full disk without a mount).
    """

    def __init__(self, call: str, code: int, budget: int) -> None:
        self._call, self._code, self._budget = call, code, budget

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name != self._call:
            return real

        def failing(*args: Any, **kwargs: Any) -> Any:
            self._budget -= 1
            if self._budget < 0:
                raise OSError(self._code, os.strerror(self._code))
            return real(*args, **kwargs)

        return failing


def program(args: argparse.Namespace) -> None:
    """A deterministic computation with traced steps; prints its results.

    With ``--plain`` the same steps run without any tracing (the baseline).
    """
    if args.os_fault:
        import autotrace.runtime.writer

        call, code, budget = args.os_fault.split(":")
        fault = _FaultyOs(call, getattr(errno, code), int(budget))
        autotrace.runtime.writer.os = fault  # type: ignore[assignment]

    def step(label: str) -> Any:
        return contextlib.nullcontext() if args.plain else trace_action(ACTION, label)

    results: list[str] = []
    outer = None if args.plain else start_action(ACTION, "outer (held open)")
    digest = hashlib.sha256()
    for i in range(args.steps):
        if i == args.pause_at:
            print(f"PAUSED {i}", flush=True)
            sys.stdin.readline()  # the test deletes or rotates files meanwhile
            if args.until_exists:
                # Go on (traced) until the writer has noticed and written a new file.
                end = time.monotonic() + 20
                target = Path(args.until_exists.replace("PID", str(os.getpid())))
                while not target.exists() and time.monotonic() < end:
                    with step("waiting for the writer to notice"):
                        time.sleep(0.01)
        try:
            with step(f"step {i} " + "y" * args.pad):
                digest.update(str(i * i).encode())
                if i % 9 == 4:
                    raise KeyError(i)
            results.append(digest.hexdigest()[:8])
        except KeyError as exc:
            results.append(f"error {exc!r}")
    if outer is not None:
        outer.end()
    print(json.dumps({"results": results, "digest": digest.hexdigest()}))


def _child_work(label: str, out: str) -> None:
    """A forked/spawned child: a few actions and a watched import, then reports its pid."""
    with trace_action(ACTION, f"{label} child"):
        work(label, 50)
        import wave  # watched by a post-import hook: takes the hooks' lock

        assert wave.__name__ == "wave"
    Path(out).write_text(str(os.getpid()))


def forks(args: argparse.Namespace) -> None:
    """Fork while another thread holds an open action and writes hard."""
    directory = Path(os.environ["AUTOTRACE_DIR"])
    stop = threading.Event()
    holding = threading.Event()

    def busy() -> None:
        with trace_action(ACTION, "held by the busy thread"):
            holding.set()
            i = 0
            while not stop.is_set():
                with trace_action(ACTION, f"busy {i}"):
                    pass
                i += 1

    from autotrace.startup import hooks

    hooks.when_imported("wave", lambda module: None)
    busy_thread = threading.Thread(target=busy)
    busy_thread.start()
    holding.wait()
    # Another thread holds the writer's and the import hooks' locks while we fork.
    locked, release = threading.Event(), threading.Event()

    def holder() -> None:
        with actions.writer._lock, hooks._lock:
            locked.set()
            release.wait()

    holder_thread = threading.Thread(target=holder)
    if args.hold_locks:
        holder_thread.start()
        locked.wait()
    children: dict[str, int] = {}
    forked: list[int] = []

    def forker(n: int) -> None:
        for k in range(n):
            with trace_action(ACTION, f"forker before fork {k}"):
                pid = os.fork()
                if pid == 0:
                    try:
                        _child_work(f"os.fork {k}", str(directory / f"child-osfork-{k}"))
                        code = 0
                    except BaseException:
                        code = 1
                    os._exit(code)
                forked.append(pid)

    fork_thread = threading.Thread(target=forker, args=(args.os_forks,))
    fork_thread.start()
    fork_thread.join()
    release.set()
    codes = {}
    for pid in forked:
        _, status = os.waitpid(pid, 0)
        codes[f"os.fork {pid}"] = os.waitstatus_to_exitcode(status)
    with trace_action(ACTION, "parent holds an action across multiprocessing"):
        for method in args.methods.split(","):
            ctx = multiprocessing.get_context(method)
            p = ctx.Process(target=_child_work, args=(method, str(directory / f"child-{method}")))
            p.start()
            p.join(60)
            codes[method] = p.exitcode
            children[method] = p.pid or 0
    stop.set()
    busy_thread.join()
    print(json.dumps({"codes": codes, "parent": os.getpid(), "forked": forked}))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("torture")
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--per-thread", type=int, default=10_000)
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--per-task", type=int, default=20)
    p.add_argument("--cancelled", type=int, default=20)
    p.add_argument("--procs", default="fork,fork,spawn,spawn")
    p.add_argument("--per-proc", type=int, default=5000)
    p = sub.add_parser("spin")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--big", type=int, default=256 * 1024)
    p = sub.add_parser("program")
    p.add_argument("--plain", action="store_true")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--pad", type=int, default=0)
    p.add_argument("--os-fault", default="", help="CALL:ERRNO:AFTER, e.g. write:ENOSPC:40")
    p.add_argument("--pause-at", type=int, default=-1)
    p.add_argument("--until-exists", default="")
    p = sub.add_parser("forks")
    p.add_argument("--os-forks", type=int, default=3)
    p.add_argument("--methods", default="fork,spawn,forkserver")
    p.add_argument("--hold-locks", action="store_true")
    args = parser.parse_args()
    {"torture": torture, "spin": spin, "program": program, "forks": forks}[args.mode](args)
    _ = actions  # the writer lives there; imported for its side effects on fork


if __name__ == "__main__":
    main()
