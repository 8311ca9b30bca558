"""The writer: file and directory modes, rotation, INSPECT_TRACE_FILE, fork, failures."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import read_records

from autotrace import config
from autotrace.runtime import actions
from autotrace.runtime.actions import trace_action
from autotrace.runtime.writer import rotate

DEAD_PID_BASE = 4_000_000  # above pid_max on Linux: never a live process


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOTRACE_", "INSPECT_"))}
    env.update(extra)
    return env


def test_trace_file_is_0600_and_new_directory_0700(trace_dir: Path) -> None:
    with trace_action("Model", "m"):
        pass
    path = trace_dir / f"trace-{os.getpid()}.log"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(trace_dir.stat().st_mode) == 0o700


def test_existing_directory_mode_is_left_alone(trace_dir: Path) -> None:
    trace_dir.mkdir()
    trace_dir.chmod(0o755)
    with trace_action("Model", "m"):
        pass
    assert stat.S_IMODE(trace_dir.stat().st_mode) == 0o755


def test_file_starts_with_process_record_then_whole_lines(trace_dir: Path) -> None:
    with trace_action("Model", "m"):
        pass
    records = read_records(trace_dir / f"trace-{os.getpid()}.log")
    assert records[0]["message"].startswith("[autotrace] process start")
    assert records[0]["pid"] == os.getpid() and "run_id" in records[0]
    assert [r["event"] for r in records[1:]] == ["enter", "exit"]


def _old_files(directory: Path, count: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        path = directory / f"trace-{DEAD_PID_BASE + n}.log"
        path.write_text("{}\n")
        os.utime(path, (1_000_000 + n, 1_000_000 + n))


def test_rotation_keeps_the_newest_files(trace_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _old_files(trace_dir, 15)
    monkeypatch.setenv(config.ENV_KEEP, "5")
    with trace_action("Model", "m"):
        pass
    names = sorted(p.name for p in trace_dir.iterdir())
    # Ours plus the four newest old files.
    expected = [f"trace-{DEAD_PID_BASE + n}.log" for n in range(11, 15)]
    assert names == sorted([*expected, f"trace-{os.getpid()}.log"])


def test_rotation_keeps_files_of_live_processes(tmp_path: Path) -> None:
    _old_files(tmp_path, 3)
    live = tmp_path / f"trace-{os.getpid()}.log"
    live.write_text("{}\n")
    os.utime(live, (1, 1))  # the oldest, but its process is alive
    rotate(tmp_path, 1)
    assert live.exists()
    assert [p.name for p in tmp_path.iterdir() if p != live] == [f"trace-{DEAD_PID_BASE + 2}.log"]


def test_concurrent_rotation_never_fails(tmp_path: Path) -> None:
    _old_files(tmp_path, 200)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def rotate_now() -> None:
        try:
            start.wait(timeout=10)
            rotate(tmp_path, 3)
        except BaseException as exc:  # noqa: BLE001 - any failure fails the test
            errors.append(exc)

    threads = [threading.Thread(target=rotate_now) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(list(tmp_path.iterdir())) == 3


def test_many_processes_starting_at_once_all_trace(tmp_path: Path) -> None:
    directory = tmp_path / "traces"
    _old_files(directory, 30)
    code = "from autotrace import trace_action\nwith trace_action('Model', 'child'): pass\n"
    env = _child_env(**{config.ENV_DIR: str(directory), config.ENV_KEEP: "3"})
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
        for _ in range(8)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and b"autotrace" not in err, err
    # Every child wrote its pair (files of processes still alive at rotation are kept).
    children = {f"trace-{p.pid}.log" for p in procs}
    written = {p.name for p in directory.iterdir() if p.name in children}
    for name in written:
        events = [r.get("event") for r in read_records(directory / name)]
        assert events[-2:] == ["enter", "exit"]
    assert len(list(directory.iterdir())) <= 3 + len(procs)


def test_inspect_trace_file_is_honoured(trace_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = trace_dir.parent / "elsewhere" / "mine.log"
    monkeypatch.setenv(config.INSPECT_TRACE_FILE, str(target))
    with trace_action("Model", "m"):
        pass
    assert [r["event"] for r in read_records(target) if "action" in r] == ["enter", "exit"]
    assert not trace_dir.exists() or not list(trace_dir.iterdir())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_writes_its_own_file(trace_dir: Path) -> None:
    with trace_action("Subtask", "parent work"):
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                with trace_action("Model", "child work"):
                    pass
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent = read_records(trace_dir / f"trace-{os.getpid()}.log")
    child = read_records(trace_dir / f"trace-{pid}.log")
    assert {r.get("detail") for r in parent if "action" in r} == {"parent work"}
    child_actions = [r for r in child if "action" in r]
    assert [(r["detail"], r["event"]) for r in child_actions] == [
        ("child work", "enter"),
        ("child work", "exit"),
    ]
    assert child[0]["pid"] == pid and child_actions[0]["pid"] == pid
    assert child_actions[0]["trace_id"].split("-")[1] == str(pid)


@pytest.mark.parametrize("where", ["under_a_file", "full_disk"])
def test_unwritable_trace_goes_on_with_one_warning(tmp_path: Path, where: str) -> None:
    if where == "under_a_file":
        (tmp_path / "plain").write_text("")
        env = _child_env(**{config.ENV_DIR: str(tmp_path / "plain" / "traces")})
    else:
        if not Path("/dev/full").exists():
            pytest.skip("no /dev/full")
        env = _child_env(**{config.ENV_FILE: "/dev/full"})
    code = textwrap.dedent(
        """
        from autotrace import trace_action, trace_message
        total = 0
        for n in range(5):
            with trace_action("Model", f"call {n}"):
                total += n
        trace_message("x", "still fine")
        print("result", total)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert out.stdout == "result 10\n"
    warnings = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "tracing disabled" in warnings[0], out.stderr


def test_writer_recovers_when_file_is_rotated_away(trace_dir: Path) -> None:
    with trace_action("Model", "first"):
        pass
    path = trace_dir / f"trace-{os.getpid()}.log"
    path.unlink()
    actions.writer._checked_at = 0.0  # the next write looks again at once
    with trace_action("Model", "second"):
        pass
    records = read_records(path)
    assert records[0]["message"].startswith("[autotrace] process start")
    assert [r["detail"] for r in records if "action" in r] == ["second", "second"]


def test_held_lines_are_written_in_order_after_the_file_moved_to_gzip(trace_dir: Path) -> None:
    import gzip

    from autotrace.runtime import writer as writer_module

    writer = actions.writer
    writer.write(b'{"n": 0}\n')
    assert writer.state == writer_module.OPEN and writer.path is not None
    log = Path(writer.path)
    writer.hold()
    writer.write(b'{"n": 1}\n')  # while someone else moves the file
    gz = log.with_suffix(".log.gz")
    gz.write_bytes(gzip.compress(log.read_bytes()))
    log.unlink()
    writer.continue_in_gzip(str(gz))
    assert writer.state == writer_module.HOLDING  # still holding until released
    writer.write(b'{"n": 2}\n')
    writer.release()
    writer.write(b'{"n": 3}\n')
    assert writer.state == writer_module.GZIP
    assert "write" not in vars(writer)  # behaviour follows state, no method swapped in
    lines = gzip.decompress(gz.read_bytes()).splitlines()
    assert lines[-4:] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']


def test_fork_registry_updates_the_pid_and_runs_each_hook_once_in_the_child() -> None:
    code = textwrap.dedent(
        """
        import os
        from autotrace.runtime import forks
        calls = []
        forks.after_fork_in_child(lambda: calls.append(os.getpid()))
        hook = lambda: calls.append("again")
        forks.after_fork_in_child(hook)
        forks.after_fork_in_child(hook)
        pid = os.fork()
        if pid == 0:
            ok = forks.pid == os.getpid() and calls == [os.getpid(), "again"]
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), calls)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_child_env(), capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "0 []", done.stderr
