"""Real programs that hang: the watchdog names the culprit and the script line it waits on.

Each test starts a traced program (stuck threshold 1 s), waits for its first stuck
record, checks that it came within 5 s of the threshold, then reads the anomalies
of the live process: the culprit is first among running actions and the line shown
is the script's line where it waits. The programs are killed in teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_server import LLMServer

from autotrace import config

pytestmark = pytest.mark.slow

SITECUSTOMIZE = Path(__file__).resolve().parent.parent / "sitecustomize_example"
STUCK_AFTER = 1.0
REPORT_WITHIN = 5.0


def marker_line(script: Path, marker: str = "WAITS") -> int:
    """The line of ``script`` that ends with ``# <marker>``."""
    for number, text in enumerate(script.read_text().splitlines(), 1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(f"no '# {marker}' in {script}")


class Traced:
    """Starts traced Python programs in their own session; kills them all at the end."""

    def __init__(self, workdir: Path, trace_dir: Path) -> None:
        self.workdir = workdir
        self.trace_dir = trace_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, launcher: bool = False, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        for name in (
            config.ENV_FILE,
            config.INSPECT_TRACE_FILE,
            config.ENV_RUN_ID,
            config.ENV_PARENT_PID,
            config.ENV_ACTIVE,
            config.ENV_DISABLE,
        ):
            env.pop(name, None)
        if not launcher:  # `inspect-trace run` sets these itself
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(SITECUSTOMIZE), env.get("PYTHONPATH", "")) if p
            )
            env[config.ENV_DIR] = str(self.trace_dir)
            env[config.ENV_STUCK_AFTER] = str(STUCK_AFTER)
        env.update(extra)
        return env

    def start(
        self, script: Path, launcher: bool = False, **extra_env: str
    ) -> subprocess.Popen[bytes]:
        """Start ``python script`` traced: through the example sitecustomize, or through
        `inspect-trace run --stuck-after` (which execs: same pid)."""
        command = [sys.executable, script.name]
        if launcher:
            command = [
                *(sys.executable, "-m", "autotrace", "run"),
                *("--stuck-after", str(STUCK_AFTER), "--trace-dir", str(self.trace_dir)),
                *("--", *command),
            ]
        proc = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=self.env(launcher, **extra_env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its children (sleep 600) die with it
        )
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()


@pytest.fixture
def silent_llm() -> Iterator[LLMServer]:
    """A local OpenAI-compatible server that reads every request and never answers."""
    with LLMServer([], default={"do": "hang"}) as server:
        yield server


def records_of(trace_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in trace_dir.glob("trace-*.log"):
        for line in path.read_bytes().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written right now
    return out


def wait_for_stuck(
    traced: Traced, matches: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> dict[str, Any]:
    """The first stuck record that ``matches`` (fails after ``timeout`` with the stderr)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rec in records_of(traced.trace_dir):
            if rec.get("event_kind") == "stack" and matches(rec):
                return rec
        for proc in traced.procs:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"traced program exited {proc.returncode}: {err}")
        time.sleep(0.05)
    pytest.fail(f"no stuck record within {timeout}s; records: {records_of(traced.trace_dir)}")


def assert_reported_in_time(stuck: dict[str, Any], trace_dir: Path) -> None:
    """The first stuck record of an action came at most 5 s after the threshold."""
    [enter] = [
        r
        for r in records_of(trace_dir)
        if r.get("trace_id") == stuck["trace_id"] and r.get("event") == "enter"
    ][:1]
    from datetime import datetime

    reported = datetime.fromisoformat(stuck["timestamp"]).timestamp()
    assert reported - enter["start_time"] <= STUCK_AFTER + REPORT_WITHIN
    assert stuck["age"] >= STUCK_AFTER


def anomalies(trace_dir: Path, *args: str) -> dict[str, Any]:
    """`inspect-trace anomalies --json` on the trace directory."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "autotrace",
            "anomalies",
            "--trace-dir",
            str(trace_dir),
            "--json",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def anomalies_text(trace_dir: Path, *args: str) -> str:
    """`inspect-trace anomalies` as people see it."""
    result = subprocess.run(
        [sys.executable, "-m", "autotrace", "anomalies", "--trace-dir", str(trace_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, COLUMNS="130"),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def where(script: Path, function: str) -> str:
    return f"{script}:{marker_line(script)} in {function}"


def test_worker_thread_in_subprocess_run_sleep_is_named_with_its_line(
    traced: Traced, tmp_path: Path
) -> None:
    script = tmp_path / "hang_subprocess.py"
    script.write_text(
        "import subprocess, threading\n"
        "\n"
        "def worker():\n"
        '    subprocess.run(["sleep", "600"])  # WAITS\n'
        "\n"
        'thread = threading.Thread(target=worker, name="worker")\n'
        "thread.start()\n"
        "thread.join()\n"
    )
    traced.start(script)
    stuck = wait_for_stuck(traced, lambda r: "sleep 600" in r.get("detail", ""))
    assert_reported_in_time(stuck, traced.trace_dir)

    culprit = anomalies(traced.trace_dir)["running"][0]
    assert culprit["action"] == "Subprocess" and culprit["detail"] == "sleep 600"
    assert culprit["where"] == where(script, "worker")
    assert any(f["file"].endswith("subprocess.py") for f in culprit["stack"])


def test_async_openai_call_to_a_server_that_never_answers_is_named_with_its_await(
    traced: Traced, tmp_path: Path, silent_llm: LLMServer
) -> None:
    script = tmp_path / "hang_openai.py"
    script.write_text(
        "import asyncio, os\n"
        "import openai\n"
        "\n"
        "async def ask(client):\n"
        "    return await client.chat.completions.create(  # WAITS\n"
        '        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]\n'
        "    )\n"
        "\n"
        "async def main():\n"
        "    client = openai.AsyncOpenAI(\n"
        '        base_url=os.environ["LLM_URL"], api_key="sk-test", max_retries=0, timeout=600\n'
        "    )\n"
        '    await asyncio.create_task(ask(client), name="ask-model")\n'
        "\n"
        "asyncio.run(main())\n"
    )
    traced.start(script, LLM_URL=silent_llm.openai_url)
    stuck = wait_for_stuck(traced, lambda r: r.get("stuck_action") == "Model")
    assert_reported_in_time(stuck, traced.trace_dir)
    assert stuck["stack_source"] == "task" and stuck["task"] == "ask-model"

    culprit = anomalies(traced.trace_dir)["running"][0]
    assert culprit["action"] == "Model"
    assert culprit["where"] == where(script, "ask")
    # The chain goes down into the HTTP client, past the line of the program.
    assert any("/httpcore" in f["file"] for f in culprit["stack"])


def test_tool_in_an_endless_cpu_loop_is_named_with_its_line(traced: Traced, tmp_path: Path) -> None:
    script = tmp_path / "spin_tool.py"
    script.write_text(
        "import threading\n"
        "from autotrace import trace_action\n"
        "\n"
        "def tool():\n"
        '    with trace_action("Tool Call", "spin"):\n'
        "        while True: pass  # WAITS\n"
        "\n"
        'thread = threading.Thread(target=tool, name="tool", daemon=True)\n'
        "thread.start()\n"
        "thread.join()\n"
    )
    traced.start(script)
    stuck = wait_for_stuck(traced, lambda r: r.get("stuck_action") == "Tool Call")
    assert_reported_in_time(stuck, traced.trace_dir)

    culprit = anomalies(traced.trace_dir)["running"][0]
    assert (culprit["action"], culprit["detail"]) == ("Tool Call", "spin")
    assert culprit["where"] == where(script, "tool")

    # A snapshot on demand from the live process, also written to its trace file.
    pid = traced.procs[0].pid
    snap = subprocess.run(
        [sys.executable, "-m", "autotrace", "stacks", str(pid), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert snap.returncode == 0, snap.stderr
    snapshot = json.loads(snap.stdout)
    assert [a["where"] for a in snapshot["actions"]] == [where(script, "tool")]
    assert {"MainThread", "tool"} <= {t["name"] for t in snapshot["threads"]}
    assert any(r.get("event_kind") == "snapshot" for r in records_of(traced.trace_dir))


def test_child_python_process_hung_in_a_subprocess_is_named_across_the_run(
    traced: Traced, tmp_path: Path
) -> None:
    child = tmp_path / "child.py"
    child.write_text(
        "import subprocess\n"
        "\n"
        "def hang():\n"
        '    subprocess.run(["sleep", "600"])  # WAITS\n'
        "\n"
        "hang()\n"
    )
    parent = tmp_path / "parent.py"
    parent.write_text(
        'import subprocess, sys\n\nsubprocess.run([sys.executable, "child.py"])  # WAITS\n'
    )
    traced.start(parent, launcher=True)
    stuck = wait_for_stuck(traced, lambda r: "sleep 600" in r.get("detail", ""))
    assert_reported_in_time(stuck, traced.trace_dir)

    report = anomalies(traced.trace_dir, "--run")
    print(anomalies_text(traced.trace_dir, "--run"))  # shown with -s
    culprit = report["running"][0]
    assert culprit["detail"] == "sleep 600"
    assert culprit["where"] == where(child, "hang")
    # The parent's action waits on the child process: it comes after the culprit.
    parent_pid = traced.procs[0].pid
    [parent_row] = [r for r in report["running"] if r["pid"] == parent_pid]
    assert "child.py" in parent_row["detail"] and parent_row["waits_on_other"]
    assert parent_row["where"] == where(parent, "<module>")
    assert [p["pid"] for p in report["processes"]][:1] == [culprit["pid"]]
    assert all(p["state"] == "running" for p in report["processes"])
