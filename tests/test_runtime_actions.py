"""The action API: outcomes, re-raising, nesting across threads and tasks, decorators, registry."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import action_records, read_records

from autotrace.runtime import actions
from autotrace.runtime.actions import (
    current_action,
    open_actions,
    start_action,
    suppress_tracing,
    trace_action,
)


def _by_detail(directory: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for record in action_records(directory):
        out.setdefault(record["detail"], []).append(record)
    return out


def test_action_writes_enter_then_exit_with_one_trace_id(trace_dir: Path) -> None:
    with trace_action("Model", "generate (m)"):
        pass
    enter, exit_ = _by_detail(trace_dir)["generate (m)"]
    assert (enter["event"], exit_["event"]) == ("enter", "exit")
    assert enter["trace_id"] == exit_["trace_id"]
    assert isinstance(enter["start_time"], float) and exit_["duration"] >= 0


@pytest.mark.parametrize(
    ("exc", "event"),
    [
        (ValueError("boom"), "error"),
        (TimeoutError("slow"), "timeout"),
        (subprocess.TimeoutExpired(["x"], 1.0), "timeout"),
        (KeyboardInterrupt(), "cancel"),
        (asyncio.CancelledError(), "cancel"),
    ],
)
def test_exception_is_reraised_untouched_and_classified(
    trace_dir: Path, exc: BaseException, event: str
) -> None:
    with pytest.raises(type(exc)) as raised:
        with trace_action("Tool Call", "t"):
            raise exc
    assert raised.value is exc
    assert raised.value.__traceback__ is not None
    end = _by_detail(trace_dir)["t"][-1]
    assert end["event"] == event
    if event == "error":
        assert end["error"] == "boom" and end["error_type"] == "ValueError"
        assert "boom" in end["stacktrace"]
    else:
        assert "error" not in end


def test_task_cancelled_inside_action_writes_cancel(trace_dir: Path) -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def work() -> None:
            async with trace_action("Model", "cancelled call"):
                started.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(work())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert [r["event"] for r in _by_detail(trace_dir)["cancelled call"]] == ["enter", "cancel"]


def test_nested_actions_name_their_parent(trace_dir: Path) -> None:
    with trace_action("Subtask", "outer") as outer:
        assert current_action() is outer
        with trace_action("Model", "inner") as inner:
            assert current_action() is inner
        assert current_action() is outer
    assert current_action() is None
    records = _by_detail(trace_dir)
    assert outer is not None and inner is not None
    assert records["inner"][0]["parent_id"] == outer.trace_id
    assert "parent_id" not in records["outer"][0]


def test_threads_nest_independently(trace_dir: Path) -> None:
    barrier = threading.Barrier(4)
    seen: dict[str, str | None] = {}

    def worker(n: int) -> None:
        with trace_action("Subtask", f"outer-{n}") as outer:
            barrier.wait(timeout=10)  # all four outers open at once
            with trace_action("Model", f"inner-{n}"):
                current = current_action()
                seen[f"inner-{n}"] = current.parent_id if current else None
            assert outer is not None
            seen[f"outer-{n}"] = outer.trace_id

    threads = [threading.Thread(target=worker, args=(n,), name=f"w{n}") for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    records = _by_detail(trace_dir)
    for n in range(4):
        assert seen[f"inner-{n}"] == seen[f"outer-{n}"]
        assert records[f"inner-{n}"][0]["parent_id"] == seen[f"outer-{n}"]
        assert records[f"inner-{n}"][0]["thread"] == f"w{n}"


def test_asyncio_tasks_inherit_parent_and_record_task_name(trace_dir: Path) -> None:
    async def child(n: int) -> None:
        async with trace_action("Model", f"call-{n}"):
            await asyncio.sleep(0)

    async def main() -> str:
        async with trace_action("Subtask", "sample") as outer:
            await asyncio.gather(
                *(asyncio.create_task(child(n), name=f"sample-task-{n}") for n in range(3))
            )
            assert outer is not None
            return outer.trace_id

    outer_id = asyncio.run(main())
    records = _by_detail(trace_dir)
    for n in range(3):
        enter = records[f"call-{n}"][0]
        assert enter["parent_id"] == outer_id
        assert enter["task"] == f"sample-task-{n}"


def test_decorator_keeps_sync_and_async_shape(trace_dir: Path) -> None:
    @trace_action("Tool Call", "sync tool")
    def add(a: int, b: int) -> int:
        """Adds."""
        return a + b

    @trace_action("Tool Call", "async tool")
    async def mul(a: int, b: int) -> int:
        return a * b

    assert add(2, 3) == 5 and add.__name__ == "add" and add.__doc__ == "Adds."
    assert inspect.iscoroutinefunction(mul)
    assert asyncio.run(mul(2, 3)) == 6
    records = _by_detail(trace_dir)
    assert [r["event"] for r in records["sync tool"]] == ["enter", "exit"]
    assert [r["event"] for r in records["async tool"]] == ["enter", "exit"]


def test_open_actions_registry_holds_only_unfinished_actions(trace_dir: Path) -> None:
    span = start_action("Subprocess", "sleep 60")
    assert span is not None
    assert open_actions[span.trace_id] is span
    assert current_action() is None  # start_action does not make it current
    span.end(None, extra={"returncode": 0})
    span.end(ValueError("twice"))  # a second end is ignored
    assert span.trace_id not in open_actions
    events = [(r["event"], r.get("returncode")) for r in _by_detail(trace_dir)["sleep 60"]]
    assert events == [("enter", None), ("exit", 0)]


def test_suppress_tracing_writes_nothing(trace_dir: Path) -> None:
    with suppress_tracing():
        with trace_action("Model", "hidden") as span:
            assert span is None
    with trace_action("Model", "shown"):
        pass
    assert set(_by_detail(trace_dir)) == {"shown"}


def test_secret_in_detail_is_redacted(trace_dir: Path) -> None:
    with trace_action("Subprocess", "curl -H 'Authorization: Bearer abcdefghijklmnop1234'"):
        pass
    details = list(_by_detail(trace_dir))
    assert details and all("abcdefghijklmnop1234" not in d for d in details)


def test_disabled_writer_makes_actions_noops(trace_dir: Path) -> None:
    actions.writer.disabled = True
    with trace_action("Model", "off") as span:
        assert span is None
    assert not trace_dir.exists() or not action_records(trace_dir)


def test_reopened_file_repeats_open_enters_with_their_extra_keys(trace_dir: Path) -> None:
    held = actions.start_action("Subprocess", "sleep 600", extra={"child_pid": 4242})
    assert held is not None
    path = trace_dir / f"trace-{os.getpid()}.log"
    path.unlink()  # what a rotation in another process does
    actions.writer._checked_at = 0.0  # look at the file on the next write
    with actions.trace_action("Tool Call", "after()"):
        pass
    held.end()
    records = [r for r in read_records(path) if "action" in r]
    enters = [r for r in records if r["detail"] == "sleep 600" and r["event"] == "enter"]
    assert len(enters) == 1 and enters[0]["child_pid"] == 4242
    assert [r["event"] for r in records if r["detail"] == "sleep 600"] == ["enter", "exit"]
