"""The program cannot see the agent: no thread, fork warning, warning location, result type
or module of ours, on every Python we support.

- our background threads are not in ``threading.enumerate()`` and leave when their work
  is done (``_thread._count()``, what CPython's regrtest compares, is back at once);
- ``os.fork()`` while actions are open says nothing more than without us (3.12+ warns
  about a multi-threaded process), and the child traces with a watchdog of its own;
- a warning a library issues for its caller (subprocess's EncodingWarning, anthropic's
  deprecated-model DeprecationWarning under the default filters) names the program's line;
- streams come back as the SDK's own objects (``type(s) is openai.Stream``);
- an odd object (a Popen without a child) is skipped alone: the patch stays on.
"""

from __future__ import annotations

import _thread
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from conftest import (
    action_records,
    installed_patch,
    start_traced_script,
    untraced_env,
    wait_for,
)
from llm_server import LLMServer

from autotrace.runtime import actions, invisible

HERE = Path(__file__).parent
ROOT = HERE.parent
PROGRAM = HERE / "hard_support" / "invisible_program.py"
INSPECT_TRACE = Path(sys.executable).parent / "inspect-trace"


def _run_plain_and_traced(
    python: str, tmp_path: Path, env_extra: dict[str, str], *sections: str
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    env = untraced_env(**env_extra)
    trace_dir = tmp_path / "traces"
    outputs = {}
    for mode, prefix in (
        ("plain", []),
        ("traced", [str(INSPECT_TRACE), "run", "--trace-dir", str(trace_dir), "--"]),
    ):
        done = subprocess.run(
            [*prefix, python, str(PROGRAM), *sections],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        assert "[autotrace]" not in done.stderr, done.stderr
        outputs[mode] = json.loads(done.stdout)
    return outputs["plain"], outputs["traced"], trace_dir


def _differences(plain: dict[str, Any], traced: dict[str, Any]) -> dict[str, Any]:
    assert sorted(plain) == sorted(traced)
    return {k: {"plain": plain[k], "traced": traced[k]} for k in plain if plain[k] != traced[k]}


# -- in this process -----------------------------------------------------------------


def test_our_threads_are_not_listed_and_leave_when_their_work_is_done(trace_dir: Path) -> None:
    wait_for(lambda: not invisible.our_thread_idents(), what="threads of earlier tests gone")
    baseline = _thread._count()
    names_before = sorted(t.name for t in threading.enumerate())
    with installed_patch("subprocess"):
        # One thread of ours does all: the watchdog, which also looks at the children.
        child = subprocess.Popen(["sleep", "0.3"])
        with actions.trace_action("Tool Call", "t"):
            wait_for(lambda: len(invisible.our_thread_idents()) == 1, what="our thread up")
            assert _thread._count() == baseline + 1
            assert sorted(t.name for t in threading.enumerate()) == names_before
            assert not any(t.name.startswith("autotrace") for t in threading._dangling)  # type: ignore[attr-defined]
        child.wait()
    # regrtest's threading_cleanup() waits 1 s for the count to come back
    start = time.monotonic()
    wait_for(lambda: _thread._count() <= baseline, timeout=1.0, what="our threads gone")
    assert time.monotonic() - start < 0.5
    assert sorted(t.name for t in threading.enumerate()) == names_before


@pytest.mark.parametrize("how", ["mocked _execute_child", "fork_exec gave no pid"])
def test_a_popen_without_a_child_is_skipped_and_the_patch_stays_on(
    trace_dir: Path, capfd: pytest.CaptureFixture[str], how: str
) -> None:
    with installed_patch("subprocess"):
        from autotrace.patches import subprocess as patch_module

        # As CPython's test_subprocess.test_repr does: Popen objects with pid None.
        target = (
            mock.patch.object(subprocess.Popen, "_execute_child")
            if how == "mocked _execute_child"
            # 3.11+ binds _posixsubprocess.fork_exec as subprocess._fork_exec; 3.10 calls it
            # through the module.
            else mock.patch.object(subprocess, "_fork_exec", return_value=None)
            if hasattr(subprocess, "_fork_exec")
            else mock.patch("_posixsubprocess.fork_exec", return_value=None)
        )
        with target:
            odd = subprocess.Popen(["ls"])
            odd.returncode = 0
        assert odd.pid is None
        # A child nobody waits on: only the watcher can end its action.
        child = subprocess.Popen(["true"])
        wait_for(
            lambda: any(r.get("ended_by") == "watcher" for r in action_records(trace_dir)),
            timeout=10,
            what="the watcher ended the child's action",
        )
        assert patch_module.PATCH.enabled
        child.wait()
    assert "[autotrace]" not in capfd.readouterr().err
    enters = [r for r in action_records(trace_dir) if r["event"] == "enter"]
    assert [r["detail"] for r in enters] == ["true"]


def test_a_call_on_an_odd_object_goes_through_untraced_and_the_patch_stays_on(
    trace_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from hard_support import warns_target

    from autotrace.startup import agent
    from autotrace.startup.patching import Patch, Wrap

    def describe(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return f"double {args[0] + 0}"  # a str is an odd object here: TypeError

    patch = Patch(
        name="hard-odd",
        description="test target",
        wraps=[Wrap("hard_support.warns_target", "deprecated_call", "Tool Call", describe)],
    )
    agent.install_patch(patch)
    try:
        with pytest.warns(DeprecationWarning):
            assert warns_target.deprecated_call("ab") == "abab"  # type: ignore[arg-type]
            assert warns_target.deprecated_call(2) == 4
        assert patch.enabled and patch.skipped == 1
    finally:
        agent.uninstall_patch(patch)
    assert "[autotrace]" not in capfd.readouterr().err
    enters = [r for r in action_records(trace_dir) if r["event"] == "enter"]
    assert [r["detail"] for r in enters] == ["double 2"]


def test_sdk_streams_come_back_as_the_sdks_own_objects(trace_dir: Path, llm: LLMServer) -> None:
    import anthropic
    import openai
    from anthropic.lib.streaming import MessageStream, MessageStreamManager

    messages = [{"role": "user", "content": "hi"}]
    with installed_patch("openai"), installed_patch("anthropic"):
        client = openai.OpenAI(base_url=llm.openai_url, api_key="sk-test", max_retries=0)
        stream = client.chat.completions.create(model="m", messages=messages, stream=True)
        assert type(stream) is openai.Stream
        assert repr(stream).startswith("<openai.Stream object at ")
        assert repr(iter(stream)).startswith("<generator object Stream.__iter__ at ")
        for _ in stream:
            pass
        claude = anthropic.Anthropic(base_url=llm.base_url, api_key="sk-ant-x", max_retries=0)
        manager = claude.messages.stream(model="c", max_tokens=5, messages=messages)
        assert type(manager) is MessageStreamManager
        with manager as s:
            assert type(s) is MessageStream and type(s._raw_stream) is anthropic.Stream
            "".join(s.text_stream)
    ends = [r for r in action_records(trace_dir) if r["event"] != "enter"]
    assert [(r["action"], r["event"]) for r in ends] == [("Model", "exit"), ("Model", "exit")]


# -- plain vs traced, in fresh processes ----------------------------------------------


@pytest.mark.slow
def test_the_program_sees_the_same_threads_fork_warnings_types_and_modules(
    tmp_path: Path, llm: LLMServer
) -> None:
    llm.script([{"do": "reply", "text": "x", "times": 20}])
    plain, traced, trace_dir = _run_plain_and_traced(
        sys.executable, tmp_path, {"LLM_URL": llm.base_url}
    )
    assert _differences(plain, traced) == {}
    # The comparison is not vacuous: the warnings point at the program's lines ...
    encoding = plain["EncodingWarning"][1]
    assert encoding[0].startswith("<string>:2: EncodingWarning"), encoding
    deprecation = plain["DeprecationWarning for __main__"][2]
    assert deprecation[0].startswith("TMP/script.py:4: DeprecationWarning"), deprecation
    # ... the types are the SDKs' own, and the traced run was traced.
    assert all(v[0] is True for v in plain["exact types"].values())
    kinds = {r["action"] for r in action_records(trace_dir) if r["event"] == "enter"}
    assert {"Subprocess", "Model"} <= kinds


def _runs(python: str | None) -> bool:
    if not python or not Path(python).exists():
        return False
    try:
        return (
            subprocess.run([python, "-c", "pass"], capture_output=True, timeout=30).returncode == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


def _interpreters() -> list[Any]:
    found = []
    for version in ("3.10", "3.12", "3.13"):
        candidates = [
            *map(str, sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))),
            shutil.which(f"python{version}"),
        ]
        python = next((c for c in candidates if _runs(c)), None)
        found.append(
            pytest.param(
                python,
                id=version,
                marks=pytest.mark.skipif(python is None, reason=f"no python{version} here"),
            )
        )
    return found


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """python -> a venv of that python with autotrace (this checkout) and wrapt, made once."""
    return {"root": str(tmp_path_factory.mktemp("venvs"))}


def _venv_for(python: str, venvs: dict[str, str]) -> str:
    if python in venvs:
        return venvs[python]
    target = Path(venvs["root"]) / Path(python).name
    subprocess.run([python, "-m", "venv", str(target)], check=True, timeout=120)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True, timeout=300)
    subprocess.run([*pip, "wrapt"], check=True, timeout=300)
    venvs[python] = str(target / "bin" / "python")
    return venvs[python]


@pytest.mark.slow
@pytest.mark.parametrize("python", _interpreters())
def test_fork_threads_and_warnings_on_other_pythons(
    python: str, tmp_path: Path, venvs: dict[str, str]
) -> None:
    venv_python = _venv_for(python, venvs)
    plain, traced, trace_dir = _run_plain_and_traced(venv_python, tmp_path, {}, "stdlib")
    assert _differences(plain, traced) == {}
    assert plain["fork"]["warnings"] == [] and plain["fork"]["child exit status"] == 0
    # Parent and forked child both traced their children.
    pids = {r["pid"] for r in action_records(trace_dir) if r["action"] == "Subprocess"}
    assert len(pids) >= 2


# -- across fork and exit ---------------------------------------------------------------


@pytest.mark.slow
def test_a_forked_child_gets_a_watchdog_of_its_own_and_everyone_exits_cleanly(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "child.pid"
    run, trace_dir, env = start_traced_script(
        tmp_path,
        f"""
        import os, subprocess, sys, time
        parent_child = subprocess.Popen(["sleep", "0.2"])  # our threads run during the fork
        pid = os.fork()
        if pid == 0:
            hang = subprocess.Popen(["sleep", "30"])
            with open({str(pid_file)!r} + ".tmp", "w") as f:
                f.write(f"{{os.getpid()}} {{hang.pid}}")
            os.rename({str(pid_file)!r} + ".tmp", {str(pid_file)!r})
            hang.wait()  # WAITS HERE
            os._exit(0)
        parent_child.wait()
        os.waitpid(pid, 0)
        print("parent done")
        """,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(pid_file.exists, timeout=20, what="the forked child is waiting")
        child_pid, hang_pid = map(int, pid_file.read_text().split())
        stacks = subprocess.run(
            [str(INSPECT_TRACE), "stacks", str(child_pid), "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert stacks.returncode == 0, stacks.stderr
        snapshot = json.loads(stacks.stdout)
        assert snapshot["pid"] == child_pid
        [waiting] = [a for a in snapshot["actions"] if a["detail"] == "sleep 30"]
        assert "script.py" in waiting["where"], waiting
        assert not any(t["name"].startswith("autotrace") for t in snapshot["threads"])
        os.kill(hang_pid, signal.SIGTERM)
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 0, err
    assert out.strip() == "parent done"
    assert err == ""


@pytest.mark.slow
def test_exit_with_an_action_still_open_in_a_daemon_thread_is_prompt_and_quiet(
    tmp_path: Path,
) -> None:
    run, trace_dir, _ = start_traced_script(
        tmp_path,
        """
        import atexit, subprocess, threading, time
        hang = subprocess.Popen(["sleep", "30"])
        threading.Thread(target=hang.wait, daemon=True).start()  # our threads are running
        time.sleep(0.2)
        atexit.register(hang.kill)
        print("main done")
        """,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        start = time.monotonic()
        out, err = run.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert (run.returncode, out.strip(), err) == (0, "main done", "")
    assert took < 5, took
    [enter] = [r for r in action_records(trace_dir) if r["event"] == "enter"]
    assert enter["detail"] == "sleep 30"
