"""The one row model and the one ranking: leaf first, chains of running ancestors, natives tied in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from autotrace import records
from autotrace.cli.main import main
from autotrace.read.model import ActionRow, Frame, anomalies_of, blamed_index, rank, shown_action
from autotrace.read.reader import TraceReader

T0 = 1_795_700_000.0
PID = 4321


def native(event: str, action: str, detail: str, tid: str, t: float) -> dict[str, Any]:
    """A record as inspect's own trace_action writes it: no pid, no parent."""
    out: dict[str, Any] = {
        "timestamp": "2026-11-27T03:00:00.000000+00:00",
        "level": "TRACE",
        "message": f"sample=1\n{action}: {detail} ({event})",
        "action": action,
        "detail": detail,
        "event": event,
        "trace_id": tid,
        "start_time": t,
        "task": "demo",
        "sample_id": 1,
    }
    return out


def native_parent(tid: str, parent: str) -> bytes:
    """What the agent writes when it adopts a native action that runs inside another."""
    return records.message_line(
        "[autotrace] native action parent",
        T0,
        {"event_kind": records.NATIVE_PARENT_KIND, "trace_id": tid, "parent_id": parent},
    )


def ours(action: str, detail: str, tid: str, t: float, parent: str | None) -> bytes:
    lines = records.ActionLines(
        action, detail, tid, pid=PID, thread="MainThread", task=None, parent_id=parent
    )
    return lines.line("enter", t, start_time=t)


def eval_file(tmp_path: Path, parent_in_enter: bool = False) -> Path:
    """An inspect eval hung in a tool's subprocess: Run Task > Tool Call > Subprocess, plus
    an unrelated native Log Write that is still open and a root (no link).

    The Tool Call's parent is named as this agent names it, in inspect's own enter line
    (``parent_in_enter``), or as earlier releases did, by a line of the agent's after it.
    """
    path = tmp_path / f"trace-{PID}.log"
    tool = native("enter", "Tool Call", "sleeper()", "tool", T0 + 10)
    if parent_in_enter:
        tool["parent_id"] = "run-task"
    path.write_bytes(
        b"".join(
            [
                json.dumps(native("enter", "Run Task", "demo", "run-task", T0)).encode() + b"\n",
                json.dumps(native("enter", "Log Write", "logs/x.eval", "log", T0 + 5)).encode()
                + b"\n",
                json.dumps(tool).encode() + b"\n",
                b"" if parent_in_enter else native_parent("tool", "run-task"),
                ours("Subprocess", "sleep 600", "sub", T0 + 11, "tool"),
            ]
        )
    )
    return path


def read(path: Path) -> TraceReader:
    reader = TraceReader(path.name)
    reader.feed(path.read_bytes())
    reader.close()
    return reader


@pytest.mark.parametrize("parent_in_enter", [True, False], ids=["in-enter", "own-line"])
def test_the_deepest_running_action_comes_first_with_its_chain(
    tmp_path: Path, parent_in_enter: bool
) -> None:
    path = eval_file(tmp_path, parent_in_enter)
    running = anomalies_of(read(path), as_of=T0 + 100, pid=PID).running
    assert [r.trace_id for r in running] == ["log", "sub", "tool", "run-task"]
    log, sub, tool, run_task = running
    # The Log Write has no link: a root of its own (and a leaf, older than the Subprocess).
    assert log.chain == () and log.leaf
    assert sub.chain == ("run-task", "tool") and sub.leaf
    assert (tool.chain, tool.leaf, run_task.leaf) == (("run-task",), False, False)
    # Natives get the file's process; ours keep theirs.
    assert {r.pid for r in running} == {PID}
    assert sub.as_json()["chain"] == ["run-task", "tool"]
    assert not sub.as_json()["waits_on_other"] and tool.as_json()["waits_on_other"]


def test_both_views_put_the_subprocess_first_and_show_the_chain(tmp_path: Path) -> None:
    path = eval_file(tmp_path)
    # Without the open Log Write the Subprocess is the first row of every view.
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(line for line in lines if b'"log"' not in line))
    runner = CliRunner()
    single = json.loads(runner.invoke(main, ["anomalies", str(path), "--json"]).output)
    run = json.loads(runner.invoke(main, ["anomalies", str(path), "--run", "--json"]).output)
    for envelope in (single, run):
        first = envelope["running"][0]
        assert (first["action"], first["detail"]) == ("Subprocess", "sleep 600")
        assert first["chain"] == ["run-task", "tool"]
    text = runner.invoke(main, ["anomalies", str(path)], env={"COLUMNS": "200"}).output
    assert "Run Task > Tool Call" in text
    assert text.index("sleep 600") < text.index("sleeper()")


def test_the_span_model_nests_a_native_action_under_the_parent_its_enter_names(
    tmp_path: Path,
) -> None:
    """The timeline, Perfetto and OTLP see the chain inspect's own enter line names."""
    from autotrace.read.spans import read_spans

    spans = read_spans(tmp_path, path=eval_file(tmp_path, parent_in_enter=True), now=T0 + 100)
    by_id = {spans.span(i).trace_id: spans.span(i) for i in range(len(spans))}
    assert by_id["tool"].parent_id == "run-task"
    assert by_id["tool"].parent == by_id["run-task"].index
    assert by_id["sub"].parent == by_id["tool"].index
    assert by_id["log"].parent is None


def test_a_native_parent_record_for_an_action_that_ended_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "trace-1.log"
    path.write_bytes(
        json.dumps(native("enter", "Tool Call", "t", "tool", T0)).encode()
        + b"\n"
        + native_parent("gone", "tool")
    )
    reader = read(path)
    assert reader.parents == {}


def row(tid: str, duration: float, parent: str | None = None, **kw: Any) -> ActionRow:
    return ActionRow(tid, "Tool Call", tid, "running", T0, duration, parent_id=parent, **kw)


def test_leaves_oldest_first_then_ancestors_innermost_first() -> None:
    rows = [
        row("outer", 100),
        row("mid", 90, "outer"),
        row("leaf-young", 10, "mid"),
        row("leaf-old", 80, "mid"),
        row("other-root", 50),
    ]
    ranked = rank(rows)
    assert [r.trace_id for r in ranked] == ["leaf-old", "other-root", "leaf-young", "mid", "outer"]
    assert ranked[0].chain == ("outer", "mid")


def test_adopted_links_and_cycles() -> None:
    ranked = rank(
        [row("sub", 30), row("child-root", 20), row("a", 5, "b"), row("b", 5, "a")],
        adopted={"child-root": "sub"},
    )
    by_id = {r.trace_id: r for r in ranked}
    assert by_id["child-root"].chain == ("sub",) and not by_id["sub"].leaf
    assert by_id["a"].chain == ("b",) and by_id["b"].chain == ("a",)  # a cycle ends the walk


def test_docker_subprocess_is_shown_as_docker() -> None:
    assert shown_action("Subprocess", "docker version --format json") == "Docker"
    assert shown_action("Subprocess", "/usr/bin/docker compose up") == "Docker"
    assert shown_action("Subprocess", "echo docker") == "Subprocess"
    assert shown_action("Subprocess", "sleep 600") == "Subprocess"
    assert shown_action("Tool Call", "docker") == "Tool Call"


def test_the_blamed_frame_is_an_index_into_the_frames() -> None:
    frames = (
        Frame("/w/main.py", 3, "<module>"),
        Frame("/w/tool.py", 9, "tool", "subprocess.run(...)"),
        Frame("/usr/lib/python3/subprocess.py", 2000, "_try_wait"),
    )
    assert blamed_index(frames, "/w/tool.py:9 in tool") == 1
    assert blamed_index(frames, "/w/tool.py:10 in tool") is None
    assert blamed_index(frames, "") is None
    assert blamed_index((Frame("C:/x: y.py", 1, "f in g"),), "C:/x: y.py:1 in f in g") == 0


def process_file(path: Path, run_id: str, pid: int, tid: str) -> Path:
    """A trace file of run ``run_id``: our process header, then one open action."""
    header = records.message_line(
        "[autotrace] process start",
        T0,
        {"event_kind": "process", "run_id": run_id, "pid": pid, "argv": ["python", "x.py"]},
    )
    lines = records.ActionLines(
        "Model", f"call {tid}", tid, pid=pid, thread="MainThread", task=None, parent_id=None
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + lines.line("enter", T0, start_time=T0))
    return path


def test_a_run_given_by_a_file_holds_that_file_whatever_its_name_or_folder(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from autotrace.read.run import run_of, run_view

    directory = tmp_path / "traces"
    process_file(directory / "trace-101.log", "R1", 101, "in-dir")
    elsewhere = process_file(tmp_path / "kept" / "notes.txt", "R1", 102, "elsewhere")
    run = run_of(directory, None, elsewhere)
    assert run.run_id == "R1" and set(run.processes) == {directory / "trace-101.log", elsewhere}
    view = run_view(run, T0 + 10)
    assert {r.trace_id for r in view.anomalies.running} == {"in-dir", "elsewhere"}
    # Each process's running rows are its file's, whatever pid the records carry.
    assert sorted(len(p.running) for p in view.processes) == [1, 1]
    # The directory's own file given by a relative path is read once, not twice.
    monkeypatch.chdir(directory)
    run = run_of(directory, None, Path("trace-101.log"))
    assert list(run.processes) == [directory / "trace-101.log"]


def test_a_run_passes_over_fifos_without_opening_them(tmp_path: Path) -> None:
    import os

    from autotrace.read.run import RunTrace

    path = process_file(tmp_path / "trace-101.log", "R1", 101, "a")
    os.mkfifo(tmp_path / "trace-9.log")  # would block a blocking open for a writer
    run = RunTrace(tmp_path, "R1")
    run.refresh()
    assert list(run.processes) == [path]
    path.unlink()
    os.mkfifo(path)  # the run's own file swapped for a FIFO
    assert run.refresh() is False and run.processes[path].gone
