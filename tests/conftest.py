"""Shared fixtures: an isolated trace directory and a record reader for assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from autotrace import config
from autotrace.runtime import actions
from autotrace.startup import agent

# Console scripts of this interpreter's environment (inspect, inspect-trace) come first on
# PATH for every subprocess a test starts, whatever venv CI or a developer uses.
BIN_DIR = Path(sys.executable).parent
os.environ["PATH"] = f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture
def trace_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh trace directory for this test; the in-process writer starts over in it."""
    directory = tmp_path / "traces"
    monkeypatch.setenv(config.ENV_DIR, str(directory))
    monkeypatch.delenv(config.ENV_FILE, raising=False)
    monkeypatch.delenv(config.INSPECT_TRACE_FILE, raising=False)
    actions.writer.close()
    actions.writer.disabled = False
    actions.open_actions.clear()
    yield directory
    actions.writer.close()
    actions.writer.disabled = False


def untraced_env(*first_on_path: Path, **extra: str) -> dict[str, str]:
    """This environment without any autotrace setting or INSPECT_TRACE_FILE (for programs a
    test starts itself), ``first_on_path`` first on PATH, ``extra`` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTRACE_")}
    env.pop(config.INSPECT_TRACE_FILE, None)
    if first_on_path:
        env["PATH"] = os.pathsep.join([*map(str, first_on_path), env.get("PATH", "")])
    env.update(extra)
    return env


def start_traced_script(
    tmp_path: Path, source: str, **popen: Any
) -> tuple[subprocess.Popen[str], Path, dict[str, str]]:
    """Run ``source`` (dedented) under ``inspect-trace run``, tests/bin (fake docker) first
    on PATH, in its own process group (the caller kills it with os.killpg).

    Returns the process, its trace directory (tmp_path/traces) and its environment.
    """
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    trace_dir = tmp_path / "traces"
    env = untraced_env(Path(__file__).parent / "bin")
    run = subprocess.Popen(
        ["inspect-trace", "run", "--trace-dir", str(trace_dir), "--", sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        text=True,
        start_new_session=True,
        **popen,
    )
    return run, trace_dir, env


def read_records(path: Path) -> list[dict]:
    """Every JSON line of a trace file (fails the test on a torn or invalid line)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def action_records(directory: Path) -> list[dict]:
    """The action records of every trace file in ``directory``."""
    out: list[dict] = []
    for path in sorted(directory.glob("trace-*.log")):
        out.extend(r for r in read_records(path) if "action" in r)
    return out


@contextmanager
def installed_patch(name: str) -> Iterator[None]:
    """The shipped patch ``name`` installed in this process for a block, then removed."""
    patch = agent.load_patch(name)
    agent.install_patch(patch)
    try:
        yield
    finally:
        agent.uninstall_patch(patch)


@pytest.fixture
def llm() -> Iterator[Any]:
    """The local OpenAI / Anthropic server (tests/llm_server.py) on 127.0.0.1, stopped after."""
    from llm_server import LLMServer

    with LLMServer() as server:
        yield server


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy (returned); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not met within {timeout} s")


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``call`` in a daemon thread; the list receives what it raised, if anything."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[Any]:
    """A ``test_e2e_hangs.Traced`` runner of hung programs, every one killed afterwards."""
    from test_e2e_hangs import Traced

    runner = Traced(tmp_path, tmp_path / "traces")
    try:
        yield runner
    finally:
        runner.kill_all()
