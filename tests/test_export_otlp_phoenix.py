"""`inspect-trace run --otlp` against a real backend (Arize Phoenix on 127.0.0.1).

A real `inspect eval` hangs in a tool two processes down: the running action is read
back from Phoenix within 5 s, with the watchdog's stack once reported; after the run is
killed, the whole tree with its parents across both processes. Then the faults: the
backend down at start, killed mid-run, slow (accepts and never answers): the program's
exit code and timing are unchanged, and no span is lost once the backend is back.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import untraced_env, wait_for
from phoenix_server import FaultyLink, Phoenix, phoenix  # noqa: F401  (pytest fixture)
from test_e2e_inspect import (  # noqa: F401  (llm_process: a pytest fixture)
    TASKS,
    base_env,
    llm_process,
    running,
    trace_records,
)
from test_export_otlp import exporters_of

from autotrace.export.spans import action_span_id, run_trace_id
from autotrace.read.files import read_header

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
VISIBLE_WITHIN = 5.0  # seconds from `enter` written to the pending span read back


def maybe_run_id(directory: Path) -> str | None:
    for path in directory.glob("trace-*.log*"):
        header = read_header(path)
        if header and header.run_id:
            return header.run_id
    return None


def run_id_of(directory: Path) -> str:
    run_id = maybe_run_id(directory)
    assert run_id is not None, f"no process record in {directory}"
    return run_id


def exporter_finished(directory: Path) -> bool:
    return any("spans (" in p.read_text() for p in directory.glob("otlp-*.log"))


def final_spans(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Our trace id -> the span that ended the action (not a pending span)."""
    return {
        s["attributes"]["autotrace.trace_id"]: s
        for s in spans
        if "logfire.span_type" not in s["attributes"]
    }


@pytest.fixture
def eval_proc() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_hung_eval_visible_while_it_hangs_then_the_whole_tree(
    tmp_path: Path,
    phoenix: Phoenix,  # noqa: F811
    llm_process: Any,  # noqa: F811
    eval_proc: list[Any],
) -> None:
    llm = llm_process(
        [{"do": "reply", "tool_calls": [{"name": "child_sleeper", "arguments": {"seconds": 600}}]}]
    )
    env = base_env(tmp_path, llm)
    traces = tmp_path / "traces"
    command = [
        str(BIN / "inspect-trace"), "run", "--trace-dir", str(traces), "--stuck-after", "2",
        "--otlp", phoenix.otlp_endpoint, "--",
        str(BIN / "inspect"), "eval", "otlp_task.py@child_hang", "--model", "openai/test",
        "-M", "responses_api=false", "--display", "none", "--log-dir", str(tmp_path / "logs"),
        "--max-retries", "0",
    ]  # fmt: skip
    with open(tmp_path / "eval-output.txt", "wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=TASKS,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    eval_proc.append(proc)

    def sleeping() -> dict[str, Any] | None:
        assert proc.poll() is None, (tmp_path / "eval-output.txt").read_text()[-3000:]
        return next(
            (r for r in running(trace_records(traces)) if r.get("detail") == "sleep 600"), None
        )

    sleep = wait_for(sleeping, timeout=60, what="the Subprocess 'sleep 600' in the trace files")
    run_id = run_id_of(traces)
    trace_id = run_trace_id(run_id)

    def pending_in_phoenix() -> dict[str, Any] | None:
        # what a user asks Phoenix: the spans of the run that are still running
        running_now = phoenix.spans(trace_id, attribute="autotrace.state:running")
        return next(
            (s for s in running_now if s["attributes"]["autotrace.trace_id"] == sleep["trace_id"]),
            None,
        )

    pending = wait_for(pending_in_phoenix, timeout=30, what="the running action in Phoenix")
    lag = time.time() - sleep["start_time"]
    assert lag <= VISIBLE_WITHIN, f"visible {lag:.1f} s after its enter"
    assert pending["attributes"]["autotrace.state"] == "running"
    assert pending["attributes"]["logfire.span_type"] == "pending_span"
    assert pending["parent_id"] == f"{action_span_id(run_id, sleep['trace_id']):016x}"
    assert pending["name"] == "Subprocess sleep"

    def stack_in_phoenix() -> dict[str, Any] | None:
        return next(
            (
                s
                for s in phoenix.spans(trace_id)
                if s["attributes"].get("autotrace.trace_id") == sleep["trace_id"]
                and any(e["name"] == "autotrace.stuck" for e in s["events"])
            ),
            None,
        )

    stacked = wait_for(stack_in_phoenix, timeout=30, what="the watchdog's stack in Phoenix")
    (event,) = [e for e in stacked["events"] if e["name"] == "autotrace.stuck"]
    assert "subprocess.py" in event["attributes"]["autotrace.stack"]

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    wait_for(lambda: exporter_finished(traces), timeout=60, what="the exporter's end")

    records = trace_records(traces)
    enters = {r["trace_id"]: r for r in records if r.get("event") == "enter"}
    # Phoenix writes what it accepted a moment later
    wait_for(lambda: set(final_spans(phoenix.spans(trace_id))) >= set(enters), 30, "every span")
    spans = phoenix.spans(trace_id)
    final = final_spans(spans)
    assert set(final) == set(enters), set(enters) ^ set(final)  # no action lost
    by_id = {s["context"]["span_id"]: s for s in spans}
    for tid, span in final.items():
        assert span["context"]["span_id"] == f"{action_span_id(run_id, tid):016x}"
        if span["parent_id"] is not None:
            assert span["parent_id"] in by_id, (span["name"], "parent missing")

    # the tree across two processes: sleep 600 (child) -> python -c (eval) -> Tool Call
    def parent_of(span: dict[str, Any]) -> dict[str, Any]:
        return by_id[span["parent_id"]]

    hang = final[sleep["trace_id"]]
    assert hang["attributes"]["autotrace.outcome"] == "abandoned"
    assert hang["status_code"] == "ERROR"
    assert any(e["name"] == "autotrace.stuck" for e in hang["events"])
    spawner = parent_of(hang)
    assert spawner["name"] == "Subprocess python" or spawner["name"].startswith("Subprocess py")
    assert spawner["attributes"]["process.pid"] == enters[sleep["trace_id"]]["pid"]
    tool = parent_of(spawner)
    assert tool["name"] == "execute_tool child_sleeper"
    assert tool["span_kind"] == "TOOL" and tool["attributes"]["gen_ai.tool.name"] == "child_sleeper"
    models = [s for s in final.values() if s["attributes"]["autotrace.action"] == "Model"]
    assert models and all(m["span_kind"] == "LLM" for m in models)
    assert models[0]["attributes"]["gen_ai.request.model"] == "test"
    assert models[0]["attributes"]["gen_ai.provider.name"] == "openai"
    pids = {r.get("pid") for r in enters.values() if r.get("pid")}
    assert len(pids) >= 2
    print(f"[otlp figures] running action visible in Phoenix {lag:.2f} s after its enter")
    print(
        "[otlp figures] Phoenix: GET /v1/projects/default/spans?trace_id=<run>&attribute=autotrace.state:running"
    )
    for line in _tree(final, pending["attributes"]["autotrace.trace_id"]):
        print(f"[otlp figures]   {line}")


def _tree(final: dict[str, dict[str, Any]], hung: str) -> list[str]:
    """The run's spans as an indented tree: name, outcome, span kind."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in final.values():
        children.setdefault(span["parent_id"], []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["start_time"]):
            a = span["attributes"]
            mark = "  <- the hang" if a["autotrace.trace_id"] == hung else ""
            kind, outcome = span["span_kind"], a["autotrace.outcome"]
            lines.append(f"{'  ' * depth}{span['name']} [{kind}] {outcome}{mark}")
            walk(span["context"]["span_id"], depth + 1)

    walk(None, 0)
    return lines


def test_finished_eval_keeps_its_exit_code_and_every_action_arrives(
    tmp_path: Path,
    phoenix: Phoenix,  # noqa: F811
    llm_process: Any,  # noqa: F811
) -> None:
    llm = llm_process(
        [{"do": "reply", "tool_calls": [{"name": "child_sleeper", "arguments": {"seconds": 0}}]}]
    )
    env = base_env(tmp_path, llm)
    traces = tmp_path / "traces"
    command = [
        str(BIN / "inspect-trace"), "run", "--trace-dir", str(traces),
        "--otlp", phoenix.otlp_endpoint, "--",
        str(BIN / "inspect"), "eval", "otlp_task.py@child_hang", "--model", "openai/test",
        "-M", "responses_api=false", "--display", "none", "--log-dir", str(tmp_path / "logs"),
        "--max-retries", "0",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=TASKS, env=env, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    wait_for(lambda: exporter_finished(traces), timeout=60, what="the exporter's end")
    # inspect compresses its trace file at exit; the exporter read it to the end anyway
    records = [
        json.loads(line)
        for path in traces.glob("trace-*.log*")
        for line in (
            gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        ).splitlines()
        if line.strip()
    ]
    enters = {r["trace_id"] for r in records if r.get("event") == "enter"}
    trace_id = run_trace_id(run_id_of(traces))
    wait_for(lambda: set(final_spans(phoenix.spans(trace_id))) >= enters, 30, "every span")
    final = final_spans(phoenix.spans(trace_id))
    assert set(final) == enters
    assert not [s for s in final.values() if s["status_code"] == "ERROR"]
    assert any(s["attributes"]["autotrace.action"] == "Run Task" for s in final.values())


# -- faults ------------------------------------------------------------------------------

PROGRAM = """
import os, subprocess, sys, time
go = sys.argv[1]
def work(n):
    t = time.perf_counter()
    for _ in range(n):
        subprocess.run(["true"])
    return time.perf_counter() - t
first = work(40)
deadline = time.time() + 120
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
second = work(40)
print(f"{first:.3f} {second:.3f}")
sys.exit(7)
"""


class Program:
    """PROGRAM under `inspect-trace run` (``--otlp`` when an endpoint is given)."""

    def __init__(self, tmp_path: Path, endpoint: str | None, **env: str) -> None:
        self.dir = tmp_path
        self.traces = tmp_path / "traces"
        self.go = tmp_path / "go"
        script = tmp_path / "prog.py"
        script.write_text(PROGRAM)
        command = ["inspect-trace", "run", "--trace-dir", str(self.traces)]
        if endpoint:
            command += ["--otlp", endpoint]
        command += ["--", sys.executable, str(script), str(self.go)]
        self.proc = subprocess.Popen(
            command,
            env=untraced_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def finish(self) -> tuple[int, float, float, str]:
        self.go.touch()
        out, err = self.proc.communicate(timeout=120)
        first, second = (float(x) for x in out.split())
        return self.proc.returncode, first, second, err

    def actions(self) -> set[str]:
        return {r["trace_id"] for r in trace_records(self.traces) if r.get("event") == "enter"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> float:
    """The program's time for 40 subprocess calls, traced without OTLP (best of two)."""
    times = []
    for _ in range(2):
        code, first, second, _ = Program(tmp_path_factory.mktemp("base"), None).finish()
        assert code == 7
        times += [first, second]
    return min(times)


def exporter_failed(program: Program) -> bool:
    """Whether the exporter has tried and failed to send (its log says so)."""
    text = "".join(p.read_text() for p in program.traces.glob("otlp-*.log"))
    return any(m in text for m in ("cannot send", "Transient error", "Failed to export"))


def within_noise(elapsed: float, baseline: float) -> bool:
    return elapsed <= baseline * 1.5 + 0.3


def all_arrive(backend: Phoenix, program: Program) -> None:
    trace_id = run_trace_id(run_id_of(program.traces))
    expected = program.actions()
    wait_for(
        lambda: set(final_spans(backend.spans(trace_id))) >= expected,
        timeout=120,
        what=f"all {len(expected)} spans in Phoenix",
    )
    assert set(final_spans(backend.spans(trace_id))) == expected


def test_backend_down_at_start(
    tmp_path: Path,
    phoenix: Phoenix,  # noqa: F811
    baseline: float,
) -> None:
    link = FaultyLink(phoenix.port)  # refuses: nothing listens
    try:
        program = Program(tmp_path, link.url)
        code, first, second, err = program.finish()
        assert code == 7 and err == ""
        assert within_noise(first, baseline) and within_noise(second, baseline), (first, second)
        wait_for(lambda: exporter_failed(program), 60, "the exporter to meet the closed port")
        link.set("forward")  # the backend is back
        all_arrive(phoenix, program)
    finally:
        link.close()


def test_backend_slow_accepts_and_never_answers(
    tmp_path: Path,
    phoenix: Phoenix,  # noqa: F811
    baseline: float,
) -> None:
    link = FaultyLink(phoenix.port)
    link.set("swallow")
    try:
        program = Program(tmp_path, link.url, OTEL_EXPORTER_OTLP_TIMEOUT="2")
        code, first, second, err = program.finish()
        assert code == 7 and err == ""
        assert within_noise(first, baseline) and within_noise(second, baseline), (first, second)
        wait_for(lambda: exporter_failed(program), 60, "the exporter to time out")
        link.set("forward")
        all_arrive(phoenix, program)
    finally:
        link.close()


def test_backend_killed_mid_run(
    tmp_path: Path,
    phoenix: Phoenix,  # noqa: F811
    baseline: float,
) -> None:
    program = Program(tmp_path, phoenix.otlp_endpoint)
    try:
        run_id = wait_for(lambda: maybe_run_id(program.traces), 30, "the run's first file")
        trace_id = run_trace_id(run_id)
        # the first half reaches the backend, then the backend dies
        wait_for(lambda: len(final_spans(phoenix.spans(trace_id))) >= 40, 60, "first half")
        phoenix.kill()
        code, first, second, err = program.finish()  # the second half, backend dead
        assert code == 7 and err == ""
        assert within_noise(second, baseline), (second, baseline)
        wait_for(lambda: exporter_failed(program), 60, "the exporter to meet the dead backend")
    finally:
        if phoenix.proc is not None and phoenix.proc.poll() is not None:
            phoenix.start()  # the backend comes back on the same port, with its data
    all_arrive(phoenix, program)


def test_exporter_killed_then_restarted_resumes_where_it_stopped(
    tmp_path: Path,
    phoenix: Phoenix,  # noqa: F811
) -> None:
    program = Program(tmp_path, phoenix.otlp_endpoint)
    run_id = wait_for(lambda: maybe_run_id(program.traces), 30, "the run's first file")
    trace_id = run_trace_id(run_id)
    wait_for(lambda: len(final_spans(phoenix.spans(trace_id))) >= 40, 60, "first half")
    wait_for(lambda: saved_offset(program.traces) > 0, 10, "the saved offsets")
    (pid,) = exporters_of(program.traces)
    os.kill(pid, signal.SIGKILL)  # the exporter dies; the program goes on
    code, _, _, err = program.finish()
    assert code == 7 and err == ""
    result = subprocess.run(
        [str(BIN / "inspect-trace"), "export", "--run", run_id, "--trace-dir",
         str(program.traces), "--endpoint", phoenix.otlp_endpoint],
        env=untraced_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # only the second half is sent: the first was saved as accepted before the kill
    assert "sent 40 spans (0 pending)" in result.stderr, result.stderr
    all_arrive(phoenix, program)


def saved_offset(traces: Path) -> int:
    total = 0
    for path in traces.glob("otlp-state-*.json"):
        try:
            total += sum(f["offset"] for f in json.loads(path.read_text())["files"].values())
        except (ValueError, KeyError, OSError):
            continue
    return total


def test_export_over_grpc(tmp_path: Path, phoenix: Phoenix) -> None:  # noqa: F811
    program = Program(tmp_path, None)  # traced, nothing sent while it runs
    code, _, _, _ = program.finish()
    assert code == 7
    run_id = run_id_of(program.traces)
    env = untraced_env(OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    result = subprocess.run(
        [str(BIN / "inspect-trace"), "export", "--run", run_id, "--trace-dir",
         str(program.traces), "--endpoint", f"http://127.0.0.1:{phoenix.grpc_port}"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    all_arrive(phoenix, program)
