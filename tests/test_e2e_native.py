"""inspect's own (native) actions get what ours get, and a hung eval goes on after `cancel`.

Real `inspect eval` runs under `inspect-trace run --stuck-after 2`:

- a Docker-sandbox task against a Docker daemon that never answers (a Unix socket that
  accepts and never replies, named by DOCKER_HOST; the real docker CLI): inspect traces
  ``docker version`` itself. The run's file starts with our process header, the watchdog
  reports the native Subprocess with its stack and child pid, `inspect-trace stacks PID`
  answers, and `inspect-trace cancel` on it ends the docker child: the eval exits;
- a tool that hangs in ``subprocess.run(["sleep", "600"])``: after `cancel` on that
  Subprocess the tool returns, the model is asked again and the eval finishes.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import components
import pytest
from conftest import wait_for
from test_e2e_inspect import BIN, TASKS, LLMProcess, base_env, llm_process  # noqa: F401

pytestmark = pytest.mark.slow

DEADLINE = 60.0


class SilentDaemon:
    """A Unix socket that accepts every connection and never answers (a wedged dockerd)."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="dockerd-")  # short: sun_path is 108 bytes
        self.path = os.path.join(self.directory, "docker.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(64)
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read or answered

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def silent_daemon() -> Iterator[SilentDaemon]:
    daemon = SilentDaemon()
    try:
        yield daemon
    finally:
        daemon.close()


class TracedEval:
    """`inspect-trace run --stuck-after 2 -- inspect eval FILE@TASK` (run execs: same pid)."""

    def __init__(self, tmp_path: Path, target: str, env: dict[str, str]) -> None:
        self.trace_dir = tmp_path / "traces"
        self.log_dir = tmp_path / "logs"
        self.output = tmp_path / "eval-output.txt"
        command = [
            *(str(BIN / "inspect-trace"), "run", "--stuck-after", "2"),
            *("--trace-dir", str(self.trace_dir), "--"),
            *(str(BIN / "inspect"), "eval", target, "--model", "openai/test"),
            *("-M", "responses_api=false", "--display", "none", "--max-retries", "0"),
            *("--log-dir", str(self.log_dir)),
        ]
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                command, cwd=TASKS, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.trace_dir.glob("trace-*.log*")):  # .log.gz once inspect exits
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", errors="replace") as file:
                lines = file.read().splitlines()
            for line in lines:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def wait_record(self, match: Any, what: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"eval ended ({self.proc.returncode}) before {what}:\n"
                    + self.output.read_text(errors="replace")[-3000:]
                )
            return next((r for r in self.records() if match(r)), None)

        return wait_for(found, timeout=DEADLINE, what=what)  # type: ignore[no-any-return]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "inspect-trace"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, COLUMNS="160"),
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


@pytest.fixture
def evals() -> Iterator[list[TracedEval]]:
    runs: list[TracedEval] = []
    yield runs
    for run in runs:
        run.kill()


def test_docker_sandbox_eval_against_a_silent_daemon_is_diagnosed_and_cancelled(
    tmp_path: Path,
    llm_process: Any,  # noqa: F811
    silent_daemon: SilentDaemon,
    evals: list[TracedEval],
) -> None:
    components.docker_cli()  # the real docker CLI, installed when missing
    llm = llm_process([])
    env = base_env(tmp_path, llm)
    env["DOCKER_HOST"] = f"unix://{silent_daemon.path}"
    run = TracedEval(tmp_path, "sandbox_task.py@docker_sandbox", env)
    evals.append(run)
    pid = run.proc.pid

    stuck = run.wait_record(
        lambda r: (
            r.get("event_kind") == "stack" and str(r.get("detail", "")).startswith("docker version")
        ),
        "a stuck report for docker version",
    )
    # The action is inspect's own: one enter record, written by inspect (no `source`).
    [enter] = [r for r in run.records() if r.get("trace_id") == stuck["trace_id"] and "action" in r]
    assert (enter["action"], enter["event"]) == ("Subprocess", "enter") and "source" not in enter
    assert stuck["stack_source"] == "task" and stuck["stack"]
    assert any("docker" in f["file"] for f in stuck["stack"])  # inspect's docker prereqs
    assert stuck["child_pid"] > 0

    # Our header is the file's first line, though inspect wrote this action.
    first = json.loads((run.trace_dir / f"trace-{pid}.log").read_text().splitlines()[0])
    assert first["message"] == "[autotrace] process start" and first["pid"] == pid

    snapshot = run.cli("stacks", str(pid), "--json")
    assert snapshot.returncode == 0, snapshot.stderr
    assert stuck["trace_id"] in [a["trace_id"] for a in json.loads(snapshot.stdout)["actions"]]

    anomalies = run.cli("anomalies", "--trace-dir", str(run.trace_dir), "--json")
    assert anomalies.returncode == 0, anomalies.stderr
    first_row = json.loads(anomalies.stdout)["running"][0]
    assert first_row["trace_id"] == stuck["trace_id"]
    print(run.cli("anomalies", "--trace-dir", str(run.trace_dir)).stdout)  # shown with -s

    cancelled = run.cli("cancel", str(pid), stuck["trace_id"])
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"child process {stuck['child_pid']} (SIGTERM)" in cancelled.stdout
    # inspect sees docker fail, gives up on the sandbox, and the eval exits.
    run.proc.wait(DEADLINE)
    records = run.records()
    ends = [r for r in records if r.get("trace_id") == stuck["trace_id"] and "action" in r]
    assert [r["event"] for r in ends][:1] == ["enter"] and len(ends) == 2
    assert any(r.get("event_kind") == "cancel" and r.get("ok") for r in records)


def test_eval_whose_tool_hangs_in_a_subprocess_finishes_after_cancel(
    tmp_path: Path,
    llm_process: Any,  # noqa: F811
    evals: list[TracedEval],
) -> None:
    llm = llm_process(
        [
            {"do": "reply", "tool_calls": [{"name": "sleeper", "arguments": {"seconds": 600}}]},
            {"do": "reply", "text": "slept"},
        ]
    )
    run = TracedEval(tmp_path, "hang_task.py@tool_hang", base_env(tmp_path, llm))
    evals.append(run)
    pid = run.proc.pid
    enter = run.wait_record(
        lambda r: r.get("event") == "enter" and r.get("detail") == "sleep 600",
        "the Subprocess sleep 600",
    )
    stuck = run.wait_record(
        lambda r: r.get("event_kind") == "stack" and r.get("trace_id") == enter["trace_id"],
        "its stuck report",
    )
    print(run.cli("anomalies", "--trace-dir", str(run.trace_dir)).stdout)  # shown with -s
    assert stuck["where"]

    cancelled = run.cli("cancel", str(pid), enter["trace_id"])
    assert cancelled.returncode == 0, cancelled.stderr
    assert run.proc.wait(DEADLINE) == 0, run.output.read_text(errors="replace")[-3000:]

    [end] = [
        r
        for r in run.records()
        if r.get("trace_id") == enter["trace_id"] and r.get("event") not in (None, "enter")
    ]
    assert (end["event"], end["ended_by"], end["returncode"]) == ("cancel", "cancel", -15)
    from inspect_ai.log import list_eval_logs, read_eval_log

    [info] = list_eval_logs(str(run.log_dir))
    log = read_eval_log(info)
    assert log.status == "success"
    # The tool returned, the model was asked again and answered: the sample completed.
    [sample] = log.samples or []
    assert sample.error is None and sample.output.completion == "slept"
    assert [m.role for m in sample.messages][-2:] == ["tool", "assistant"]
