"""The OTLP exporter against the SDK's in-memory exporter: the tree, ids, outcomes,
pending spans, resume from saved offsets, settings from OTEL_*, and no cost in the
traced program. (tests/test_export_otlp_phoenix.py sends to a real backend.)"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import untraced_env, wait_for
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from autotrace import records
from autotrace.export import otlp
from autotrace.export.spans import action_span_id, run_trace_id

RUN = "20261129T000000-4242"


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    return int(proc.stdout)


class FileWriter:
    """Writes one process's trace file with the record builders the agent uses."""

    def __init__(self, directory: Path, pid: int, parent_pid: int | None = None, t0: float = 0.0):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"trace-{pid}.log"
        self.pid = pid
        self.t = t0 or time.time() - 100
        header = {"event_kind": "process", "run_id": RUN, "pid": pid, "parent_pid": parent_pid}
        header["argv"] = ["python", "prog.py"]
        self.write(records.message_line("[autotrace] process start", self.t, header))

    def write(self, line: bytes) -> None:
        with open(self.path, "ab") as f:
            f.write(line)

    def enter(self, action: str, detail: str, tid: str, parent: str | None = None, **extra: Any):
        lines = records.ActionLines(
            action, detail, tid, pid=self.pid, thread="MainThread", task=None, parent_id=parent
        )
        self.t += 1
        self.write(lines.line("enter", self.t, start_time=self.t, extra=extra or None))
        return lines

    def end(self, lines: records.ActionLines, event: str, duration: float, **kw: Any) -> None:
        self.t += duration
        self.write(lines.line(event, self.t, duration=duration, **kw))


def export(directory: Path, **kw: Any) -> tuple[InMemorySpanExporter, otlp.Summary]:
    memory = InMemorySpanExporter()
    kw.setdefault("paths", [])
    kw.setdefault("run_id", RUN)
    summary = otlp.export(
        directory=directory, follow=False, exporter=memory, log=lambda m: None, **kw
    )
    return memory, summary


def by_name(memory: InMemorySpanExporter) -> dict[str, Any]:
    return {
        s.attributes["autotrace.trace_id"]
        + ("~" if s.attributes.get("logfire.span_type") else ""): s
        for s in memory.get_finished_spans()
    }


def test_tree_across_processes_ids_outcomes_and_conventions(tmp_path: Path) -> None:
    parent_pid, child_pid = dead_pid(), dead_pid()
    parent = FileWriter(tmp_path, parent_pid)
    tool = parent.enter("Tool Call", "sleeper(seconds=600)", "p-1")
    model = parent.enter("Model", "generate (openai/gpt-4o)", "p-2", parent="p-1")
    parent.end(model, "error", 0.5, error=ValueError("bad request"))
    sub = parent.enter(
        "Subprocess", "python child.py --token '****'", "p-3", "p-1", child_pid=child_pid
    )
    child = FileWriter(tmp_path, child_pid, parent_pid=parent_pid, t0=parent.t)
    s3 = child.enter("S3", "PutObject s3://bucket/a/key.txt (1.0 kB)", "c-1")
    child.end(s3, "timeout", 2.0)
    child.enter("Subprocess", "sleep 600", "c-2", child_pid=1)  # never ends: abandoned
    parent.end(sub, "exit", 5.0, extra={"returncode": 0})
    parent.end(tool, "cancel", 6.0)

    memory, summary = export(tmp_path)
    spans = by_name(memory)
    assert set(spans) == {"p-1", "p-2", "p-3", "c-1", "c-2"}, spans.keys()
    trace_id = run_trace_id(RUN)
    assert {s.context.trace_id for s in spans.values()} == {trace_id}
    sid = {k: s.context.span_id for k, s in spans.items()}
    assert sid["p-2"] == action_span_id(RUN, "p-2")
    parents = {k: s.parent.span_id if s.parent else None for k, s in spans.items()}
    # the child's root actions hang under the Subprocess action that started the child
    assert parents == {
        "p-1": None,
        "p-2": sid["p-1"],
        "p-3": sid["p-1"],
        "c-1": sid["p-3"],
        "c-2": sid["p-3"],
    }

    m = spans["p-2"]
    assert m.name == "chat gpt-4o" and m.kind == SpanKind.CLIENT
    assert m.attributes["gen_ai.request.model"] == "gpt-4o"
    assert m.attributes["gen_ai.provider.name"] == "openai"
    assert m.attributes["openinference.span.kind"] == "LLM"
    assert m.status.status_code == StatusCode.ERROR and m.status.description == "bad request"
    assert m.attributes["error.type"] == "ValueError"
    assert [e.name for e in m.events] == ["exception"]
    assert (m.end_time - m.start_time) == pytest.approx(0.5e9, rel=1e-6)

    t = spans["p-1"]
    assert t.name == "execute_tool sleeper" and t.attributes["openinference.span.kind"] == "TOOL"
    assert t.attributes["error.type"] == "cancelled" and t.status.status_code == StatusCode.ERROR

    p = spans["p-3"]
    assert p.attributes["process.command_line"] == "python child.py --token '****'"
    assert p.attributes["process.pid"] == child_pid and p.attributes["process.exit.code"] == 0
    assert p.resource.attributes["process.pid"] == parent_pid
    assert p.resource.attributes["autotrace.run_id"] == RUN
    assert p.resource.attributes["service.name"] == "inspect-trace"
    assert "host.name" in p.resource.attributes

    s = spans["c-1"]
    assert s.name == "S3 PutObject" and s.attributes["aws.s3.bucket"] == "bucket"
    assert s.attributes["aws.s3.key"] == "a/key.txt" and s.attributes["error.type"] == "timeout"
    assert s.resource.attributes["process.pid"] == child_pid

    h = spans["c-2"]  # its process is dead with the action open
    assert h.attributes["autotrace.outcome"] == "abandoned"
    assert h.status.status_code == StatusCode.ERROR
    assert summary.spans == 5 and summary.files == 2


def test_export_twice_gives_the_same_spans_and_resumes_from_saved_offsets(tmp_path: Path) -> None:
    w = FileWriter(tmp_path, dead_pid())
    for i in range(3):
        w.end(w.enter("Subprocess", f"true {i}", f"t-{i}"), "exit", 0.1)
    first, _ = export(tmp_path)
    assert len(first.get_finished_spans()) == 3
    again, summary = export(tmp_path)
    assert again.get_finished_spans() == () and summary.spans == 0  # nothing new
    w.end(w.enter("Subprocess", "true 3", "t-3"), "exit", 0.1)
    more, _ = export(tmp_path)
    assert [s.attributes["autotrace.trace_id"] for s in more.get_finished_spans()] == ["t-3"]
    state = next(tmp_path.glob("otlp-state-*.json"))
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    full, _ = export(tmp_path, from_start=True)
    ids = lambda m: sorted(s.context.span_id for s in m.get_finished_spans())  # noqa: E731
    assert ids(full) == sorted(ids(first) + ids(more))


def test_running_action_is_a_pending_span_then_the_final_span(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    live = subprocess.Popen(["sleep", "60"])
    request.addfinalizer(live.kill)
    w = FileWriter(tmp_path, live.pid, t0=time.time())  # the file of a live process
    w.t -= 30  # its actions started 30 s ago
    outer = w.enter("Subtask", "solve", "a-1")
    w.enter("Subprocess", "sleep 600", "a-2", parent="a-1", child_pid=1)
    memory, _ = export(tmp_path)
    spans = by_name(memory)
    assert set(spans) == {"a-1~", "a-2~"}  # pending spans only, no final span while running
    pending = spans["a-2~"]
    assert pending.attributes["logfire.span_type"] == "pending_span"
    assert pending.attributes["autotrace.state"] == "running"
    assert pending.attributes["autotrace.age"] >= 28
    assert pending.parent.span_id == action_span_id(RUN, "a-2")  # the real span-to-be
    assert pending.attributes["logfire.pending_parent_id"] == f"{action_span_id(RUN, 'a-1'):016x}"
    assert pending.start_time == pending.end_time and not pending.events

    stuck = {"event_kind": "stack", "trace_id": "a-2", "age": 12.0, "where": "prog.py:3 in main"}
    stuck["stack"] = [{"file": "prog.py", "line": 3, "function": "main", "code": "run()"}]
    w.write(records.message_line("[autotrace] stuck action: Subprocess", time.time(), stuck))
    memory, _ = export(tmp_path)
    (stacked,) = memory.get_finished_spans()  # the watchdog's report: one more pending span
    assert stacked.attributes["logfire.span_type"] == "pending_span"
    assert stacked.context.span_id != pending.context.span_id
    (event,) = stacked.events
    assert (
        event.name == "autotrace.stuck"
        and event.attributes["autotrace.where"] == "prog.py:3 in main"
    )
    assert 'File "prog.py", line 3, in main\n    run()' in event.attributes["autotrace.stack"]

    w.end(outer, "exit", 40.0)
    memory, _ = export(tmp_path)
    (final,) = memory.get_finished_spans()
    assert final.attributes["autotrace.trace_id"] == "a-1"
    assert final.attributes["autotrace.outcome"] == "exit"
    assert (
        "logfire.span_type" not in final.attributes and final.status.status_code == StatusCode.UNSET
    )
    live.kill()
    live.wait()
    memory, _ = export(tmp_path)  # its process is gone with a-2 open: abandoned, with its stack
    (abandoned,) = memory.get_finished_spans()
    assert abandoned.attributes["autotrace.outcome"] == "abandoned"
    assert [e.name for e in abandoned.events] == ["autotrace.stuck"]


def test_inspect_native_file_without_header_is_exported(tmp_path: Path) -> None:
    native = tmp_path / "trace-99999999.log"
    line = {"timestamp": "2026-11-29T05:00:00.000000+00:00", "level": "TRACE"}
    native.write_text(
        json.dumps(
            {
                **line,
                "message": "Model: generate (openai/x) (enter)",
                "action": "Model",
                "event": "enter",
                "trace_id": "n1",
                "detail": "generate (openai/x)",
                "start_time": 1.0e9,
            }
        )
        + "\n"
        + json.dumps(
            {
                **line,
                "message": "Model: generate (openai/x) (exit)",
                "action": "Model",
                "event": "exit",
                "trace_id": "n1",
                "detail": "generate (openai/x)",
                "duration": 2.0,
            }
        )
        + "\n{torn"
    )
    memory, summary = export(tmp_path, paths=[native], run_id=None)
    (span,) = memory.get_finished_spans()
    assert span.name == "chat x" and span.attributes["autotrace.source"] == "inspect"
    assert span.end_time - span.start_time == 2_000_000_000


@pytest.mark.parametrize(
    ("env", "arg", "expected"),
    [
        ({}, None, ("http://localhost:4318/v1/traces", "http/protobuf")),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318/"},
            None,
            ("https://c:4318/v1/traces", "http/protobuf"),
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://x/custom"},
            None,
            ("https://x/custom", "http/protobuf"),
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c"},
            "http://a:1",
            ("http://a:1/v1/traces", "http/protobuf"),
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, None, ("http://localhost:4317", "grpc")),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            "http://h:4318/v1/traces",
            ("http://h:4318/v1/traces", "http/protobuf"),
        ),
    ],
)
def test_settings_follow_the_otel_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], arg: str | None, expected: tuple[str, str]
) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = otlp.settings(arg)
    assert (s.endpoint, s.protocol) == expected


def test_bad_protocol_is_one_line_error_exit_1(tmp_path: Path) -> None:
    FileWriter(tmp_path, dead_pid())
    env = untraced_env(OTEL_EXPORTER_OTLP_PROTOCOL="http/json")
    result = subprocess.run(
        ["inspect-trace", "export", "--trace-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: OTLP protocol 'http/json' is not supported (use http/protobuf or grpc)"
    ]


def test_backend_down_one_shot_export_gives_up_without_showing_headers(tmp_path: Path) -> None:
    w = FileWriter(tmp_path, dead_pid())
    w.end(w.enter("Subprocess", "true", "t-1"), "exit", 0.1)
    env = untraced_env(
        OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20sk-live-SECRET123456",
        AUTOTRACE_OTLP_DRAIN_TIMEOUT="1",
    )
    port = _closed_port()
    result = subprocess.run(
        [
            "inspect-trace",
            "export",
            "--trace-dir",
            str(tmp_path),
            "--endpoint",
            f"http://user:pw@127.0.0.1:{port}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"cannot send to http://127.0.0.1:{port}/v1/traces" in result.stderr
    assert "SECRET" not in result.stderr and "pw" not in result.stderr
    assert "sends the rest" in result.stderr
    # nothing was acknowledged: the saved offset is still at the start
    for path in tmp_path.glob("otlp-state-*.json"):
        state = json.loads(path.read_text())
        assert all(entry["offset"] == 0 for entry in state["files"].values())


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PROGRAM_SEES = """
import glob, os, subprocess, sys
subprocess.run(["true"])
print(sorted(m for m in sys.modules if m.startswith(("opentelemetry", "autotrace.export"))))
print(len(os.listdir(f"/proc/{os.getpid()}/task")), os.getppid() == int(sys.argv[1]))
exporters = []
for path in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        argv = open(path, "rb").read().split(b"\\0")
    except OSError:
        continue
    if b"export" in argv and b"--follow" in argv:
        exporters.append(b" ".join(argv).decode())
print(exporters)
"""


def test_traced_program_pays_nothing_and_sees_nothing_of_the_exporter(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM_SEES)
    endpoint = f"http://user:secretpw@127.0.0.1:{_closed_port()}"
    shell = subprocess.Popen(
        ["sh", "-c", f'exec inspect-trace run --trace-dir {tmp_path / "traces"} --otlp '
         f'{endpoint} -- {sys.executable} {script} "$PPID"'],
        env=untraced_env(AUTOTRACE_OTLP_DRAIN_TIMEOUT="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = shell.communicate(timeout=60)
    assert shell.returncode == 0, err
    modules, threads, exporters = out.strip().splitlines()
    assert modules == "[]"  # nothing of OpenTelemetry or of the exporter in the program
    assert threads.split()[1] == "True"  # the program is the command itself (exec), not a child
    assert "secretpw" not in exporters and "export --follow" in exporters  # no URL in argv
    assert err == ""  # the exporter's messages go to its log file, not the program's terminal
    # with the backend down, the exporter gives up AUTOTRACE_OTLP_DRAIN_TIMEOUT after the
    # command ended (plus one SDK export timeout) and says how to send the rest
    wait_for(lambda: not exporters_of(tmp_path / "traces"), 40, "the exporter to give up")
    log = next((tmp_path / "traces").glob("otlp-*.log"))
    assert "secretpw" not in log.read_text()
    assert "sends the rest" in log.read_text()


def exporters_of(traces: Path) -> list[int]:
    """The pids of the exporters following ``traces``."""
    pids = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = path.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--follow" in argv and str(traces).encode() in argv:
            pids.append(int(path.parent.name))
    return pids


def test_otel_sdk_disabled_starts_no_exporter(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text("import sys; sys.exit(3)\n")
    traces = tmp_path / "traces"
    result = subprocess.run(
        [
            "inspect-trace",
            "run",
            "--trace-dir",
            str(traces),
            "--otlp",
            "--",
            sys.executable,
            str(script),
        ],
        env=untraced_env(OTEL_SDK_DISABLED="true"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert not list(traces.glob("otlp-*"))


def test_file_compressed_at_exit_is_read_on_from_its_offset(tmp_path: Path) -> None:
    """inspect gzips its trace file at exit (trace-PID.log -> trace-PID.log.gz): the
    exporter goes on in the compressed file from where it stopped, sending nothing twice."""
    import gzip

    w = FileWriter(tmp_path, dead_pid())
    w.end(w.enter("Subprocess", "true 1", "g-1"), "exit", 0.1)
    first, _ = export(tmp_path)
    assert [s.attributes["autotrace.trace_id"] for s in first.get_finished_spans()] == ["g-1"]
    w.end(w.enter("Subprocess", "true 2", "g-2"), "exit", 0.1)
    with open(w.path, "rb") as plain, gzip.open(str(w.path) + ".gz", "wb") as packed:
        packed.write(plain.read())
    w.path.unlink()
    then, _ = export(tmp_path)
    assert [s.attributes["autotrace.trace_id"] for s in then.get_finished_spans()] == ["g-2"]


def test_no_secret_of_inspect_native_records_goes_out(tmp_path: Path) -> None:
    """inspect's own Subprocess detail for Docker carries `--env K=V`: masked in the span."""
    native = tmp_path / "trace-99999998.log"
    detail = "docker exec --env OPENAI_API_KEY=sk-proj-0123456789abcdefghijklmnopqrstuv c1 ls"
    base = {"timestamp": "2026-11-29T05:00:00.000000+00:00", "level": "TRACE"}
    base |= {"action": "Subprocess", "trace_id": "d1", "detail": detail}
    native.write_text(
        json.dumps({**base, "message": f"Subprocess: {detail} (enter)", "event": "enter"})
        + "\n"
        + json.dumps(
            {
                **base,
                "message": f"Subprocess: {detail} (error)",
                "event": "error",
                "duration": 1.0,
                "error": f"failed: {detail}",
                "error_type": "RuntimeError",
            }
        )  # fmt: skip
        + "\n"
    )
    memory, _ = export(tmp_path, paths=[native], run_id=None)
    (span,) = memory.get_finished_spans()
    sent = json.dumps(
        [dict(span.attributes), [dict(e.attributes) for e in span.events], span.status.description]
    )
    assert "sk-proj-0123456789" not in sent
    assert "OPENAI_API_KEY=***" in span.attributes["process.command_line"]


def test_the_exporter_and_the_timeline_see_the_same_actions(tmp_path: Path) -> None:
    """One span model (autotrace.read.spans): the OTLP spans and the timeline's spans of the
    same files have the same actions, times, outcomes and parents."""
    from autotrace.read.spans import read_spans

    pid = dead_pid()
    w = FileWriter(tmp_path, pid)
    outer = w.enter("Subtask", "solve", "o-1")
    for i in range(5):
        step = w.enter("Tool Call", f"step({i})", f"s-{i}", parent="o-1")
        w.end(step, ("exit", "error", "timeout", "cancel", "exit")[i], 0.25 * (i + 1))
    w.enter("Subprocess", "sleep 600", "h-1", parent="o-1", child_pid=4)  # abandoned
    w.end(outer, "exit", 3.0)  # an end whose action stays the same span
    memory, _ = export(tmp_path)
    sent = {
        s.attributes["autotrace.trace_id"]: (
            s.start_time,
            s.end_time,
            s.attributes["autotrace.outcome"],
            s.parent.span_id if s.parent else None,
        )
        for s in memory.get_finished_spans()
        if not s.attributes.get("logfire.span_type")
    }
    timeline = read_spans(tmp_path, RUN)
    by_index = {s.index: s for s in timeline}
    drawn = {
        s.trace_id: (
            int(s.start * 1e9),
            int(timeline.end_of(s.index) * 1e9) if s.end is None else int(s.end * 1e9),
            s.outcome,
            action_span_id(RUN, by_index[s.parent].trace_id) if s.parent is not None else None,
        )
        for s in timeline
    }
    assert set(sent) == set(drawn) == {"o-1", "h-1", *(f"s-{i}" for i in range(5))}
    for trace_id, (start, end, outcome, parent) in drawn.items():
        assert sent[trace_id][0] == start and sent[trace_id][2] == outcome, trace_id
        assert sent[trace_id][3] == parent, trace_id
        assert abs(sent[trace_id][1] - end) <= 1_000, trace_id  # the abandoned: last write
