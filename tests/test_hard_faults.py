"""Faults of the trace directory: the program's results never change, one warning at most.

Each case runs the same deterministic program twice, plain and traced, in a fresh
interpreter, and compares what it prints. A full disk and an unwritable directory
turn tracing off with exactly one ``[autotrace]`` line on stderr; a deleted directory
and a file rotated away by another process are recovered from: the writer opens a new
file, writes the still-open actions' ``enter`` again, says so in one warning, and
tracing goes on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hard_support.traces import pairing, report, scan_dir, scan_file

CHILD = Path(__file__).parent / "hard_support" / "torture_child.py"


def _env(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["AUTOTRACE_DIR"] = str(directory)
    env.pop("AUTOTRACE_FILE", None)
    env.pop("INSPECT_TRACE_FILE", None)
    return env


def _run(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), "program", *args],
        env=_env(directory),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("[autotrace]")]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> str:
    """What the program prints without the agent."""
    done = _run(tmp_path_factory.mktemp("plain") / "unused", "--plain", "--pad", "200")
    assert done.returncode == 0 and done.stderr == ""
    return done.stdout


@contextlib.contextmanager
def _tmpfs(mountpoint: Path, options: str) -> Iterator[bool]:
    """Mount a small tmpfs at ``mountpoint`` if this machine allows it (root, no sandbox)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    mounted = (
        shutil.which("mount") is not None
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)],
            capture_output=True,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def _assert_disabled_once(done: subprocess.CompletedProcess[str], baseline: str, why: str) -> None:
    assert done.returncode == 0, done.stderr
    assert done.stdout == baseline
    warnings = _warnings(done.stderr)
    assert len(warnings) == 1, done.stderr
    assert "tracing disabled" in warnings[0] and why in warnings[0], warnings
    assert "Traceback" not in done.stderr


def test_full_filesystem_keeps_results_and_warns_once(
    tmp_path: Path, baseline: str, request: pytest.FixtureRequest
) -> None:
    mountpoint = tmp_path / "small"
    with _tmpfs(mountpoint, "size=64k,mode=0755") as mounted:
        if mounted:  # a real full disk: 64 KiB hold about a tenth of the program's records
            done = _run(mountpoint / "traces", "--pad", "200")
        else:  # the machine cannot mount: the seam at os.write inside autotrace.runtime.writer
            done = _run(tmp_path / "traces", "--pad", "200", "--os-fault", "write:ENOSPC:40")
        _assert_disabled_once(done, baseline, "No space left on device")
        scan = scan_dir((mountpoint if mounted else tmp_path) / "traces")
    # What was written before the disk filled up is intact (a short last write may be torn).
    assert scan.files == 1 and scan.lines > 0 and scan.torn == 0
    report(
        request.config,
        "full filesystem",
        tmpfs=mounted,
        lines_written=scan.lines,
        lines_torn=scan.torn,
        torn_tail=scan.torn_tail,
        warnings=1,
    )


def test_write_failing_with_enospc_keeps_results_and_warns_once(
    tmp_path: Path, baseline: str
) -> None:
    done = _run(tmp_path / "traces", "--pad", "200", "--os-fault", "write:ENOSPC:25")
    _assert_disabled_once(done, baseline, "No space left on device")
    scan = scan_dir(tmp_path / "traces")
    assert scan.lines == 25 and scan.torn == 0 and scan.torn_tail == 0


def test_trace_directory_under_a_regular_file_keeps_results_and_warns_once(
    tmp_path: Path, baseline: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = _run(blocker / "traces", "--pad", "200")
    _assert_disabled_once(done, baseline, "cannot open trace file")
    assert blocker.read_text() == "not a directory"


def test_read_only_trace_directory_keeps_results_and_warns_once(
    tmp_path: Path, baseline: str
) -> None:
    mountpoint = tmp_path / "ro"
    with _tmpfs(mountpoint, "ro,size=64k") as mounted:
        if mounted:
            done = _run(mountpoint, "--pad", "200")
        else:  # the machine cannot mount: the seam at os.open inside autotrace.runtime.writer
            done = _run(tmp_path / "traces", "--pad", "200", "--os-fault", "open:EROFS:0")
        _assert_disabled_once(done, baseline, "Read-only file system")


def test_directory_without_write_permission_keeps_results_and_warns_once(
    tmp_path: Path, baseline: str
) -> None:
    directory = tmp_path / "locked"
    directory.mkdir()
    os.chmod(directory, 0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:  # root ignores permission bits: drop the capabilities that do so
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permission bits cannot be enforced")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    try:
        done = subprocess.run(
            [*prefix, sys.executable, str(CHILD), "program", "--pad", "200"],
            env=_env(directory),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.chmod(directory, 0o755)
    _assert_disabled_once(done, baseline, "Permission denied")
    assert list(directory.iterdir()) == []


def _paused_run(directory: Path, fault: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the program, apply ``fault`` to its trace files half-way, let it finish."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(CHILD),
            "program",
            "--pad",
            "200",
            "--pause-at",
            "150",
            "--until-exists",
            str(directory / "trace-PID.log"),
        ],
        env=_env(directory),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The child waits for its own file under this name: tell it the pid-based name.
    assert proc.stdout is not None and proc.stdin is not None
    paused = proc.stdout.readline()
    assert paused.startswith("PAUSED"), paused
    own = directory / f"trace-{proc.pid}.log"
    assert own.exists()
    if fault == "delete directory":
        shutil.rmtree(directory)
    elif fault == "unlink file":
        # What a rotation in another process does (ours and inspect's both unlink).
        subprocess.run([sys.executable, "-c", f"import os; os.unlink({str(own)!r})"], check=True)
    elif fault == "rename file":
        # What logrotate does: the old file moves aside, a new one is expected at the name.
        own.rename(own.with_name(f"{own.name}.1"))
    stdout, stderr = proc.communicate(f"{proc.pid}\n", timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), proc.pid


@pytest.mark.parametrize("fault", ["delete directory", "unlink file", "rename file"])
def test_trace_file_removed_mid_run_is_reopened_with_open_actions_written_again(
    tmp_path: Path, baseline: str, fault: str, request: pytest.FixtureRequest
) -> None:
    directory = tmp_path / "traces"
    done, pid = _paused_run(directory, fault)
    assert done.returncode == 0, done.stderr
    assert done.stdout == baseline  # (the PAUSED line was read already)
    warnings = _warnings(done.stderr)
    assert len(warnings) == 1 and "by another process" in warnings[0], done.stderr
    path = directory / f"trace-{pid}.log"
    scan = scan_file(path)
    assert scan.torn == 0 and scan.torn_tail == 0
    records = scan.records
    assert records[0]["message"].startswith("[autotrace] process start")
    # The action held open across the fault is in the new file: its enter again, then its end.
    outer = [r for r in records if r.get("detail") == "outer (held open)"]
    assert [r["event"] for r in outer] == ["enter", "exit"]
    assert records[1] is outer[0]
    # Every action of the second half is in the new file, paired.
    pairs = pairing(records)
    assert pairs.unpaired == [] and pairs.duplicated == []
    steps = {r["detail"].split()[1] for r in records if r.get("detail", "").startswith("step ")}
    assert {str(i) for i in range(150, 300)} <= steps
    if fault == "delete directory":
        assert directory.stat().st_mode & 0o777 == 0o700  # recreated as ours
    report(request.config, f"fault: {fault}", lines_in_new_file=scan.lines, warnings=1)
