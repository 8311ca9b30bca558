"""End to end: a run killed while a subprocess and a `docker compose up` hang shows both running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_records, start_traced_script, untraced_env, wait_for

BIN = Path(__file__).parent / "bin"

SCRIPT = """
    import subprocess, threading

    def sleeper():
        subprocess.run(["sleep", "600"])

    def compose():
        subprocess.run(["docker", "compose", "up"])

    threads = [threading.Thread(target=sleeper), threading.Thread(target=compose)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
"""


def _enters(trace_dir: Path) -> set[str]:
    found = set()
    for path in trace_dir.glob("trace-*.log"):
        for line in path.read_text().splitlines():
            if '"event": "enter"' in line:
                try:
                    found.add(json.loads(line)["action"])
                except ValueError:  # read while being written: look again next time
                    pass
    return found


@pytest.mark.slow
def test_killed_run_shows_hung_subprocess_and_docker_as_running(tmp_path: Path) -> None:
    run, trace_dir, env = start_traced_script(tmp_path, SCRIPT)
    try:
        wait_for(lambda: _enters(trace_dir) >= {"Subprocess", "Docker"}, timeout=60.0)
        os.kill(run.pid, signal.SIGKILL)
        assert run.wait(timeout=30) == -signal.SIGKILL

        result = subprocess.run(
            ["inspect-trace", "anomalies", "--json", "--trace-dir", str(trace_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        envelope = json.loads(result.stdout)
        running = {(r["action"], r["detail"]) for r in envelope["running"]}
        assert running == {("Subprocess", "sleep 600"), ("Docker", "docker compose up")}

        # inspect's own reader accepts every line of the file.
        from inspect_ai._util.trace import read_trace_file

        (path,) = trace_dir.glob("trace-*.log")
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert len(read_trace_file(path)) == len(lines) == len(read_records(path))
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        run.wait(timeout=30)


@pytest.mark.slow
def test_demo_ends_on_its_own_leaving_the_hung_tool_running(tmp_path: Path) -> None:
    trace_dir = tmp_path / "traces"
    env = untraced_env()
    demo = subprocess.run(
        [
            "inspect-trace",
            "run",
            "--trace-dir",
            str(trace_dir),
            "--",
            sys.executable,
            "-m",
            "autotrace.demo",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert demo.returncode == 1, demo.stderr
    result = subprocess.run(
        ["inspect-trace", "anomalies", "--json", "--trace-dir", str(trace_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    envelope = json.loads(result.stdout)
    running = [(r["action"], r["detail"].split()[1:]) for r in envelope["running"]]
    assert running == [("Subprocess", ["-m", "autotrace.demo", "--hung-tool"])]
