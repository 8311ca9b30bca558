"""The os_system patch: os.system and os.spawn* (P_WAIT) are one action per command."""

from __future__ import annotations

import inspect
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import action_records, installed_patch, start_traced_script, untraced_env, wait_for

from autotrace.startup import agent

BIN = Path(__file__).parent / "bin"


@pytest.fixture
def patched(trace_dir: Path) -> Iterator[Path]:
    """The os_system patch installed in this process, writing to a fresh trace directory."""
    with installed_patch("os_system"):
        yield trace_dir


def _pairs(directory: Path) -> list[list[dict]]:
    by_id: dict[str, list[dict]] = {}
    for record in action_records(directory):
        by_id.setdefault(record["trace_id"], []).append(record)
    return list(by_id.values())


def test_system_is_one_action_with_the_exit_code(patched: Path) -> None:
    assert os.system("exit 3") == 3 << 8
    assert os.system("kill -TERM $$") == signal.SIGTERM
    first, second = _pairs(patched)
    assert [(r["action"], r["event"], r["detail"]) for r in first] == [
        ("Subprocess", "enter", "exit 3"),
        ("Subprocess", "exit", "exit 3"),
    ]
    assert first[1]["returncode"] == 3 and first[0]["pid"] == os.getpid()
    assert (second[1]["event"], second[1]["returncode"]) == ("exit", -signal.SIGTERM)


def test_spawn_waiting_is_one_action_and_spawn_nowait_is_not_traced(patched: Path) -> None:
    assert os.spawnlp(os.P_WAIT, "sh", "sh", "-c", "exit 2") == 2
    pid = os.spawnlp(os.P_NOWAIT, "true", "true")
    assert os.waitpid(pid, 0)[0] == pid
    (pair,) = _pairs(patched)
    assert [r["event"] for r in pair] == ["enter", "exit"]
    assert (pair[0]["detail"], pair[1]["returncode"]) == ("sh -c 'exit 2'", 2)


def test_docker_command_is_a_docker_action(patched: Path) -> None:
    assert os.system(f"{BIN / 'docker'} compose ps > /dev/null") == 0
    assert os.system(f"{BIN / 'podman'} fail 2> /dev/null") == 3 << 8
    assert [(p[0]["action"], p[1]["returncode"]) for p in _pairs(patched)] == [
        ("Docker", 0),
        ("Docker", 3),
    ]


def test_secrets_in_the_command_never_reach_the_trace_file(patched: Path) -> None:
    os.system("echo --password hunter2secret Authorization: Bearer tok-98765 > /dev/null")
    text = (patched / f"trace-{os.getpid()}.log").read_text()
    assert "hunter2secret" not in text and "tok-98765" not in text
    assert _pairs(patched)[0][0]["detail"].startswith("echo --password ***")


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "returned", call()
    except Exception as exc:
        return type(exc).__name__, str(exc)


CALLS: list[Callable[[], Any]] = [
    lambda: os.system("exit 1"),
    lambda: os.system(b"exit 5"),
    lambda: os.system(command="exit 6"),
    lambda: os.system(Path("true")),
    lambda: os.system(),  # type: ignore[call-arg]
    lambda: os.system(1),  # type: ignore[arg-type]
    lambda: os.system("a\0b"),
    lambda: os.system("true", "x"),  # type: ignore[call-arg]
    lambda: os.spawnv(os.P_WAIT, "/bin/sh", ["sh", "-c", "exit 4"]),
    lambda: os.spawnve(os.P_WAIT, "/bin/sh", ["sh", "-c", "exit $X"], {"X": "7"}),
    lambda: os.spawnv(os.P_WAIT, "/bin/sh", []),
    # A builtin stored on a class does not bind as a method: nor does the stand-in.
    lambda: type("Runner", (), {"run": os.system})().run("exit 2"),
]


def test_calls_return_and_raise_as_without_the_patch(trace_dir: Path) -> None:
    plain = [_outcome(call) for call in CALLS]
    signature = inspect.signature(os.system)
    with installed_patch("os_system"):
        assert getattr(os.system, "_autotrace", False)
        traced = [_outcome(call) for call in CALLS]
        assert inspect.signature(os.system) == signature
        assert (os.system.__name__, os.system.__doc__) == ("system", os.system.__wrapped__.__doc__)
        assert pickle.loads(pickle.dumps(os.system)) is os.system
        assert isinstance(os.system, types.BuiltinFunctionType)
        assert repr(os.system) == repr(os.system.__wrapped__)
        assert os.system.__self__ is os.system.__wrapped__.__self__
    assert traced == plain
    assert ("TypeError", "system() missing required argument 'command' (pos 1)") in traced
    events = [r["event"] for r in action_records(trace_dir) if r["event"] != "enter"]
    # Seven commands ran. A NUL byte and an empty argv are errors, as a Popen that cannot
    # spawn is; calls whose arguments the original rejects before reading them are not traced.
    assert events.count("exit") == 7 and events.count("error") == 2


def test_uninstall_restores_the_originals(trace_dir: Path) -> None:
    originals = (os.system, os._spawnvef)  # type: ignore[attr-defined]
    patch = agent.load_patch("os_system")
    agent.install_patch(patch)
    agent.install_patch(patch)  # a second install changes nothing
    assert os.system.__wrapped__ is originals[0]  # type: ignore[attr-defined]
    held = os.system
    agent.uninstall_patch(patch)
    assert (os.system, os._spawnvef) == originals  # type: ignore[attr-defined]
    os.system("true")
    assert action_records(trace_dir) == []
    assert held("exit 4") == 4 << 8  # a stand-in the program kept still calls through


AT_TEARDOWN = """
    import atexit, os

    class Late:
        def __del__(self):
            os.system("echo command of a __del__ at teardown")

    keep = Late()
    atexit.register(os.system, "echo command of an atexit handler")
"""


def test_commands_at_exit_and_teardown_run_as_without_the_agent(tmp_path: Path) -> None:
    script = tmp_path / "teardown.py"
    script.write_text(textwrap.dedent(AT_TEARDOWN))
    trace_dir = tmp_path / "traces"
    plain = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=untraced_env()
    )
    traced = subprocess.run(
        ["inspect-trace", "run", "--trace-dir", str(trace_dir), "--", sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=untraced_env(),
    )
    assert plain.stdout.count("command of") == 2
    assert (traced.returncode, traced.stdout, traced.stderr) == (0, plain.stdout, plain.stderr)
    # The atexit command is traced; at teardown nothing can be imported, so it is not.
    assert [r["detail"] for r in action_records(trace_dir) if r["event"] == "exit"] == [
        "echo command of an atexit handler"
    ]


HUNG = """
    import os, sys, threading
    print("imported:", "subprocess" in sys.modules, "wrapt" in sys.modules, flush=True)
    threads = [
        threading.Thread(target=os.system, args=("sleep 600",)),
        threading.Thread(target=os.system, args=("docker compose up > /dev/null",)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
"""


@pytest.mark.slow
def test_hung_system_calls_show_as_running_without_importing_subprocess(tmp_path: Path) -> None:
    run, trace_dir, env = start_traced_script(tmp_path, HUNG, stdout=subprocess.PIPE)

    def running() -> set[tuple[str, str]]:
        result = subprocess.run(
            ["inspect-trace", "anomalies", "--json", "--trace-dir", str(trace_dir)],
            capture_output=True,
            text=True,
            env=env,
        )
        if result.returncode != 0:
            return set()
        return {(r["action"], r["detail"]) for r in json.loads(result.stdout)["running"]}

    try:
        assert run.stdout is not None
        assert run.stdout.readline().strip() == "imported: False False"
        expected = {("Subprocess", "sleep 600"), ("Docker", "docker compose up > /dev/null")}
        assert wait_for(lambda: running() == expected, timeout=60.0, what="both running")
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
