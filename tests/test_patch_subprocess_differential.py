"""The program is unchanged: the same subprocess, asyncio, anyio and inspect scenarios give
the same results, exceptions, return codes and introspection with and without the agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import read_records

from autotrace import config
from autotrace.cli import launch as launcher

SCENARIOS = r"""
import asyncio, inspect, json, os, re, subprocess, sys, types
import asyncio.base_subprocess
import anyio
from inspect_ai.util import subprocess as inspect_subprocess

results = {}


def record(name, fn):
    try:
        results[name] = ["ok", fn()]
    except BaseException as exc:  # noqa: BLE001
        # run() reports the time left of its timeout, which differs between any two runs.
        message = re.sub(r"after [0-9.]+ seconds", "after N seconds", str(exc))
        results[name] = ["raised", type(exc).__module__, type(exc).__qualname__, message]


def popen_wait_timeout():
    p = subprocess.Popen(["sleep", "5"])
    try:
        p.wait(timeout=0.01)
    except subprocess.TimeoutExpired as exc:
        message = str(exc)
    p.kill()
    return [message, p.wait(), p.poll()]


def popen_context():
    with subprocess.Popen(["sh", "-c", "echo out; echo err >&2; exit 6"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as p:
        out, err = p.communicate()
    return [out, err, p.returncode, isinstance(p, subprocess.Popen), type(p) is subprocess.Popen]


def popen_poll_loop():
    p = subprocess.Popen(["true"])
    while p.poll() is None:
        pass
    return [p.returncode, p.poll(), p.wait()]


def os_popen():
    stream = os.popen("echo popen; exit 3")
    return [stream.read(), stream.close()]


record("run", lambda: [subprocess.run(["echo", "hi"], capture_output=True).stdout.decode(),
                       subprocess.run(["sh", "-c", "exit 3"]).returncode])
record("run_shell", lambda: subprocess.run("echo $((1+2))", shell=True, capture_output=True, text=True).stdout)
record("run_input", lambda: subprocess.run(["cat"], input=b"abc", capture_output=True).stdout.decode())
record("check_output_error", lambda: subprocess.check_output(["sh", "-c", "exit 2"]))
record("check_call_error", lambda: subprocess.check_call(["false"]))
record("call", lambda: subprocess.call(["sh", "-c", "exit 9"]))
record("not_found", lambda: subprocess.run(["autotrace-no-such-program", "x"]))
record("not_executable", lambda: subprocess.run(["/etc/passwd"]))
record("bad_argument", lambda: subprocess.Popen(12345))
record("run_timeout", lambda: subprocess.run(["sleep", "5"], timeout=0.2))
record("popen_wait_timeout", popen_wait_timeout)
record("popen_context", popen_context)
record("popen_poll_loop", popen_poll_loop)
record("os_popen", os_popen)
record("os_system", lambda: [os.system("exit 3"), os.system(b"kill -TERM $$"), os.system("")])
record("os_system_bad", lambda: os.system("a\0b"))
record("os_system_no_argument", lambda: os.system())
record("os_spawn", lambda: [os.spawnlp(os.P_WAIT, "sh", "sh", "-c", "exit 2"),
                            os.spawnv(os.P_WAIT, "/bin/sh", ["sh", "-c", "kill -KILL $$"])])
record("os_spawn_not_found", lambda: os.spawnlp(os.P_WAIT, "autotrace-no-such-program", "x"))
record("os_spawn_empty", lambda: os.spawnv(os.P_WAIT, "/bin/sh", []))


async def asyncio_scenarios():
    out = {}
    p = await asyncio.create_subprocess_exec("echo", "a", stdout=asyncio.subprocess.PIPE)
    out["exec"] = [(await p.communicate())[0].decode(), p.returncode]
    p = await asyncio.create_subprocess_shell("exit 3")
    out["shell"] = await p.wait()
    try:
        await asyncio.create_subprocess_exec("autotrace-no-such-program")
    except FileNotFoundError as exc:
        out["not_found"] = [type(exc).__name__, str(exc)]
    p = await asyncio.create_subprocess_exec("sleep", "5")
    try:
        await asyncio.wait_for(p.wait(), 0.1)
    except (asyncio.TimeoutError, TimeoutError) as exc:
        out["wait_for"] = type(exc).__name__
    p.kill()
    out["killed"] = await p.wait()
    return out


async def anyio_scenarios():
    out = {}
    out["run_process"] = (await anyio.run_process(["echo", "b"])).stdout.decode()
    try:
        await anyio.run_process(["sh", "-c", "exit 2"])
    except subprocess.CalledProcessError as exc:
        out["run_process_error"] = [type(exc).__name__, str(exc), exc.returncode]
    async with await anyio.open_process(["sh", "-c", "exit 4"]) as p:
        out["open_process"] = await p.wait()
    return out


async def inspect_scenarios():
    r = await inspect_subprocess(["echo", "c"])
    out = {"ok": [r.success, r.returncode, r.stdout, r.stderr]}
    r = await inspect_subprocess(["sh", "-c", "echo e >&2; exit 5"])
    out["fail"] = [r.success, r.returncode, r.stdout, r.stderr]
    try:
        await inspect_subprocess(["sleep", "5"], timeout=1)
    except BaseException as exc:  # noqa: BLE001
        out["timeout"] = [type(exc).__name__, str(exc)]
    return out


record("asyncio", lambda: asyncio.run(asyncio_scenarios()))
record("anyio", lambda: anyio.run(anyio_scenarios))
record("inspect", lambda: asyncio.run(inspect_scenarios()))

T = asyncio.base_subprocess.BaseSubprocessTransport
wrapped = {
    "Popen": subprocess.Popen,
    "Popen.__init__": subprocess.Popen.__init__,
    "Popen._wait": subprocess.Popen._wait,
    "Popen.wait": subprocess.Popen.wait,
    "Popen.communicate": subprocess.Popen.communicate,
    "Popen._internal_poll": subprocess.Popen._internal_poll,
    "Popen.poll": subprocess.Popen.poll,
    "run": subprocess.run,
    "Transport._process_exited": T._process_exited,
    "create_subprocess_exec": asyncio.create_subprocess_exec,
    "anyio.run_process": anyio.run_process,
    "inspect.subprocess": inspect_subprocess,
    "os.system": os.system,
    "os.spawnv": os.spawnv,
}
results["introspection"] = {
    name: [
        str(inspect.signature(obj)),
        inspect.iscoroutinefunction(obj),
        callable(obj),
        getattr(obj, "__name__", None),
        getattr(obj, "__qualname__", None),
        getattr(obj, "__doc__", None),
    ]
    for name, obj in wrapped.items()
}
bound = subprocess.Popen(["true"])
bound.wait()
results["isinstance"] = {
    name: [
        isinstance(obj, types.FunctionType),
        isinstance(obj, types.MethodType),
        inspect.isfunction(obj),
        inspect.ismethod(obj),
        inspect.isroutine(obj),
        inspect.isclass(obj),
        isinstance(obj, types.BuiltinFunctionType),
        inspect.isbuiltin(obj),
        getattr(obj, "__module__", None),
        repr(obj) if name == "os.system" else None,
    ]
    for name, obj in {
        **wrapped,
        "bound wait": bound.wait,
        "bound poll": bound.poll,
        "bound _internal_poll": bound._internal_poll,
    }.items()
}
results["isinstance"]["Popen instance"] = [
    isinstance(bound, subprocess.Popen),
    type(bound) is subprocess.Popen,
    sorted(vars(bound)),  # the patch adds no attribute to the program's objects
]
print(json.dumps(results, sort_keys=True))
"""


def _run_scenarios(tmp_path: Path, env: dict[str, str]) -> dict:
    script = tmp_path / "scenarios.py"
    script.write_text(SCENARIOS)
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "[autotrace]" not in result.stderr
    return json.loads(result.stdout)


def test_scenarios_give_identical_results_with_and_without_the_agent(tmp_path: Path) -> None:
    baseline_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTRACE_")}
    baseline_env.pop("PYTHONPATH", None)
    baseline_env.pop(config.INSPECT_TRACE_FILE, None)
    trace_dir = tmp_path / "traces"
    agent_env = launcher.environment(str(trace_dir), [], [], None)
    agent_env.pop(config.INSPECT_TRACE_FILE, None)

    baseline = _run_scenarios(tmp_path, baseline_env)
    traced = _run_scenarios(tmp_path, agent_env)

    assert traced == baseline
    # Sanity: the scenarios exercised what we think they did.
    assert baseline["not_found"][2] == "FileNotFoundError"
    assert baseline["run_timeout"][2] == "TimeoutExpired"
    assert baseline["check_output_error"][2] == "CalledProcessError"
    assert baseline["os_system"] == ["ok", [3 << 8, 15, 0]]
    assert baseline["os_spawn"] == ["ok", [2, -9]] and baseline["os_spawn_not_found"] == ["ok", 127]
    # And the agent was really there: every child is one action, none left running.
    records = [r for path in trace_dir.glob("trace-*.log") for r in read_records(path)]
    by_id: dict[str, list[str]] = {}
    for r in records:
        if r.get("action") in ("Subprocess", "Docker"):
            by_id.setdefault(r["trace_id"], []).append(r["event"])
    assert len(by_id) >= 20
    assert all(len(events) == 2 for events in by_id.values()), by_id
