"""End to end with the real inspect: `inspect-trace run -- inspect eval ...`, killed mid-hang.

Each scenario starts a traced `inspect eval` (cwd = tests/inspect_tasks, inspect's openai
provider pointed at tests/llm_server.py run as its own process), waits on the trace files
until the culprit action has started, SIGKILLs the run's process group, then asks both
`inspect-trace anomalies` and the real `inspect trace anomalies` what was running.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from s3_server import moto_endpoint, s3_server  # noqa: F401  (pytest fixtures)

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent
TASKS = TESTS / "inspect_tasks"
BIN = Path(sys.executable).parent
DEADLINE = 40.0  # seconds for the culprit to appear


class LLMProcess:
    """tests/llm_server.py as a separate process (the eval talks to it over HTTP)."""

    def __init__(self, directory: Path, script: list[dict[str, Any]]) -> None:
        port_file = directory / "llm-port"
        port_file.unlink(missing_ok=True)  # an earlier server's port would be read as this one's
        self.requests_log = directory / "llm-requests.jsonl"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(TESTS / "llm_server.py"),
                "--port-file",
                str(port_file),
                "--script",
                json.dumps(script),
                "--requests-log",
                str(self.requests_log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(
            lambda: port_file.exists() and port_file.read_text().strip(),
            timeout=DEADLINE,
            what="llm server port",
        )
        self.url = f"http://127.0.0.1:{int(port_file.read_text())}/v1"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def llm_process(tmp_path: Path) -> Iterator[Callable[[list[dict[str, Any]]], LLMProcess]]:
    started: list[LLMProcess] = []

    def start(script: list[dict[str, Any]]) -> LLMProcess:
        server = LLMProcess(tmp_path, script)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def trace_records(directory: Path) -> list[dict[str, Any]]:
    """Every whole record of every trace file in ``directory`` (a live file may end mid-line)."""
    out: list[dict[str, Any]] = []
    for path in sorted(directory.glob("trace-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def running(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``enter`` records without an end record."""
    ended = {r["trace_id"] for r in records if "action" in r and r.get("event") != "enter"}
    return [
        r
        for r in records
        if "action" in r and r.get("event") == "enter" and r["trace_id"] not in ended
    ]


class EvalRun:
    """A traced `inspect eval` in its own process group."""

    def __init__(
        self,
        tmp_path: Path,
        task: str,
        env: dict[str, str],
        trace_dir: Path | None,
        log_dir: str,
    ) -> None:
        command = [str(BIN / "inspect-trace"), "run"]
        if trace_dir is not None:
            command += ["--trace-dir", str(trace_dir)]
        command += [
            "--",
            str(BIN / "inspect"),
            "eval",
            f"hang_task.py@{task}",
            "--model",
            "openai/test",
            "-M",
            "responses_api=false",
            "--display",
            "none",
            "--log-dir",
            log_dir,
            "--max-retries",
            "0",
        ]
        self.output = tmp_path / "eval-output.txt"
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=TASKS,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_running(
        self, directory: Path, match: Callable[[dict[str, Any]], bool], what: str
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"eval ended ({self.proc.returncode}) before {what}:\n"
                    + self.output.read_text(errors="replace")[-3000:]
                )
            return next((r for r in running(trace_records(directory)) if match(r)), None)

        return wait_for(found, timeout=DEADLINE, what=what)  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)


@pytest.fixture
def eval_runs() -> Iterator[list[EvalRun]]:
    runs: list[EvalRun] = []
    yield runs
    for run in runs:
        run.kill()


def base_env(tmp_path: Path, llm: LLMProcess) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AUTOTRACE_", "INSPECT_", "OPENAI_"))
    }
    env.update(
        OPENAI_BASE_URL=llm.url,
        OPENAI_API_KEY="sk-fake-key-for-local-server",
        INSPECT_LOG_DIR=str(tmp_path / "logs"),
        XDG_DATA_HOME=str(tmp_path / "xdg-data"),  # inspect's default trace dir, isolated
        XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def anomalies(env: dict[str, str], *args: str, inspect: bool) -> dict[str, Any]:
    """`inspect trace anomalies --json` or `inspect-trace anomalies --json`, parsed."""
    command = (
        [str(BIN / "inspect"), "trace", "anomalies", "--json", *args]
        if inspect
        else [str(BIN / "inspect-trace"), "anomalies", "--json", *args]
    )
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def running_details(envelope: dict[str, Any]) -> list[tuple[str, str]]:
    return [(row["action"], row["detail"]) for row in envelope["running"]]


def default_trace_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_DATA_HOME"]) / "inspect_ai" / "traces"


def test_tool_subprocess_hang_is_running_under_its_tool_call(
    tmp_path: Path, llm_process: Any, eval_runs: list[EvalRun]
) -> None:
    """(a) a tool runs subprocess.run(['sleep', '600']) in a worker thread; no --trace-dir."""
    llm = llm_process(
        [{"do": "reply", "tool_calls": [{"name": "sleeper", "arguments": {"seconds": 600}}]}]
    )
    env = base_env(tmp_path, llm)
    directory = default_trace_dir(env)  # inspect's own default: both CLIs need no argument
    run = EvalRun(tmp_path, "tool_hang", env, None, str(tmp_path / "logs"))
    eval_runs.append(run)

    sleep = run.wait_running(
        directory,
        lambda r: r["action"] == "Subprocess" and r.get("detail") == "sleep 600",
        "the Subprocess 'sleep 600'",
    )
    run.kill()

    records = trace_records(directory)
    tool_calls = [r for r in running(records) if r["action"] == "Tool Call"]
    assert [r["detail"] for r in tool_calls] == ["sleeper(seconds=600)"]
    assert sleep["parent_id"] == tool_calls[0]["trace_id"]
    # one record pair per piece of work: inspect's Tool Call, our Subprocess
    assert len([r for r in records if r.get("action") == "Tool Call"]) == 1
    assert len([r for r in records if r.get("detail") == "sleep 600"]) == 1

    for inspect in (True, False):
        shown = running_details(anomalies(env, inspect=inspect))
        assert ("Subprocess", "sleep 600") in shown, (inspect, shown)
        assert ("Tool Call", "sleeper(seconds=600)") in shown, (inspect, shown)

    # Leaf first, in both of our views: the hung Subprocess is the first row, and its
    # chain of running ancestors ends with inspect's own Tool Call (Run Task before it).
    run_task = [r["trace_id"] for r in running(records) if r["action"] == "Run Task"]
    assert len(run_task) == 1
    for view in ((), ("--run",)):
        envelope = anomalies(env, *view, inspect=False)
        first = envelope["running"][0]
        assert (first["action"], first["detail"]) == ("Subprocess", "sleep 600"), view
        assert first["chain"] == [*run_task, tool_calls[0]["trace_id"]], (view, first)
        assert first["pid"] == sleep["pid"]
        tool = next(r for r in envelope["running"] if r["action"] == "Tool Call")
        assert tool["pid"] == sleep["pid"] and tool["waits_on_other"]  # the file's process


def test_model_server_silent_on_second_request_shows_running_generate(
    tmp_path: Path, llm_process: Any, eval_runs: list[EvalRun]
) -> None:
    """(b) the model answers with a tool call, then never answers the second request."""
    llm = llm_process(
        [
            {"do": "reply", "tool_calls": [{"name": "sleeper", "arguments": {"seconds": 0}}]},
            {"do": "hang"},
        ]
    )
    env = base_env(tmp_path, llm)
    directory = tmp_path / "traces"
    run = EvalRun(tmp_path, "tool_hang", env, directory, str(tmp_path / "logs"))
    eval_runs.append(run)

    def second_generate(record: dict[str, Any]) -> bool:
        if record["action"] != "Model":
            return False
        models = [r for r in trace_records(directory) if r.get("action") == "Model"]
        return len([r for r in models if r["event"] == "enter"]) == 2

    model = run.wait_running(directory, second_generate, "the second generate")
    wait_for(
        lambda: len(llm.requests_log.read_text().splitlines()) >= 2,
        timeout=DEADLINE,
        what="second request",
    )
    run.kill()

    assert model["detail"] == "generate (openai/test)"
    records = trace_records(directory)
    # one generate is one Model action (inspect's), not two (no client-level duplicate)
    assert len([r for r in records if r.get("action") == "Model" and r["event"] == "enter"]) == 2
    files = sorted(directory.glob("trace-*.log"))
    eval_file = next(f for f in files if model["trace_id"] in f.read_text())
    # inspect's own records of the run are in the directory, in the eval process's file
    assert any(r.get("action") == "Run Task" for r in trace_records(directory))
    default = default_trace_dir(env)
    assert not default.exists() or not any(default.iterdir())  # none left in inspect's dir

    ours = running_details(anomalies(env, "--trace-dir", str(directory), inspect=False))
    theirs = running_details(anomalies(env, str(eval_file), inspect=True))
    for shown in (ours, theirs):
        assert ("Model", "generate (openai/test)") in shown, shown
        assert not any(action == "Tool Call" for action, _ in shown), shown


def test_s3_log_dir_that_stops_answering_shows_running_log_write(
    tmp_path: Path,
    llm_process: Any,
    eval_runs: list[EvalRun],
    s3_server: Any,  # noqa: F811
) -> None:
    """(c) --log-dir s3://... whose server stops answering after the first write."""
    llm = llm_process([{"do": "reply", "delay": 3}])
    bucket = s3_server.bucket("eval-logs")
    proxy = s3_server.stallable()
    env = base_env(tmp_path, llm)
    env.update(s3_server.env)
    env.update(AWS_ENDPOINT_URL=proxy.endpoint_url, AWS_ENDPOINT_URL_S3=proxy.endpoint_url)
    directory = tmp_path / "traces"
    run = EvalRun(tmp_path, "plain", env, directory, f"s3://{bucket}/logs")
    eval_runs.append(run)

    def first_write_done() -> bool:
        records = trace_records(directory)
        return any(r.get("action") == "Log Write" and r["event"] == "exit" for r in records)

    wait_for(first_write_done, timeout=DEADLINE, what="the first log write")
    proxy.stall()  # from now on the S3 endpoint accepts and never answers
    write = run.wait_running(
        directory,
        lambda r: r["action"] == "Log Write" and "s3://" in r.get("detail", ""),
        "a Log Write to S3 that hangs",
    )
    run.kill()

    assert write["detail"].startswith(f"s3://{bucket}/logs/")
    # the S3 call inside inspect's Log Write is ours, nested under it
    puts = [r for r in running(trace_records(directory)) if r["action"] == "S3"]
    assert [r["parent_id"] for r in puts] == [write["trace_id"]], puts
    eval_file = next(
        f for f in sorted(directory.glob("trace-*.log")) if write["trace_id"] in f.read_text()
    )
    ours = running_details(anomalies(env, "--trace-dir", str(directory), inspect=False))
    theirs = running_details(anomalies(env, str(eval_file), inspect=True))
    for shown in (ours, theirs):
        assert ("Log Write", write["detail"]) in shown, shown


def test_finished_eval_leaves_one_gzipped_file_with_native_and_agent_records(
    tmp_path: Path, llm_process: Any, eval_runs: list[EvalRun]
) -> None:
    """A run that ends: inspect gzips the shared file at exit and nothing of ours is lost."""
    llm = llm_process(
        [{"do": "reply", "tool_calls": [{"name": "sleeper", "arguments": {"seconds": 0}}]}]
    )
    env = base_env(tmp_path, llm)
    directory = tmp_path / "traces"
    run = EvalRun(tmp_path, "tool_hang", env, directory, str(tmp_path / "logs"))
    eval_runs.append(run)
    assert run.proc.wait(60) == 0, run.output.read_text(errors="replace")[-3000:]

    gz_files = list(directory.glob("trace-*.log.gz"))
    assert len(gz_files) == 1 and not list(directory.glob("trace-*.log"))
    with gzip.open(gz_files[0], "rt") as f:
        records = [json.loads(line) for line in f if line.strip()]
    actions = [r for r in records if "action" in r]
    assert not running(actions)
    tool = next(r for r in actions if r["action"] == "Tool Call")
    sleep = next(r for r in actions if r.get("detail") == "sleep 0" and r["event"] == "enter")
    assert "source" not in tool and sleep["source"] == "autotrace"  # inspect's, ours
    assert sleep["parent_id"] == tool["trace_id"]
    assert any(r["action"] == "Run Task" and r["event"] == "exit" for r in actions)
