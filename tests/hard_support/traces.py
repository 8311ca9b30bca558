"""Reading trace files line by line for the hardening suites, counting what is torn.

Deliberately independent of autotrace's reader: these checks judge the raw bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

END_EVENTS = ("exit", "cancel", "error", "timeout")
EVENTS = ("enter", *END_EVENTS)


@dataclass
class Scan:
    """What the lines of some trace files hold."""

    files: int = 0
    lines: int = 0  # complete lines (ending in a newline)
    torn: int = 0  # complete lines that are not one JSON object
    torn_tail: int = 0  # files whose last bytes are not a complete line
    records: list[dict[str, Any]] = field(default_factory=list)
    torn_examples: list[str] = field(default_factory=list)

    def actions(self) -> list[dict[str, Any]]:
        return [r for r in self.records if "action" in r]


def scan_file(path: Path, scan: Scan | None = None) -> Scan:
    """Parse every complete line of ``path``; a last line without newline is a torn tail."""
    scan = scan or Scan()
    data = path.read_bytes()
    scan.files += 1
    body, _, tail = data.rpartition(b"\n")
    if tail:
        scan.torn_tail += 1
    if not body and not data.endswith(b"\n"):
        return scan
    for raw in body.split(b"\n"):
        scan.lines += 1
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            scan.torn += 1
            if len(scan.torn_examples) < 5:
                scan.torn_examples.append(raw[:200].decode("utf-8", "replace"))
            continue
        record["_file"] = path.name
        scan.records.append(record)
    return scan


def scan_dir(directory: Path, pattern: str = "trace-*.log") -> Scan:
    """Scan every trace file of ``directory``."""
    scan = Scan()
    for path in sorted(directory.glob(pattern)):
        scan_file(path, scan)
    return scan


@dataclass
class Pairing:
    """How action records pair up by trace_id."""

    actions: int  # distinct trace_ids
    enters: int
    ends: int
    unpaired: list[str]  # trace_ids without exactly one enter and one end
    duplicated: list[str]  # trace_ids whose enter appears more than once


def pairing(records: list[dict[str, Any]]) -> Pairing:
    """Count enter and end records per trace_id."""
    enters: Counter[str] = Counter()
    ends: Counter[str] = Counter()
    for record in records:
        if "action" not in record:
            continue
        if record["event"] == "enter":
            enters[record["trace_id"]] += 1
        elif record["event"] in END_EVENTS:
            ends[record["trace_id"]] += 1
        else:
            raise AssertionError(f"unknown event in {record}")
    ids = set(enters) | set(ends)
    unpaired = sorted(i for i in ids if enters[i] != 1 or ends[i] != 1)
    duplicated = sorted(i for i in ids if enters[i] > 1)
    return Pairing(len(ids), sum(enters.values()), sum(ends.values()), unpaired, duplicated)


def check_with_inspect_reader(path: Path) -> int:
    """Read ``path`` with inspect's own reader: the number of records it accepts."""
    from inspect_ai._util.trace import read_trace_file

    return len(read_trace_file(path))


def report(config: Any, name: str, **figures: Any) -> None:
    """Show the figures of a suite on the terminal (past pytest's capture) and keep them.

    ``config`` is pytest's config (``request.config``). With AUTOTRACE_HARD_FIGURES set,
    each figure line is appended there as JSON too.
    """
    text = " ".join(f"{key}={value}" for key, value in figures.items())
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"\n[hard figures] {name}: {text}")
    target = os.environ.get("AUTOTRACE_HARD_FIGURES")
    if target:
        with open(target, "a") as out:
            out.write(json.dumps({"suite": name, **figures}) + "\n")
