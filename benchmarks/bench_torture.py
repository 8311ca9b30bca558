"""Concurrency torture as a benchmark: the same work traced and untraced, and what it wrote.

16 threads x 10,000 steps (a nested action every 10th, errors and timeouts mixed in),
200 asyncio tasks and 4 processes (2 fork, 2 spawn) at once, one trace directory.
The baseline is the same program with tracing replaced by a no-op context manager.

    python benchmarks/bench_torture.py [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
CHILD = TESTS / "hard_support" / "torture_child.py"


def run_torture(directory: Path, per_thread: int, plain: bool) -> dict[str, float]:
    """Run the torture child once; its summary (expected actions, seconds)."""
    env = dict(os.environ, AUTOTRACE_DIR=str(directory), TORTURE_PLAIN="1" if plain else "0")
    env.pop("AUTOTRACE_FILE", None)
    env.pop("INSPECT_TRACE_FILE", None)
    per_proc = str(max(per_thread // 2, 1))
    done = subprocess.run(
        [sys.executable, str(CHILD), "torture", "--per-thread", str(per_thread)]
        + ["--per-proc", per_proc],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main(quick: bool = False) -> list[dict[str, object]]:
    """Measure, print and return the rows (ours: traced seconds; baseline: untraced)."""
    sys.path.insert(0, str(TESTS))
    from hard_support.traces import pairing, scan_dir

    per_thread = 2_000 if quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        traced_dir, plain_dir = Path(tmp) / "traced", Path(tmp) / "plain"
        traced_dir.mkdir()
        plain_dir.mkdir()
        plain = run_torture(plain_dir, per_thread, plain=True)
        traced = run_torture(traced_dir, per_thread, plain=False)
        scan = scan_dir(traced_dir)
        pairs = pairing(scan.records)
    actions = pairs.actions
    ok = (
        scan.torn == 0
        and scan.torn_tail == 0
        and not pairs.unpaired
        and not pairs.duplicated
        and actions == traced["expected_actions"]
    )
    print(
        f"torture: {actions} actions in {scan.files} files, {scan.lines} lines written, "
        f"{scan.torn} torn, {len(pairs.unpaired)} unpaired, {len(pairs.duplicated)} "
        f"duplicated ids; {traced['seconds']:.2f} s traced, {plain['seconds']:.2f} s untraced"
    )
    return [
        {
            "name": f"torture: 16 threads x {per_thread} + 200 tasks + 4 processes",
            "ours": f"{traced['seconds']:.2f} s, {scan.lines} lines, {scan.torn} torn",
            "baseline": f"{plain['seconds']:.2f} s untraced",
            "ratio": f"{traced['seconds'] / max(plain['seconds'], 1e-9):.1f}x",
            "target": "0 torn, every action paired once",
            "ok": ok,
        }
    ]


if __name__ == "__main__":
    sys.exit(0 if all(r["ok"] for r in main(quick="--quick" in sys.argv)) else 1)
