"""The subprocess patch: one action per child process, whichever API started it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from conftest import action_records, installed_patch, wait_for

from autotrace.startup import agent

BIN = Path(__file__).parent / "bin"


@pytest.fixture
def patched(trace_dir: Path) -> Iterator[Path]:
    """The subprocess patch installed in this process, writing to a fresh trace directory."""
    with installed_patch("subprocess"):
        yield trace_dir


def _actions(directory: Path, action: str | None = None) -> list[dict]:
    return [r for r in action_records(directory) if action is None or r["action"] == action]


def _pairs(directory: Path) -> dict[str, list[dict]]:
    by_id: dict[str, list[dict]] = {}
    for record in action_records(directory):
        by_id.setdefault(record["trace_id"], []).append(record)
    return by_id


def _only_action(directory: Path) -> list[dict]:
    pairs = list(_pairs(directory).values())
    assert len(pairs) == 1, pairs
    return pairs[0]


def test_run_is_one_action_with_child_pid_and_returncode(patched: Path) -> None:
    subprocess.run(["sh", "-c", "exit 4"])
    enter, end = _only_action(patched)
    assert (enter["action"], enter["event"], enter["detail"]) == (
        "Subprocess",
        "enter",
        "sh -c 'exit 4'",
    )
    assert enter["child_pid"] > 0
    assert enter["pid"] == os.getpid()
    assert (end["event"], end["returncode"]) == ("exit", 4)


def test_check_output_call_and_popen_communicate_each_end_when_observed(patched: Path) -> None:
    assert subprocess.check_output(["echo", "a"]) == b"a\n"
    assert subprocess.call(["true"]) == 0
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.communicate(b"x") == (b"x", None)
    pairs = _pairs(patched)
    assert len(pairs) == 3
    assert all([r["event"] for r in p] == ["enter", "exit"] for p in pairs.values())


def test_os_popen_is_traced(patched: Path) -> None:
    with os.popen("echo hi") as stream:
        assert stream.read() == "hi\n"
    enter, end = _only_action(patched)
    assert enter["detail"] == "echo hi"
    assert end["event"] == "exit"


def test_spawn_that_fails_is_an_error(patched: Path) -> None:
    with pytest.raises(FileNotFoundError):
        subprocess.run(["autotrace-no-such-program", "x"])
    enter, end = _only_action(patched)
    assert enter["detail"] == "autotrace-no-such-program x"
    assert (end["event"], end["error_type"]) == ("error", "FileNotFoundError")


def test_run_timeout_kill_ends_the_action_as_timeout(patched: Path) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(["sleep", "30"], timeout=0.2)
    enter, end = _only_action(patched)
    assert end["event"] == "timeout"
    assert end["returncode"] < 0


def test_wait_timeout_leaves_the_action_open_until_the_child_ends(patched: Path) -> None:
    proc = subprocess.Popen(["sh", "-c", "sleep 0.5"])
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.01)
    assert [r["event"] for r in _actions(patched)] == ["enter"]
    assert proc.wait() == 0
    assert [r["event"] for r in _actions(patched)] == ["enter", "exit"]


def test_poll_ends_the_action(patched: Path) -> None:
    proc = subprocess.Popen(["true"])
    wait_for(lambda: proc.poll() is not None)
    assert [r["event"] for r in _actions(patched)] == ["enter", "exit"]


def test_child_nobody_waits_on_is_ended_by_the_watcher_without_reaping(patched: Path) -> None:
    proc = subprocess.Popen(["sh", "-c", "exit 5"])
    wait_for(lambda: len(_actions(patched)) == 2)
    end = _actions(patched)[1]
    assert (end["event"], end["returncode"], end["ended_by"]) == ("exit", 5, "watcher")
    # The watcher only looked (WNOWAIT): the program can still reap its own child.
    assert proc.wait() == 5
    assert len(_actions(patched)) == 2


def test_docker_cli_is_a_docker_action(patched: Path) -> None:
    for program in ("docker", "docker-compose", "podman"):
        subprocess.run([str(BIN / program), "compose", "ps"], capture_output=True)
    subprocess.run(f"{BIN / 'docker'} fail", shell=True, capture_output=True)
    enters = [r for r in _actions(patched) if r["event"] == "enter"]
    assert [r["action"] for r in enters] == ["Docker"] * 4
    ends = [r for r in _actions(patched) if r["event"] != "enter"]
    assert [r["returncode"] for r in ends] == [0, 0, 0, 3]


def test_detail_is_redacted_and_shortened(patched: Path) -> None:
    subprocess.run(["echo", "--password", "hunter2secret", "x" * 1000], capture_output=True)
    enter = _actions(patched)[0]
    text = (patched / f"trace-{os.getpid()}.log").read_text()
    assert "hunter2secret" not in text
    assert enter["detail"].startswith("echo --password '***' ") or enter["detail"].startswith(
        "echo --password *** "
    )
    assert len(enter["detail"]) <= 300


def test_asyncio_children_end_through_the_transport(patched: Path) -> None:
    async def main() -> tuple[bytes, int]:
        proc = await asyncio.create_subprocess_exec("echo", "hi", stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        shell = await asyncio.create_subprocess_shell("exit 3")
        return out, await shell.wait()

    assert asyncio.run(main()) == (b"hi\n", 3)
    ends = [r for r in _actions(patched) if r["event"] != "enter"]
    assert sorted((r["detail"], r["event"], r["returncode"]) for r in ends) == [
        ("echo hi", "exit", 0),
        ("exit 3", "exit", 3),
    ]


def test_anyio_run_process_and_open_process_are_traced(patched: Path) -> None:
    async def main() -> int:
        result = await anyio.run_process(["echo", "hi"])
        assert result.stdout == b"hi\n"
        async with await anyio.open_process(["sh", "-c", "exit 2"]) as proc:
            return await proc.wait()

    assert anyio.run(main) == 2
    ends = [r for r in _actions(patched) if r["event"] != "enter"]
    assert sorted((r["detail"], r["returncode"]) for r in ends) == [
        ("echo hi", 0),
        ("sh -c 'exit 2'", 2),
    ]


def test_inspect_subprocess_is_one_action(patched: Path) -> None:
    from inspect_ai.util import subprocess as inspect_subprocess

    async def main() -> str:
        result = await inspect_subprocess(["echo", "inspect"])
        return result.stdout

    assert asyncio.run(main()) == "inspect\n"
    enter, end = _only_action(patched)
    assert (enter["detail"], end["event"], end["returncode"]) == ("echo inspect", "exit", 0)


def test_uninstall_restores_the_originals(trace_dir: Path) -> None:
    originals = {
        name: vars(subprocess.Popen)[name]
        for name in ("_execute_child", "_wait", "communicate", "_internal_poll")
    }
    patch = agent.load_patch("subprocess")
    agent.install_patch(patch)
    assert vars(subprocess.Popen)["_execute_child"] is not originals["_execute_child"]
    agent.uninstall_patch(patch)
    for name, original in originals.items():
        assert vars(subprocess.Popen)[name] is original
    subprocess.run(["true"])
    assert _actions(trace_dir) == []


def test_program_still_reaps_children_with_waitpid(patched: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    pid, status = os.waitpid(proc.pid, 0)
    assert pid == proc.pid and os.waitstatus_to_exitcode(status) == 0
    proc.returncode = 0  # as a program that reaps itself would, to silence Popen
    wait_for(lambda: len(_actions(patched)) == 2)
    assert _actions(patched)[1]["ended_by"] == "watcher"


def test_children_spawned_from_many_threads_are_each_one_action(patched: Path) -> None:
    import threading

    def work() -> None:
        for _ in range(5):
            subprocess.run(["true"])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pairs = _pairs(patched)
    assert len(pairs) == 40
    assert all([r["event"] for r in p] == ["enter", "exit"] for p in pairs.values())
