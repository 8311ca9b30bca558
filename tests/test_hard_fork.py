"""Fork safety: children of a traced process write their own file, once, without deadlock.

The parent forks from a thread (os.fork) while another thread holds an open action and
writes as fast as it can, then starts multiprocessing children with fork, spawn and
forkserver while it holds an action itself. A variant forks while a third thread holds
the writer's and the import hooks' locks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hard_support.traces import pairing, report, scan_file

CHILD = Path(__file__).parent / "hard_support" / "torture_child.py"


@pytest.mark.parametrize("hold_locks", [False, True], ids=["plain", "locks-held-at-fork"])
def test_children_of_fork_spawn_and_forkserver_write_their_own_file_once(
    tmp_path: Path, hold_locks: bool, request: pytest.FixtureRequest
) -> None:
    directory = tmp_path / "traces"
    env = dict(os.environ, AUTOTRACE_DIR=str(directory))
    env.pop("AUTOTRACE_FILE", None)
    env.pop("INSPECT_TRACE_FILE", None)
    args = [sys.executable, str(CHILD), "forks", "--os-forks", "3"]
    # A deadlock shows as this timeout.
    done = subprocess.run(
        args + (["--hold-locks"] if hold_locks else []),
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert "[autotrace]" not in done.stderr and "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    assert set(summary["codes"].values()) == {0}

    child_pids = {
        name.name: int(name.read_text()) for name in directory.glob("child-*")
    }  # each child wrote its pid there
    assert len(child_pids) == 6  # 3 os.fork, fork, spawn, forkserver
    files = {int(p.name[len("trace-") : -len(".log")]): p for p in directory.glob("trace-*.log")}
    parent = summary["parent"]
    assert set(files) == {parent, *child_pids.values()}

    seen: dict[str, str] = {}
    lines = 0
    for pid, path in files.items():
        scan = scan_file(path)
        assert scan.torn == 0 and scan.torn_tail == 0
        lines += scan.lines
        records = scan.records
        assert records[0]["message"].startswith("[autotrace] process start")
        assert records[0]["pid"] == pid
        assert {r["pid"] for r in records} == {pid}  # nothing of another process
        pairs = pairing(records)
        assert pairs.unpaired == [] and pairs.duplicated == []
        for r in records:
            if r.get("event") == "enter":
                assert r["trace_id"] not in seen, f"{r['trace_id']} in {path} and {seen}"
                seen[r["trace_id"]] = path.name
        details = {r.get("detail") for r in records}
        if pid == parent:
            assert "held by the busy thread" in details
            assert not any(str(d).endswith(" child") for d in details)
        else:
            # The parent's open actions are not repeated in, nor ended by, the child.
            assert "held by the busy thread" not in details
            assert not any(str(d).startswith("forker before fork") for d in details)
            assert sum(1 for d in details if str(d).endswith(" child")) == 1
    report(
        request.config,
        f"fork safety ({'locks held' if hold_locks else 'plain'})",
        processes=len(files),
        lines_written=lines,
        actions=len(seen),
        written_twice=0,
    )
