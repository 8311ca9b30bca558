"""The whole run: files of a parent and its children read together; dead processes; --watch."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from autotrace import records
from autotrace.cli.main import main
from autotrace.read.run import ProcessTrace

RUN = "20260101T000000-100"


def header(pid: int, parent_pid: int | None, argv: list[str], t: float, run_id: str = RUN) -> bytes:
    fields = {"event_kind": "process", "run_id": run_id, "pid": pid, "ppid": parent_pid or 1}
    fields.update(parent_pid=parent_pid, argv=argv)
    return records.message_line("[autotrace] process start", t, fields)


def enter(action: str, detail: str, trace_id: str, pid: int, t: float, **kw: object) -> bytes:
    parent_id = kw.pop("parent_id", None)
    lines = records.ActionLines(
        action, detail, trace_id, pid=pid, thread="MainThread", task=None, parent_id=parent_id
    )  # type: ignore[arg-type]
    return lines.line("enter", t, start_time=t, extra=dict(kw) or None)


def stuck(trace_id: str, file: str, line: int, function: str, t: float) -> bytes:
    frame = {"file": file, "line": line, "function": function, "code": ""}
    fields = {"event_kind": "stack", "trace_id": trace_id, "stack": [frame]}
    fields["where"] = f"{file}:{line} in {function}"
    return records.message_line("[autotrace] stuck action: x", t, fields)


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A parent (this live test process) whose traced child died with an action open."""
    directory = tmp_path / "traces"
    directory.mkdir()
    now = time.time()
    me, child = os.getpid(), dead_pid()
    start = now - 30
    (directory / f"trace-{me}.log").write_bytes(
        header(me, None, ["python", "parent.py"], now)  # after this process started
        + enter("Subprocess", "python child.py", f"p-{me}-1", me, start, child_pid=child)
    )
    child_file = directory / f"trace-{child}.log"
    child_file.write_bytes(
        header(child, me, ["python", "child.py"], start + 1)
        + enter("Subprocess", "sleep 600", f"c-{child}-1", child, start + 1)
        + stuck(f"c-{child}-1", "/work/child.py", 4, "hang", start + 3)
        + enter("Subprocess", "false", f"c-{child}-2", child, start + 2)
        + records.ActionLines(
            "Subprocess", "false", f"c-{child}-2", pid=child, thread="T", task=None, parent_id=None
        ).line("error", start + 2.5, duration=0.5, error=RuntimeError("exit 1"))
    )
    os.utime(child_file, (start + 8, start + 8))  # its last write: 7 s after the enter
    other = directory / "trace-99999999.log"  # another run: left out
    other.write_bytes(
        header(99999999, None, ["python", "other.py"], now - 100, run_id="other-run")
        + enter("Subprocess", "other", "o-1", 99999999, now - 100)
    )
    os.utime(other, (now - 200, now - 200))
    return directory


def test_run_reads_parent_and_child_together_and_marks_the_dead_child(run_dir: Path) -> None:
    result = CliRunner().invoke(
        main, ["anomalies", "--run", RUN, "--json", "--trace-dir", str(run_dir)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["run_id"] == RUN
    child, parent = report["processes"]
    assert (child["argv"], child["state"]) == (["python", "child.py"], "dead")
    assert (parent["argv"], parent["state"]) == (["python", "parent.py"], "running")
    culprit, waiting = report["running"]
    assert culprit["detail"] == "sleep 600" and culprit["abandoned"]
    assert culprit["duration"] == pytest.approx(7.0, abs=0.01)  # up to its last write
    assert culprit["where"] == "/work/child.py:4 in hang"
    assert waiting["detail"] == "python child.py" and waiting["waits_on_other"]
    # The child process's action runs in the parent's Subprocess: one chain across files.
    assert culprit["chain"] == [waiting["trace_id"]] and waiting["chain"] == []
    assert not waiting["abandoned"] and waiting["duration"] >= 30
    assert all(row["detail"] != "other" for row in report["running"])
    [error] = report["errors"]
    assert (error["detail"], error["pid"]) == ("false", child["pid"])
    assert child["counts"] == {"cancelled": 0, "errors": 1, "timeouts": 0}


def test_run_text_groups_per_process_with_its_command_line(run_dir: Path) -> None:
    result = CliRunner().invoke(
        main, ["anomalies", "--run", "--trace-dir", str(run_dir)], env={"COLUMNS": "160"}
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.index("python child.py") < out.index("python parent.py")
    assert "dead without exit records" in out and "abandoned" in out
    assert "child.py:4 in hang" in out


def test_unknown_run_is_one_line_exit_1(run_dir: Path) -> None:
    result = CliRunner().invoke(main, ["anomalies", "--run", "nope", "--trace-dir", str(run_dir)])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: no trace file of run nope in {run_dir}"


def test_process_trace_reads_only_what_was_appended(tmp_path: Path) -> None:
    path = tmp_path / "trace-1.log"
    path.write_bytes(header(1, None, ["python"], 1.0) + enter("Tool Call", "a", "t-1", 1, 1.0))
    trace = ProcessTrace(path)
    assert trace.refresh()
    size = path.stat().st_size
    assert trace.offset == size and list(trace.running) == ["t-1"]
    assert not trace.refresh()
    half = enter("Tool Call", "b", "t-2", 1, 2.0)
    with open(path, "ab") as f:
        f.write(half[:20])  # a line being written: not read until complete
    assert trace.refresh() and list(trace.running) == ["t-1"]
    with open(path, "ab") as f:
        f.write(half[20:])
    assert trace.refresh() and list(trace.running) == ["t-1", "t-2"]
    assert trace.offset == path.stat().st_size


@pytest.mark.slow
def test_watch_refreshes_as_files_grow_and_ctrl_c_exits_cleanly(run_dir: Path) -> None:
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="200", LINES="60", TERM="xterm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "autotrace", "anomalies", "--watch", "--trace-dir", str(run_dir)],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(slave)
    seen = b""

    def read_until(text: bytes, timeout: float = 20.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        assert text in seen, seen[-2000:]

    try:
        read_until(b"sleep 600")
        [parent_file] = [p for p in run_dir.iterdir() if p.name == f"trace-{os.getpid()}.log"]
        with open(parent_file, "ab") as f:
            f.write(enter("Tool Call", "late-arrival", "p-late", os.getpid(), time.time()))
        read_until(b"late-arrival")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_a_file_compressed_at_exit_replaces_its_log_in_the_run(run_dir: Path) -> None:
    import gzip

    from autotrace.read.run import RunTrace

    run = RunTrace(run_dir, RUN)
    run.refresh()
    [child_log] = [p for p in run.processes if "child" in " ".join(run.processes[p].argv)]
    data = child_log.read_bytes()
    gz = child_log.with_name(child_log.name + ".gz")
    with gzip.open(gz, "wb") as f:
        f.write(data)
    child_log.unlink()
    run.refresh()
    assert sorted(p.name for p in run.processes) == sorted([gz.name, f"trace-{os.getpid()}.log"])
    assert run.processes[gz].state() == "exited"
    [row] = [r for r in run.rows() if r.detail == "sleep 600"]
    assert row.abandoned and row.where == "/work/child.py:4 in hang"


def test_on_record_sees_every_record_once_in_order_as_the_file_grows(tmp_path: Path) -> None:
    """What an exporter or a timeline builds on: every record, incrementally."""
    from autotrace.read.reader import Record

    path = tmp_path / "trace-7.log"
    seen: list[tuple[str, str]] = []

    def on_record(trace: ProcessTrace, record: Record) -> None:
        assert trace.path == path
        seen.append((str(record.event), str(record.trace_id)))

    path.write_bytes(header(7, None, ["python"], 1.0) + enter("Tool Call", "a", "t-1", 7, 1.0))
    trace = ProcessTrace(path, on_record)
    trace.refresh()
    ended = records.ActionLines(
        "Tool Call", "a", "t-1", pid=7, thread="T", task=None, parent_id=None
    ).line("exit", 2.0, duration=1.0)
    with open(path, "ab") as f:
        f.write(b"not json\n" + ended)
    trace.refresh()
    assert trace.refresh() is False
    actions = [s for s in seen if s[0] != "UNSET"]
    assert actions == [("enter", "t-1"), ("exit", "t-1")]
    assert len(seen) == 3 and not trace.running  # the header, the enter, the exit
    assert trace.reader.problems.garbage == 1
