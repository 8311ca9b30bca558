"""`inspect-trace cancel PID TRACE_ID` on real traced processes, and the channel's peer check.

Each case starts a traced program that hangs in one way, asks it over the channel to end
the action, and checks how the program went on (what it caught, what it printed) and the
action's end record (``ended_by: "cancel"``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from autotrace import config

SITECUSTOMIZE = Path(__file__).resolve().parent.parent / "sitecustomize_example"

PROGRAM = """\
import asyncio, subprocess, sys, threading, time
from autotrace import trace_action

def spin():
    try:
        with trace_action("Tool Call", "spin"):
            while True:
                pass
    except Exception as exc:
        print("caught", type(exc).__name__, flush=True)

async def wait_long():
    try:
        with trace_action("Tool Call", "wait"):
            await asyncio.sleep(600)
    except asyncio.CancelledError:
        print("task cancelled", flush=True)

mode = sys.argv[1]
if mode == "thread":
    worker = threading.Thread(target=spin, name="tool")
    worker.start()
    worker.join()
elif mode == "task":
    asyncio.run(wait_long())
elif mode == "subprocess":
    print("returncode", subprocess.run(["sleep", "600"]).returncode, flush=True)
elif mode == "async_subprocess":
    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "600")
        print("returncode", await proc.wait(), flush=True)
    asyncio.run(main())
elif mode == "ignores_term":
    child = ["python3", "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"]
    proc = subprocess.Popen(child, stdout=subprocess.PIPE)
    proc.stdout.readline()
    print("returncode", proc.wait(), flush=True)
elif mode == "sleep":
    with trace_action("Tool Call", "sleep"):
        time.sleep(600)
print("done", flush=True)
"""


class Program:
    """One traced run of PROGRAM in a mode; killed at the end of the test."""

    def __init__(self, tmp_path: Path, mode: str) -> None:
        script = tmp_path / "hangs.py"
        script.write_text(PROGRAM)
        self.trace_dir = tmp_path / "traces"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOTRACE_", "INSPECT_"))}
        env["PYTHONPATH"] = str(SITECUSTOMIZE)
        env[config.ENV_DIR] = str(self.trace_dir)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), mode],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in self.trace_dir.glob("trace-*.log"):
            for line in path.read_text().splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def open_action(self, match: str) -> dict[str, Any]:
        """The ``enter`` of the action whose detail contains ``match``, once written."""

        def found() -> dict[str, Any] | None:
            return next(
                (
                    r
                    for r in self.records()
                    if r.get("event") == "enter" and match in r.get("detail", "")
                ),
                None,
            )

        return wait_for(found, timeout=30, what=f"action {match!r}")  # type: ignore[no-any-return]

    def end_of(self, trace_id: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next(
                (
                    r
                    for r in self.records()
                    if r.get("trace_id") == trace_id and r.get("event") not in (None, "enter")
                ),
                None,
            )

        return wait_for(found, timeout=30, what="the end record")  # type: ignore[no-any-return]

    def finish(self) -> tuple[int, str]:
        out, _err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def programs(tmp_path: Path) -> Iterator[Any]:
    started: list[Program] = []

    def start(mode: str) -> Program:
        program = Program(tmp_path, mode)
        started.append(program)
        return program

    yield start
    for program in started:
        program.kill()


def cancel(pid: int, trace_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotrace", "cancel", str(pid), trace_id, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cancel_raises_in_a_thread_running_python_code(programs: Any) -> None:
    program = programs("thread")
    enter = program.open_action("spin")
    result = cancel(program.proc.pid, enter["trace_id"])
    assert result.returncode == 0, result.stderr
    assert "ActionCancelled" in result.stdout
    returncode, out = program.finish()
    assert (returncode, out.split()) == (0, ["caught", "ActionCancelled", "done"])
    end = program.end_of(enter["trace_id"])
    assert (end["event"], end["ended_by"]) == ("cancel", "cancel")


def test_cancel_cancels_the_asyncio_task(programs: Any) -> None:
    program = programs("task")
    enter = program.open_action("wait")
    result = cancel(program.proc.pid, enter["trace_id"])
    assert result.returncode == 0, result.stderr
    returncode, out = program.finish()
    assert (returncode, out.split()) == (0, ["task", "cancelled", "done"])
    end = program.end_of(enter["trace_id"])
    assert (end["event"], end["ended_by"]) == ("cancel", "cancel")


@pytest.mark.parametrize("mode", ["subprocess", "async_subprocess"])
def test_cancel_terminates_the_child_of_a_subprocess_action(programs: Any, mode: str) -> None:
    program = programs(mode)
    enter = program.open_action("sleep 600")
    result = cancel(program.proc.pid, enter["trace_id"])
    assert result.returncode == 0, result.stderr
    assert f"child process {enter['child_pid']} (SIGTERM)" in result.stdout
    returncode, out = program.finish()
    assert (returncode, out.split()) == (0, ["returncode", "-15", "done"])
    end = program.end_of(enter["trace_id"])
    assert (end["event"], end["ended_by"], end["returncode"]) == ("cancel", "cancel", -15)


def _ignores_sigterm(pid: int) -> bool:
    """Whether process ``pid`` ignores SIGTERM (the SigIgn mask of /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(int(ln.split()[1], 16) for ln in f if ln.startswith("SigIgn:"))
    except (OSError, StopIteration, ValueError):
        return False
    return bool(mask & (1 << (15 - 1)))


def test_cancel_kills_a_child_that_ignores_sigterm_after_the_grace_period(
    programs: Any,
) -> None:
    program = programs("ignores_term")
    enter = program.open_action("SIG_IGN")
    # The enter is written at Popen: wait until the child really ignores SIGTERM (under
    # load a cancel could otherwise reach it before its handler is set, and it dies -15).
    wait_for(lambda: _ignores_sigterm(enter["child_pid"]), timeout=30, what="SIG_IGN set")
    result = cancel(program.proc.pid, enter["trace_id"], "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["ok"] and "SIGKILL" in answer["message"]
    returncode, out = program.finish()
    assert (returncode, out.split()) == (0, ["returncode", "-9", "done"])


def test_cancel_of_a_thread_blocked_in_c_code_says_why_not_and_exits_1(programs: Any) -> None:
    program = programs("sleep")
    enter = program.open_action("sleep")
    result = cancel(program.proc.pid, enter["trace_id"])
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "blocked in a call outside Python code" in line
    assert program.proc.poll() is None  # nothing happened to it
    records = program.records()
    ends = [r for r in records if r.get("trace_id") == enter["trace_id"] and "action" in r]
    assert [r["event"] for r in ends] == ["enter"]
    assert any(r.get("event_kind") == "cancel" and r.get("ok") is False for r in records)


def test_cancel_of_an_unknown_trace_id_is_one_line_exit_1(programs: Any) -> None:
    program = programs("sleep")
    program.open_action("sleep")
    result = cancel(program.proc.pid, "no-such-id")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: no open action no-such-id in process {program.proc.pid}"
    ]


# -- the client trusts only its target ------------------------------------------------


class Impostor:
    """A server that binds process ``pid``'s channel name first and answers anything."""

    def __init__(self, pid: int) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(f"\0autotrace-{pid}")
        self.sock.listen(4)
        self.asked = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    if conn.recv(512):
                        self.asked.set()
                    conn.sendall(b'{"ok": true, "message": "fake", "pid": 1, "actions": []}\n')
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.mark.skipif(not hasattr(socket, "SO_PEERCRED"), reason="SO_PEERCRED is Linux's")
@pytest.mark.parametrize("verb", [["stacks"], ["cancel", "1-2-3"]])
def test_client_refuses_an_answer_from_a_process_other_than_its_target(verb: list[str]) -> None:
    target = subprocess.Popen(["sleep", "60"])
    impostor = Impostor(target.pid)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "autotrace", verb[0], str(target.pid), *verb[1:]],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        impostor.close()
        target.kill()
        target.wait()
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert f"refusing the answer for process {target.pid}" in line
    assert f"held by process {os.getpid()}" in line
    assert not impostor.asked.is_set()  # nothing was even sent to it


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["cancel", str(os.getpid()), "a\x1bb"], "not a trace id: 'a\\x1bb'"),
        (["cancel", str(os.getpid()), "x" * 300], "not a trace id"),
    ],
)
def test_bad_cancel_input_is_one_line_exit_1(args: list[str], says: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "autotrace", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert says in line and "\x1b" not in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["cancel", "0", "x"], "'PID': 0 is not in the range 1<=x<="),
        (["cancel", "99999999999999999999", "x"], "99999999999999999999 is not in the range"),
        (["cancel", "1", "x", "--timeout", "nan"], "'nan' is not a number of seconds in (0, "),
        (["cancel", "1", "x", "--timeout", "-1"], "'-1' is not a number of seconds in (0, "),
        (["stacks", "1", "--timeout", "inf"], "'inf' is not a number of seconds in (0, "),
    ],
)
def test_bad_pid_or_timeout_is_a_usage_error(args: list[str], says: str) -> None:
    """The option types the other verbs use (click's form, exit 2): nothing is asked."""
    result = subprocess.run(
        [sys.executable, "-m", "autotrace", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "Usage:" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error:") and says in last, result.stderr
