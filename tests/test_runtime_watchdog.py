"""The watchdog in this process: stuck records, their stacks, doubling, snapshots."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import wait_for

from autotrace.cli.main import main
from autotrace.read.snapshot import request_snapshot
from autotrace.runtime import actions, watchdog
from autotrace.runtime.watchdog import Watchdog

THIS_FILE = os.path.abspath(__file__)


def qualname(name: str) -> str:
    """A function's name as stacks show it: qualified from 3.11 (co_qualname), bare before."""
    return name if sys.version_info >= (3, 11) else name.rsplit(".", 1)[-1]


def marker_line(marker: str) -> int:
    """The line of this file that ends with ``# <marker>``."""
    for number, text in enumerate(Path(THIS_FILE).read_text().splitlines(), 1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(marker)


def stuck_records(trace_dir: Path) -> list[dict]:
    out = []
    for path in trace_dir.glob("trace-*.log"):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("event_kind") == "stack":
                out.append(rec)
    return out


@pytest.fixture
def blocked_tool(trace_dir: Path) -> Iterator[actions.OpenAction]:
    """A 'Tool Call' action whose thread waits on an event until the test ends."""
    release = threading.Event()
    opened: list[actions.OpenAction] = []
    ready = threading.Event()

    def tool() -> None:
        secret_local = "sk-live-local-value-never-in-trace"  # noqa: F841
        with actions.trace_action("Tool Call", "wait_for_release") as span:
            opened.append(span)
            ready.set()
            release.wait(30)  # key sk-proj-Abcdefghijklmnopqrstuvwx1234 # TOOL WAITS

    worker = threading.Thread(target=tool, name="tool-worker")
    worker.start()
    assert ready.wait(10)
    yield opened[0]
    release.set()
    worker.join(10)


def test_stuck_sync_action_reports_thread_stack_at_the_waiting_line(
    trace_dir: Path, blocked_tool: actions.OpenAction
) -> None:
    dog = Watchdog(threshold=1.0)
    dog.check(blocked_tool.start_mono + 1.5)

    [rec] = stuck_records(trace_dir)
    assert "action" not in rec
    assert rec["message"].startswith("[autotrace] stuck action: Tool Call: wait_for_release")
    assert rec["trace_id"] == blocked_tool.trace_id
    assert rec["age"] == pytest.approx(1.5, abs=0.01)
    assert rec["thread"] == "tool-worker"
    assert rec["stack_source"] == "thread"
    assert rec["where"] == f"{THIS_FILE}:{marker_line('TOOL WAITS')} in " + qualname(
        "blocked_tool.<locals>.tool"
    )
    files = {entry["file"] for entry in rec["stack"]}
    assert not any("/autotrace/" in f or "/wrapt/" in f for f in files)
    assert "sk-live-local-value" not in json.dumps(rec)  # no local variable values
    assert "Abcdefghijklmnopqrstuvwx1234" not in json.dumps(rec)  # source lines redacted
    [own] = [e for e in rec["stack"] if e["file"] == THIS_FILE]
    assert own["code"].startswith("release.wait(30)")


def test_same_action_is_reported_again_at_doubling_ages(
    trace_dir: Path, blocked_tool: actions.OpenAction
) -> None:
    dog = Watchdog(threshold=1.0)
    start = blocked_tool.start_mono
    ages = [0.5, 1.1, 1.5, 1.9, 2.1, 3.0, 3.9, 4.2, 7.0, 8.5]
    reported = []
    for age in ages:
        before = dog.reports
        dog.check(start + age)
        if dog.reports > before:
            reported.append(age)
    assert reported == [1.1, 2.1, 4.2, 8.5]


def test_next_wake_is_the_earliest_due_report(
    trace_dir: Path, blocked_tool: actions.OpenAction
) -> None:
    dog = Watchdog(threshold=10.0)
    start = blocked_tool.start_mono
    assert dog.check(start + 4.0) == pytest.approx(6.0)
    assert dog.check(start + 10.5) == pytest.approx(9.5)  # reported; next at age 20


def test_idle_watchdog_sleeps_a_whole_threshold(trace_dir: Path) -> None:
    assert Watchdog(threshold=60.0).check(time.monotonic()) == pytest.approx(60.0)


Opener = Callable[[asyncio.Event, list[actions.OpenAction]], Coroutine[Any, Any, None]]


@contextmanager
def opened_in_loop(opener: Opener) -> Iterator[actions.OpenAction]:
    """Run ``opener(release, opened)`` on an event loop in its own thread; yield the first
    action it opens. Afterwards set ``release``, wait for the coroutine and stop the loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="loop-thread")
    thread.start()
    release = asyncio.Event()
    opened: list[actions.OpenAction] = []
    future = asyncio.run_coroutine_threadsafe(opener(release, opened), loop)
    try:
        wait_for(lambda: opened, what="an action opened in the loop")
        yield opened[0]
    finally:
        loop.call_soon_threadsafe(release.set)
        future.result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_stuck_async_action_reports_the_innermost_awaiting_frame(trace_dir: Path) -> None:
    async def fetch(release: asyncio.Event) -> None:
        await release.wait()  # TASK AWAITS

    async def model_call(release: asyncio.Event, opened: list[actions.OpenAction]) -> None:
        async with actions.trace_action("Model", "generate (test/model)") as span:
            opened.append(span)
            await fetch(release)

    with opened_in_loop(model_call) as span:
        # The loop thread is idle in select(): the task's await chain is the answer.
        Watchdog(threshold=1.0).check(span.start_mono + 2.0)
        [rec] = stuck_records(trace_dir)
        assert rec["stack_source"] == "task"
        assert rec["task"] == span.task_name
        assert rec["where"] == (
            f"{THIS_FILE}:{marker_line('TASK AWAITS')} in "
            + qualname(
                "test_stuck_async_action_reports_the_innermost_awaiting_frame.<locals>.fetch"
            )
        )
        functions = [entry["function"] for entry in rec["stack"]]
        assert functions[-3:-1] == [
            qualname(
                "test_stuck_async_action_reports_the_innermost_awaiting_frame.<locals>.model_call"
            ),
            qualname("test_stuck_async_action_reports_the_innermost_awaiting_frame.<locals>.fetch"),
        ]


@pytest.mark.parametrize("awaits", ["gather", "task"])
def test_stuck_async_action_follows_gather_into_the_child_still_running(
    trace_dir: Path, awaits: str
) -> None:
    async def quick() -> None:
        await asyncio.sleep(0)

    async def slow(release: asyncio.Event) -> None:
        await release.wait()  # GATHER CHILD AWAITS

    async def solve(release: asyncio.Event, opened: list[actions.OpenAction]) -> None:
        async with actions.trace_action("Subtask", "solve") as span:
            opened.append(span)
            if awaits == "gather":
                await asyncio.gather(quick(), slow(release))
            else:  # a task awaited directly
                await asyncio.ensure_future(slow(release))

    with opened_in_loop(solve) as span:
        time.sleep(0.1)  # quick() has finished by now
        Watchdog(threshold=1.0).check(span.start_mono + 2.0)
        [rec] = stuck_records(trace_dir)
        assert rec["stack_source"] == "task"
        assert rec["where"] == (
            f"{THIS_FILE}:{marker_line('GATHER CHILD AWAITS')} in "
            + qualname(
                "test_stuck_async_action_follows_gather_into_the_child_still_running.<locals>.slow"
            )
        )
        functions = [entry["function"].rsplit(".", 1)[-1] for entry in rec["stack"]]
        assert functions == ["solve", "slow", "wait"]  # the task that waits, then its child


def test_stuck_records_are_accepted_by_inspects_reader(
    trace_dir: Path, blocked_tool: actions.OpenAction
) -> None:
    from inspect_ai._util.trace import read_trace_file

    Watchdog(threshold=1.0).check(blocked_tool.start_mono + 1.5)
    [path] = trace_dir.glob("trace-*.log")
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    assert len(read_trace_file(path)) == len(lines)


def test_stacks_snapshot_lists_open_actions_and_threads_and_is_written_to_the_trace(
    trace_dir: Path, blocked_tool: actions.OpenAction
) -> None:
    watchdog.start()
    snap = request_snapshot(os.getpid())
    assert snap["pid"] == os.getpid()
    [entry] = [a for a in snap["actions"] if a["trace_id"] == blocked_tool.trace_id]
    assert entry["where"].startswith(f"{THIS_FILE}:{marker_line('TOOL WAITS')} ")
    names = {t["name"] for t in snap["threads"]}
    assert "tool-worker" in names and "autotrace-watchdog" not in names
    [path] = trace_dir.glob("trace-*.log")
    written = [json.loads(ln) for ln in path.read_text().splitlines()]
    assert any(r.get("event_kind") == "snapshot" for r in written)


def test_stacks_command_prints_the_waiting_line(
    trace_dir: Path, blocked_tool: actions.OpenAction
) -> None:
    watchdog.start()
    result = CliRunner().invoke(main, ["stacks", str(os.getpid())])
    assert result.exit_code == 0, result.output
    assert f"test_runtime_watchdog.py:{marker_line('TOOL WAITS')} in" in result.output
    assert "waits here" in result.output


def test_stacks_of_an_untraced_or_missing_process_is_one_line_exit_1() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for pid, expected in ((child.pid, "is not traced"), (2**22 + 17, "no process")):
            result = CliRunner().invoke(main, ["stacks", str(pid)])
            assert result.exit_code == 1
            assert expected in result.output
            assert len(result.output.strip().splitlines()) == 1
            assert "Traceback" not in result.output
    finally:
        child.kill()
        child.wait()


def test_watchdog_and_stacks_leave_every_signal_handler_alone(
    trace_dir: Path, blocked_tool: actions.OpenAction
) -> None:
    import signal

    def handlers() -> dict[int, object]:
        return {s: signal.getsignal(s) for s in signal.valid_signals() if signal.getsignal(s)}

    before = handlers()
    watchdog.start()
    request_snapshot(os.getpid())
    assert handlers() == before
