"""Concurrency torture: many threads, tasks and processes tracing into one directory, and kill -9.

The promise: no line is torn or lost, every ``enter`` has exactly one end record,
trace_ids never repeat, and a process killed at any moment leaves only complete
lines (at most one torn tail, which readers report and skip).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hard_support.traces import check_with_inspect_reader, pairing, report, scan_dir, scan_file

CHILD = Path(__file__).parent / "hard_support" / "torture_child.py"
KILL_TRIALS = 20
SEED = 20261127


def _env(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["AUTOTRACE_DIR"] = str(directory)
    env.pop("AUTOTRACE_FILE", None)
    env.pop("INSPECT_TRACE_FILE", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(CHILD.parent.parent), env.get("PYTHONPATH", "")) if p
    )
    return env


@pytest.mark.slow
def test_threads_tasks_and_processes_at_once_tear_no_line_and_pair_every_action(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    directory = tmp_path / "traces"
    directory.mkdir()
    done = subprocess.run(
        [sys.executable, str(CHILD), "torture", "--threads", "16", "--per-thread", "10000"],
        env=_env(directory),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "[autotrace]" not in done.stderr
    summary = json.loads(done.stdout)
    assert summary["exitcodes"] == [0, 0, 0, 0]

    scan = scan_dir(directory)
    assert scan.torn == 0, scan.torn_examples
    assert scan.torn_tail == 0
    assert scan.files == 5  # the parent and its 4 children (2 fork, 2 spawn), one file each
    pairs = pairing(scan.records)
    assert pairs.unpaired == []
    assert pairs.duplicated == []
    assert pairs.actions == summary["expected_actions"]
    # Every file holds only its own process's records, starting with the process record.
    for path in directory.glob("trace-*.log"):
        pid = int(path.name[len("trace-") : -len(".log")])
        mine = [r for r in scan.records if r["_file"] == path.name]
        assert mine[0]["message"].startswith("[autotrace] process start")
        assert {r["pid"] for r in mine} == {pid}
    events = {r["event"] for r in scan.actions()}
    assert events == {"enter", "exit", "error", "timeout", "cancel"}
    report(
        request.config,
        "torture",
        files=scan.files,
        lines_written=scan.lines,
        lines_torn=scan.torn,
        actions=pairs.actions,
        unpaired=len(pairs.unpaired),
        duplicate_ids=len(pairs.duplicated),
        seconds=round(summary["seconds"], 1),
    )


def _our_reader_torn(path: Path) -> int:
    """How many torn lines autotrace's reader reports in ``path`` (it must not fail)."""
    from autotrace.read.reader import read_file as read_trace

    scanner = read_trace(path)
    problems = scanner.problems
    assert problems.garbage == problems.invalid == problems.unknown_event == 0
    return problems.torn


def _assert_cli_reports_torn_tail(path: Path) -> None:
    """`inspect-trace anomalies` reads the file, exits 0 and says the last line was torn."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "inspect-trace"), "anomalies", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "torn" in done.stderr, done.stderr
    json.loads(done.stdout)


def _wait_for_size(path_glob: Path, size: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the spinning child died by itself"
        files = list(path_glob.parent.glob(path_glob.name))
        if files and files[0].stat().st_size >= size:
            return
        time.sleep(0.0005)  # polling a condition (file size), bounded by the deadline
    raise AssertionError(f"trace file never reached {size} bytes")


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_only_complete_lines(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(SEED)
    lines = torn = torn_tails = inspect_records = 0
    for trial in range(KILL_TRIALS):
        directory = tmp_path / f"trial-{trial}"
        directory.mkdir()
        threshold = rng.randint(2_000, 3_000_000)
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), "spin", "--threads", "4"],
            env=_env(directory),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for_size(directory / "trace-*.log", threshold, proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert b"[autotrace]" not in stderr
        (path,) = directory.glob("trace-*.log")
        scan = scan_file(path)
        assert scan.torn == 0, scan.torn_examples
        lines += scan.lines
        torn += scan.torn
        torn_tails += scan.torn_tail
        # Every enter before the last few has its end: ended actions are never lost.
        pairs = pairing(scan.records)
        assert pairs.duplicated == []
        assert len(pairs.unpaired) <= 4  # at most one open action per spinning thread
        # inspect's own reader takes the file as it is (a torn tail is skipped).
        inspect_records += check_with_inspect_reader(path)
        # Ours reports the torn tail and reads every complete line.
        assert _our_reader_torn(path) == scan.torn_tail
        if scan.torn_tail:
            _assert_cli_reports_torn_tail(path)
    report(
        request.config,
        "kill -9",
        trials=KILL_TRIALS,
        seed=SEED,
        lines_written=lines,
        lines_torn=torn,
        torn_tails=torn_tails,
        inspect_reader_records=inspect_records,
    )
    assert inspect_records == lines


def test_a_file_cut_at_any_byte_keeps_every_complete_line(
    tmp_path: Path, trace_dir: Path, request: pytest.FixtureRequest
) -> None:
    """A kill can cut the last write short: cut a real trace file at random bytes."""
    from autotrace.runtime.actions import trace_action, writer

    for i in range(300):
        with trace_action("Torture", f"step {i} " + "z" * (i * 7)):
            pass
    source = writer.path
    assert source is not None
    data = Path(source).read_bytes()
    rng = random.Random(SEED)
    cuts = 0
    for trial in range(KILL_TRIALS):
        cut = rng.randint(1, len(data) - 1)
        path = tmp_path / f"cut-{trial}" / "trace-1.log"
        path.parent.mkdir()
        path.write_bytes(data[:cut])
        scan = scan_file(path)
        complete = data[:cut].count(b"\n")
        assert scan.lines == complete and scan.torn == 0
        assert scan.torn_tail == (0 if data[cut - 1 : cut] == b"\n" else 1)
        cuts += scan.torn_tail
        assert check_with_inspect_reader(path) == complete
        assert _our_reader_torn(path) == scan.torn_tail
        if trial == 0 and scan.torn_tail:
            _assert_cli_reports_torn_tail(path)
    report(request.config, "cut files", trials=KILL_TRIALS, torn_tails=cuts)
