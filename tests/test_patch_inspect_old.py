"""The inspect_ai patch with an inspect release from before inspect traced anything (0.3.40).

The release lives in its own venv, built on first use (about 40 s from a package index;
AUTOTRACE_OLD_INSPECT_VENV names the directory, default under the temp dir). It needs
``inspect-ai==0.3.40 openai wrapt platformdirs click rich`` plus this project (editable).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from test_patch_inspect import assert_one_action_per_call, outside_eval_actions

pytestmark = pytest.mark.slow

OLD_INSPECT = "0.3.40"
ROOT = Path(__file__).parent.parent
TASKS = Path(__file__).parent / "inspect_tasks"
PACKAGES = [
    f"inspect-ai=={OLD_INSPECT}",
    "openai",
    "wrapt",
    "platformdirs",
    "click",
    "rich",
    "msgspec",
]


@pytest.fixture(scope="module")
def old_venv() -> Path:
    """A venv with inspect 0.3.40 and this project; built once, reused after."""
    # One venv per checkout: it installs this checkout's project (editable).
    checkout = hashlib.blake2b(str(ROOT).encode(), digest_size=4).hexdigest()
    default = Path(tempfile.gettempdir()) / f"autotrace-venv-inspect-{OLD_INSPECT}-{checkout}"
    venv = Path(os.environ.get("AUTOTRACE_OLD_INSPECT_VENV", default))
    done = venv / ".autotrace-complete"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    if not done.exists():
        shutil.rmtree(venv, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run([*pip, *PACKAGES], check=True, timeout=600)
        done.write_text("ok\n")
    # The editable install's console script is written from pyproject.toml: installed
    # again when that changed (an entry point that moved would break the old script).
    project = hashlib.blake2b((ROOT / "pyproject.toml").read_bytes(), digest_size=8).hexdigest()
    installed = venv / ".autotrace-project"
    if not installed.exists() or installed.read_text() != project:
        subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True, timeout=300)
        installed.write_text(project)
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import inspect_ai; print(inspect_ai.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == OLD_INSPECT
    return venv


def eval_command(venv: Path, trace_dir: Path, task: str) -> list[str]:
    return [
        str(venv / "bin" / "inspect-trace"),
        "run",
        "--trace-dir",
        str(trace_dir),
        "--",
        str(venv / "bin" / "inspect"),
        "eval",
        f"hang_task.py@{task}",
        "--model",
        "openai/test",
        "--max-retries",
        "0",
    ]


def eval_env(tmp_path: Path, url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTOTRACE_", "INSPECT_", "OPENAI_", "VIRTUAL_ENV"))
    }
    env.update(
        OPENAI_BASE_URL=url,
        OPENAI_API_KEY="sk-fake-key-for-local-server",
        INSPECT_LOG_DIR=str(tmp_path / "logs"),
        XDG_DATA_HOME=str(tmp_path / "xdg-data"),
    )
    return env


def actions_in(directory: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(directory.glob("trace-*.log")):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "action" in record:
                out.append(record)
    return out


def test_old_inspect_calls_outside_an_eval_are_each_one_action(
    old_venv: Path,
    tmp_path: Path,
    llm: Any,
) -> None:
    records = outside_eval_actions(old_venv / "bin" / "python", tmp_path, llm.openai_url)
    assert_one_action_per_call(records)


def test_old_inspect_eval_traces_generate_tool_call_and_log_write(
    old_venv: Path,
    tmp_path: Path,
    llm: Any,
) -> None:
    llm.script([{"do": "reply", "tool_calls": [{"name": "sleeper", "arguments": {"seconds": 0}}]}])
    directory = tmp_path / "traces"
    result = subprocess.run(
        eval_command(old_venv, directory, "tool_hang"),
        cwd=TASKS,
        env=eval_env(tmp_path, llm.openai_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    records = actions_in(directory)
    ended = {r["trace_id"] for r in records if r["event"] != "enter"}
    enters = [r for r in records if r["event"] == "enter"]
    assert all(r["trace_id"] in ended for r in enters)
    seen = [(r["action"], r["detail"]) for r in enters]
    assert seen.count(("Model", "generate (openai/test)")) == 2, seen
    tool = next(r for r in enters if r["action"] == "Tool Call")
    assert tool["detail"] == "sleeper(seconds=0)"
    sleep = next(r for r in enters if r["detail"] == "sleep 0")
    assert sleep["parent_id"] == tool["trace_id"]
    writes = [r for r in enters if r["action"] == "Log Write"]
    assert writes and all(r["detail"].endswith(".json") for r in writes)


def test_old_inspect_hung_tool_subprocess_shows_running_after_kill(
    old_venv: Path,
    tmp_path: Path,
    llm: Any,
) -> None:
    llm.script(
        [{"do": "reply", "tool_calls": [{"name": "sleeper", "arguments": {"seconds": 600}}]}]
    )
    directory = tmp_path / "traces"
    proc = subprocess.Popen(
        eval_command(old_venv, directory, "tool_hang"),
        cwd=TASKS,
        env=eval_env(tmp_path, llm.openai_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 40
        while not any(r.get("detail") == "sleep 600" for r in actions_in(directory)):
            assert proc.poll() is None, "eval ended before its tool hung"
            assert time.monotonic() < deadline, "timed out waiting for 'sleep 600'"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    result = subprocess.run(
        [
            str(old_venv / "bin" / "inspect-trace"),
            "anomalies",
            "--json",
            "--trace-dir",
            str(directory),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    running = json.loads(result.stdout)["running"]
    shown = [(r["action"], r["detail"]) for r in running]
    assert ("Subprocess", "sleep 600") in shown and ("Tool Call", "sleeper(seconds=600)") in shown
    by_detail = {r["detail"]: r for r in actions_in(directory)}
    assert by_detail["sleep 600"]["parent_id"] == by_detail["sleeper(seconds=600)"]["trace_id"]
