"""Every action of a run as plain data (autotrace.read.spans), the timeline page's data
and its escaping, the Perfetto export's fields, and the two verbs' bad input."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_read_run import RUN, dead_pid, header, run_dir, stuck  # noqa: F401

from autotrace import records
from autotrace.cli import timeline
from autotrace.cli.main import main
from autotrace.export import perfetto
from autotrace.read.spans import read_spans


def enter(action: str, detail: str, trace_id: str, pid: int, t: float, **kw: str) -> bytes:
    lines = records.ActionLines(
        action,
        detail,
        trace_id,
        pid=pid,
        thread=kw.get("thread", "MainThread"),
        task=None,
        parent_id=kw.get("parent_id"),
    )
    return lines.line("enter", t, start_time=t)


def end(
    event: str, action: str, detail: str, trace_id: str, pid: int, t: float, duration: float, **kw
) -> bytes:
    lines = records.ActionLines(
        action,
        detail,
        trace_id,
        pid=pid,
        thread=kw.pop("thread", "MainThread"),
        task=None,
        parent_id=kw.pop("parent_id", None),
    )
    return lines.line(event, t, duration=duration, **kw)


@pytest.fixture
def one_process(tmp_path: Path) -> Path:
    """This (live) process's file: every outcome, nesting, an end without its enter."""
    directory = tmp_path / "traces"
    directory.mkdir()
    me, t = os.getpid(), time.time() - 20
    body = [
        header(me, None, ["python", "eval.py"], time.time()),
        enter("Subtask", "solve", "s-1", me, t),
        enter("Tool Call", "bash(cmd='ls')", "c-1", me, t + 1, parent_id="s-1"),
        end("exit", "Tool Call", "bash(cmd='ls')", "c-1", me, t + 2, 1.0, parent_id="s-1"),
        enter("Model", "generate (m)", "m-1", me, t + 2, parent_id="s-1"),
        end("error", "Model", "generate (m)", "m-1", me, t + 3, 1.0, error=RuntimeError("boom")),
        enter("Subprocess", "sleep 9", "p-1", me, t + 3),
        end("timeout", "Subprocess", "sleep 9", "p-1", me, t + 4, 1.0),
        enter("Model", "generate (m)", "m-2", me, t + 4),
        end("cancel", "Model", "generate (m)", "m-2", me, t + 5, 1.0),
        end("exit", "S3", "PutObject s3://b/k", "lost-1", me, t + 6, 0.5),  # enter rotated away
        enter("Subprocess", "sleep 600", "p-2", me, t + 6, parent_id="s-1"),
        enter("Subprocess", "sleep 600", "p-2", me, t + 6, parent_id="s-1"),  # file reopened
        stuck("p-2", "/work/eval.py", 7, "hang", t + 8),
    ]
    (directory / f"trace-{me}.log").write_bytes(b"".join(body))
    return directory


def test_spans_pair_each_enter_with_its_end_keeping_outcome_parent_and_stack(
    one_process: Path,
) -> None:
    spans = read_spans(one_process)
    by_id = {s.trace_id: s for s in spans}
    assert sorted(by_id) == ["c-1", "lost-1", "m-1", "m-2", "p-1", "p-2", "s-1"]
    assert len(spans) == 7  # the re-written enter of p-2 is the same action
    assert by_id["c-1"].parent == by_id["s-1"].index
    assert by_id["c-1"].end == pytest.approx(by_id["c-1"].start + 1.0)
    assert by_id["m-1"].error == "boom"
    assert by_id["s-1"].end is None and by_id["s-1"].outcome == "running"
    assert by_id["lost-1"].end - by_id["lost-1"].start == pytest.approx(0.5)
    culprit = spans.span(spans.culprit)  # type: ignore[arg-type]
    assert culprit.trace_id == "p-2" and culprit.where == "/work/eval.py:7 in hang"
    assert [(f.file, f.line, f.function) for f in culprit.frames] == [("/work/eval.py", 7, "hang")]
    [report] = spans.stuck
    assert report.span == culprit.index
    assert spans.processes[0].argv == ["python", "eval.py"]


def test_culprit_is_the_one_anomalies_run_ranks_first_and_dead_actions_are_abandoned(
    run_dir: Path,  # noqa: F811
) -> None:
    result = CliRunner().invoke(
        main, ["anomalies", "--run", RUN, "--json", "--trace-dir", str(run_dir)]
    )
    first = json.loads(result.output)["running"][0]
    spans = read_spans(run_dir, RUN)
    culprit = spans.span(spans.culprit)  # type: ignore[arg-type]
    assert (culprit.trace_id, culprit.pid) == (first["trace_id"], first["pid"])
    assert culprit.outcome == "abandoned" and culprit.end is None
    # An abandoned bar ends at its process's last write, like the duration anomalies shows.
    assert spans.end_of(culprit.index) - culprit.start == pytest.approx(first["duration"], abs=0.01)
    child = spans.processes[culprit.process]
    assert child.state == "dead"
    spawner = spans.span(child.spawned_by)  # type: ignore[arg-type]
    assert (spawner.detail, spawner.child_pid) == ("python child.py", child.pid)
    assert all(s.detail != "other" for s in spans)  # another run's file is left out
    assert [spans.processes[n].argv[1] for n, _ in spans.process_tree()] == [
        "parent.py",
        "child.py",
    ]


def test_one_file_without_run_reads_only_that_file(run_dir: Path) -> None:  # noqa: F811
    [child] = [p for p in run_dir.iterdir() if b'"child.py"]' in p.read_bytes()]
    spans = read_spans(run_dir, None, child, whole_run=False)
    assert {s.detail for s in spans} == {"sleep 600", "false"}


def test_records_are_redacted_again_for_the_page(tmp_path: Path) -> None:
    directory = tmp_path / "traces"
    directory.mkdir()
    me, t = os.getpid(), time.time()
    # As another tool (or an old inspect) may have written it: a token in the detail.
    secret = "sk-ant-api03-" + "A1b2C3d4E5f6G7h8" * 4
    (directory / f"trace-{me}.log").write_bytes(
        header(me, None, ["python", "x.py", "--api-key", "hunter2hunter2"], t)
        + enter("Model", f"generate key={secret}", "m-1", me, t)
    )
    spans = read_spans(directory)
    page = timeline.render_page(spans)
    assert secret not in page and "hunter2hunter2" not in page
    assert "generate key=" in page and "--api-key" in page


def test_infinite_or_nan_times_make_records_invalid_as_anomalies_reads_them(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "traces"
    directory.mkdir()
    me, t = os.getpid(), time.time()
    line = enter("Model", "inf", "m-1", me, t).replace(
        b'"start_time": ', b'"start_time": 1e999, "x": '
    )
    (directory / f"trace-{me}.log").write_bytes(
        header(me, None, ["python"], t)
        + line
        + end("exit", "Model", "inf", "m-1", me, t + 1, 1.0).replace(
            b'"duration": 1.0', b'"duration": NaN'
        )
        + enter("Model", "fine", "m-2", me, t + 2)
    )
    spans = read_spans(directory)
    # One reader for every verb: a time that is not finite makes the record invalid
    # (counted, never drawn), so the page and `anomalies` see the same actions.
    assert [s.trace_id for s in spans] == ["m-2"]
    assert spans.problems.total() == 2
    assert "m-2" in timeline.render_page(spans)


def test_a_lone_surrogate_in_a_record_is_written_to_the_page_and_the_perfetto_file(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "traces"
    directory.mkdir()
    me, t = os.getpid(), time.time()
    line = enter("Model", "odd", "m-1", me, t).replace(b'"detail": "odd"', b'"detail": "a\\ud800b"')
    (directory / f"trace-{me}.log").write_bytes(header(me, None, ["python"], t) + line)
    [span] = list(read_spans(directory))
    assert span.detail == "a\ud800b"  # as Python's json reads it (msgspec refuses the line)
    page, out = tmp_path / "page.html", tmp_path / "out.json"
    runner = CliRunner()
    for args in (["timeline", "-o", str(page)], ["export", "--format", "perfetto", "-o", str(out)]):
        result = runner.invoke(main, [*args, "--trace-dir", str(directory)])
        assert result.exit_code == 0, result.output
    assert "a?b" in page.read_text(encoding="utf-8")
    [slice_] = [e for e in json.loads(out.read_text())["traceEvents"] if e["ph"] == "X"]
    assert slice_["args"]["detail"] == "a\ud800b"


def test_records_the_reader_counts_as_invalid_never_become_spans(tmp_path: Path) -> None:
    directory = tmp_path / "traces"
    directory.mkdir()
    me, t = os.getpid(), time.time()
    (directory / f"trace-{me}.log").write_bytes(
        header(me, None, ["python"], t)
        + enter("Model", "ok", "m-1", me, t)
        + enter("Model", "odd", "m-2", me, t).replace(b'"enter"', b'"paused"')
        + enter("Model", "no id", "m-3", me, t).replace(b'"trace_id": "m-3", ', b"")
    )
    spans = read_spans(directory)
    assert [s.trace_id for s in spans] == ["m-1"]
    assert (spans.problems.unknown_event, spans.problems.invalid) == (1, 1)


def test_embedded_json_cannot_end_its_script_element() -> None:
    hostile = "</script><script>alert(1)</script><!-- \u2028\u2029 & <b>"
    text = timeline.embed_json({"s": hostile})
    for forbidden in ("<", ">", "&", "\u2028", "\u2029"):
        assert forbidden not in text
    assert json.loads(text) == {"s": hostile}


def _many(directory: Path, count: int) -> None:
    me, t = os.getpid(), time.time() - count
    out = [header(me, None, ["python", "many.py"], time.time())]
    out.append(enter("Subtask", "all", "root", me, t))
    for i in range(count):
        detail = f"step {i}"
        out.append(enter("Tool Call", detail, f"a-{i}", me, t + i, parent_id="root"))
        event = "error" if i % 97 == 0 else "exit"
        duration = 0.5 if i != 500 else 0.9
        out.append(end(event, "Tool Call", detail, f"a-{i}", me, t + i + duration, duration))
    (directory / f"trace-{me}.log").write_bytes(b"".join(out))


def test_page_keeps_the_telling_actions_when_capped(tmp_path: Path) -> None:
    _many(tmp_path, 1000)
    spans = read_spans(tmp_path)
    data = timeline.page_data(spans, max_bars=30)
    assert data["total"] == 1001
    bars = data["bars"]
    details = {data["strings"][d] for d in bars["detail"]}
    errors = {f"step {i}" for i in range(0, 1000, 97)}
    assert errors <= details  # every failed one
    assert "all" in details  # the running parent
    assert "step 500" in details  # the longest of the rest
    assert data["shown"] == len(bars["start"]) == 30
    assert sum(data["row_counts"]) == data["shown"]
    # every action still counts in the activity band: about one open action per second
    band = data["density"][0]
    assert max(band) == pytest.approx(1.5, abs=0.6)


def test_page_is_self_contained(one_process: Path) -> None:
    page = timeline.render_page(read_spans(one_process))
    assert "default-src 'none'" in page  # the page may load nothing, even if text got in
    for needle in ("http://", "https://", "src=", "<link", "@import"):
        assert needle not in page.replace('img-src data:"', "")


def _nests(events: list[dict]) -> bool:
    tracks: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e in events:
        if e["ph"] == "X":
            tracks.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for slices in tracks.values():
        stack: list[float] = []
        for start, stop in sorted(slices, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1] <= start:
                stack.pop()
            if stack and stop > stack[-1]:
                return False
            stack.append(stop)
    return True


def check_trace_event_json(document: dict) -> list[dict]:
    """The Trace Event fields we document (autotrace/export/perfetto.py), checked."""
    assert set(document) == {"traceEvents", "displayTimeUnit", "otherData"}
    assert document["displayTimeUnit"] in ("ms", "ns")
    events = document["traceEvents"]
    named_threads = set()
    flows: dict[int, list[dict]] = {}
    for e in events:
        assert e["ph"] in perfetto.FIELDS, e
        extra = set(e) - perfetto.FIELDS[e["ph"]]
        assert perfetto.FIELDS[e["ph"]] <= set(e), e
        assert not extra or (
            e["ph"] == "X" and extra in ({"bind_id", "flow_in"}, {"bind_id", "flow_out"})
        ), e
        if extra:
            assert extra <= perfetto.FLOW_FIELDS and isinstance(e["bind_id"], int), e
            flows.setdefault(e["bind_id"], []).append(e)
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert isinstance(e["name"], str) and isinstance(e["args"], dict)
        if e["ph"] == "M":
            assert e["name"] in {
                "process_name",
                "process_labels",
                "process_sort_index",
                "thread_name",
                "thread_sort_index",
            }
            if e["name"] == "thread_name":
                named_threads.add((e["pid"], e["tid"]))
        else:
            assert isinstance(e["ts"], (int, float)) and e["ts"] > 0
            assert isinstance(e["cat"], str)
        if e["ph"] == "X":
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
            assert e["args"]["outcome"] in (
                "exit",
                "error",
                "timeout",
                "cancel",
                "running",
                "abandoned",
            )
            assert (e["pid"], e["tid"]) in named_threads  # metadata comes first
        if e["ph"] == "i":
            assert e["s"] in ("g", "p", "t")
    assert _nests(events)
    for pair in flows.values():  # from a Subprocess slice to a slice of another process
        [start] = [e for e in pair if e.get("flow_out")]
        [end] = [e for e in pair if e.get("flow_in")]
        assert start["name"] in ("Subprocess", "Docker") and start["pid"] != end["pid"]
    return events


def test_perfetto_export_has_the_documented_fields_and_nests_per_track(
    one_process: Path, tmp_path: Path
) -> None:
    me, t = os.getpid(), time.time() - 5
    # Two actions on one thread that overlap without nesting: they need two tracks.
    with open(one_process / f"trace-{me}.log", "ab") as f:
        f.write(enter("Tool Call", "a", "o-1", me, t))
        f.write(enter("Tool Call", "b", "o-2", me, t + 1))
        f.write(end("exit", "Tool Call", "a", "o-1", me, t + 2, 2.0))
        f.write(end("exit", "Tool Call", "b", "o-2", me, t + 3, 2.0))
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        main, ["export", "--format", "perfetto", "--trace-dir", str(one_process), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    events = check_trace_event_json(json.loads(out.read_text()))
    slices = {e["args"]["trace_id"]: e for e in events if e["ph"] == "X"}
    assert slices["o-1"]["tid"] != slices["o-2"]["tid"]
    threads = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert sorted(threads.values()) == ["MainThread", "MainThread (2)"]
    running = slices["p-2"]
    assert running["args"]["running"] is True and running["args"]["culprit"] is True
    assert running["ts"] + running["dur"] == pytest.approx(
        json.loads(out.read_text())["otherData"]["as_of"] * 1e6, abs=1e6
    )
    [instant] = [e for e in events if e["ph"] == "i"]
    assert instant["args"]["where"] == "/work/eval.py:7 in hang" and instant["s"] == "t"
    assert slices["m-1"]["args"]["error"] == "boom" and slices["m-1"]["cat"] == "error"


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["timeline", str(tmp_path / "nope.log")])
    assert missing.exit_code == 1 and missing.output.count("\n") == 1
    assert "does not exist" in missing.output
    empty = runner.invoke(main, ["timeline", "--trace-dir", str(tmp_path)])
    assert empty.exit_code == 1 and "no trace file with a run id" in empty.output
    _many(tmp_path, 3)
    for verb in (["timeline"], ["export", "--format", "perfetto"]):
        unwritable = runner.invoke(
            main, [*verb, "--trace-dir", str(tmp_path), "-o", str(tmp_path / "no" / "x")]
        )
        assert unwritable.exit_code == 1
        assert (
            unwritable.output
            == f"Error: cannot write {tmp_path / 'no' / 'x'}: No such file or directory\n"
        )
    otlp = runner.invoke(main, ["export", "--trace-dir", str(tmp_path / "none")])
    assert otlp.exit_code == 1
    assert otlp.output == f"Error: no trace directory at {tmp_path / 'none'}\n"


def test_open_and_failed_spans_are_the_rows_anomalies_run_shows(tmp_path: Path) -> None:
    directory = tmp_path / "traces"
    directory.mkdir()
    me, t = os.getpid(), time.time() - 100
    pids = [me, dead_pid(), dead_pid()]
    for n, pid in enumerate(pids):
        body = [header(pid, None if n == 0 else me, ["python", f"p{n}.py"], time.time() - n)]
        for i in range(200 * (n + 1)):
            tid, parent = f"{pid}-{i}", f"{pid}-{i - 1}" if i % 3 else None
            body.append(enter("Tool Call", f"step {i % 17}", tid, pid, t + i, parent_id=parent))
            if i % 50 != 49:  # some stay open: running here, abandoned in the dead ones
                event = "error" if i % 7 == 0 else "exit"
                body.append(end(event, "Tool Call", "x", tid, pid, t + i + 0.5, 0.5, error=None))
        body.append(stuck(f"{pid}-49", f"/p{n}.py", n + 1, "wait", t + 60))
        (directory / f"trace-{pid}.log").write_bytes(b"".join(body))
    spans = read_spans(directory)
    assert len(spans) == 1200
    result = CliRunner().invoke(
        main, ["anomalies", "--run", "--json", "--trace-dir", str(directory)]
    )
    shown = json.loads(result.output)
    running = {(s.trace_id, s.pid) for s in spans if s.outcome in ("running", "abandoned")}
    assert running == {(r["trace_id"], r["pid"]) for r in shown["running"]}
    assert {s.trace_id for s in spans if s.outcome == "error"} == {
        r["trace_id"] for r in shown["errors"]
    }
    culprit = spans.span(spans.culprit)  # type: ignore[arg-type]
    assert (culprit.trace_id, culprit.pid) == (
        shown["running"][0]["trace_id"],
        shown["running"][0]["pid"],
    )
    assert culprit.where == shown["running"][0]["where"]
    by_index = {s.index: s for s in spans}
    for s in spans:  # parents within the file, as the records name them
        if s.parent is not None:
            assert by_index[s.parent].trace_id == s.parent_id


def test_perfetto_links_a_child_process_to_the_subprocess_that_started_it(
    run_dir: Path,  # noqa: F811
) -> None:
    events = check_trace_event_json(json.loads(_export(run_dir)))
    [source] = [e for e in events if e.get("flow_out")]
    [target] = [e for e in events if e.get("flow_in")]
    assert source["args"]["detail"] == "python child.py"
    assert target["args"]["detail"] == "sleep 600"
    assert source["bind_id"] == target["bind_id"]


def _export(directory: Path) -> str:
    import io

    out = io.StringIO()
    perfetto.write_trace(read_spans(directory, RUN), out)
    return out.getvalue()


def test_open_hands_the_page_to_the_web_browser(tmp_path: Path) -> None:
    import subprocess
    import sys

    _many(tmp_path, 3)
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(
        f"#!{sys.executable}\nimport sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n"
    )
    browser.chmod(0o755)
    page = tmp_path / "page.html"
    result = subprocess.run(
        [sys.executable, "-m", "autotrace", "timeline", "--trace-dir", str(tmp_path)]
        + ["-o", str(page), "--open"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BROWSER": str(browser)},
    )
    assert result.returncode == 0, result.stderr
    assert opened.read_text() == page.resolve().as_uri()
