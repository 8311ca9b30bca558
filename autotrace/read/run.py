"""Diagnosis: where the running actions of a run wait, read from the trace files.

``RunTrace`` reads the files of one run (the parent and every traced child process,
tied together by the ``run_id`` of their ``[autotrace] process start`` record) and
keeps, per process, its open actions and the latest stack the watchdog wrote for
each. It reads incrementally (only what was appended since the last refresh), so
``anomalies --watch`` can refresh it cheaply. ``stacks_command`` asks a live process
for a snapshot through the watchdog's socket.
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import time
from pathlib import Path
from stat import S_ISREG
from typing import Any

from autotrace import records
from autotrace.read.reader import TraceReadError

PROCESS_START = f"{records.MESSAGE_PREFIX} process start"


# -- one file -------------------------------------------------------------------


class ProcessTrace:
    """One process's trace file, read so far (``autotrace.read.reader.TraceScanner`` underneath)."""

    def __init__(self, path: Path) -> None:
        from autotrace.read.reader import TraceScanner

        self.path = path
        self.scanner = TraceScanner(path.name)
        self.header: dict[str, Any] | None = None
        self.running: dict[str, dict[str, Any]] = {}  # trace_id -> its enter record
        self.stacks: dict[str, dict[str, Any]] = {}  # trace_id -> latest stack
        self.last_write = 0.0
        self.gone = False
        self._gz_size = -1

    @property
    def offset(self) -> int:
        return self.scanner.offset

    @property
    def pid(self) -> int | None:
        """The process id: from the header, else from the file name."""
        if self.header and isinstance(self.header.get("pid"), int):
            return int(self.header["pid"])
        digits = self.path.name[len("trace-") :].split(".", 1)[0]
        return int(digits) if digits.isdigit() else None

    @property
    def run_id(self) -> str | None:
        return (self.header or {}).get("run_id")

    @property
    def parent_pid(self) -> int | None:
        return (self.header or {}).get("parent_pid")

    @property
    def argv(self) -> list[str]:
        return [str(a) for a in (self.header or {}).get("argv") or []]

    @property
    def started(self) -> float | None:
        """When the process wrote its first record (epoch seconds)."""
        return _epoch((self.header or {}).get("timestamp"))

    def refresh(self) -> bool:
        """Read what was appended since the last call; True when something new was read."""
        try:
            st = os.stat(self.path)
        except OSError:
            self.gone = True
            return False
        if not S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
            self.gone = True
            return False
        if self.path.name.endswith(".gz"):
            # Compressed at exit (by inspect); members may still be appended: no seeking
            # in gzip, so a grown file is read again from the start.
            if st.st_size == self._gz_size:
                return False
            from autotrace.read.reader import open_trace

            self.__init__(self.path)  # type: ignore[misc]
            self._gz_size = st.st_size
            import zlib

            with open_trace(self.path) as f:
                try:
                    self.scanner.feed_stream(f)
                except (OSError, EOFError, zlib.error):
                    # Truncated, or still being compressed: keep the records read so far.
                    self.scanner.problems.note("torn", "compressed file ended early")
            self.scanner.close()
        else:
            if st.st_size < self.scanner.offset:  # truncated or replaced: read it again
                self.__init__(self.path)  # type: ignore[misc]
            if st.st_size == self.scanner.offset:
                return False
            with open(self.path, "rb") as f:
                f.seek(self.scanner.offset)
                self.scanner.feed(f.read(st.st_size - self.scanner.offset))
        self.last_write = max(self.last_write, st.st_mtime)
        self._update()
        return True

    def _update(self) -> None:
        from autotrace.read.reader import latest_stacks

        scanner = self.scanner
        if self.header is None:
            processes = scanner.process_records()
            self.header = processes[0] if processes else None
        self.running = {r.trace_id: r.record for r in scanner.open_actions()}
        stacks = latest_stacks(scanner.agent_records)
        self.stacks = {tid: stacks[tid] for tid in self.running if tid in stacks}

    def state(self, now: float | None = None) -> str:
        """'running', 'exited' (gone with nothing open) or 'dead' (gone with actions open)."""
        if self.path.name.endswith(".gz"):
            return "exited"
        pid = self.pid
        if pid is not None and process_alive(pid, self.started):
            return "running"
        return "dead" if self.running else "exited"


def _epoch(timestamp: Any) -> float | None:
    if not isinstance(timestamp, str):
        return None
    try:
        from datetime import datetime

        return datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        return None


def process_alive(pid: int, started: float | None = None) -> bool:
    """Whether ``pid`` runs and is the process that wrote since ``started`` (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True  # not Linux: trust kill()
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # zombie: dead, not yet reaped
        return False
    if started is not None:
        try:
            ticks = os.sysconf("SC_CLK_TCK")
            with open("/proc/stat", "rb") as f:
                btime = next(int(ln.split()[1]) for ln in f if ln.startswith(b"btime"))
            if btime + int(fields[19]) / ticks > started + 2.0:  # started after the file
                return False
        except (OSError, ValueError, StopIteration, IndexError):
            pass
    return True


# -- one run --------------------------------------------------------------------


def trace_files(directory: Path) -> list[Path]:
    """Trace files in ``directory``, newest first."""
    try:
        paths = [
            p
            for p in directory.iterdir()
            if p.name.startswith("trace-") and p.name.endswith((".log", ".log.gz")) and _regular(p)
        ]
    except OSError:
        return []
    return sorted(paths, key=_mtime, reverse=True)


def _regular(path: Path) -> bool:
    """A regular file (symlinks followed): never open a FIFO or a device as a trace."""
    try:
        return S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def read_header(path: Path) -> dict[str, Any] | None:
    """The ``[autotrace] process start`` record that opens a file, if it has one."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                line = f.readline(1 << 20)
        else:
            with open(path, "rb") as f:
                line = f.readline(1 << 20)
        rec = json.loads(line)
    except (OSError, EOFError, ValueError, RecursionError):
        return None
    if isinstance(rec, dict) and rec.get("message") == PROCESS_START:
        return rec
    return None


class RunTrace:
    """Every trace file of one run, refreshed incrementally."""

    def __init__(self, directory: Path, run_id: str | None, files: list[Path] | None = None):
        self.directory = directory
        self.run_id = run_id
        self.processes: dict[Path, ProcessTrace] = {}
        self._known: set[Path] = set()
        for path in files or []:
            self.processes[path] = ProcessTrace(path)
            self._known.add(path)

    def discover(self) -> None:
        """Pick up the files of this run that appeared since the last call."""
        if self.run_id is None:
            return
        for path in trace_files(self.directory):
            if path in self._known:
                continue
            header = read_header(path)
            if header is None and _size(path) == 0:
                continue  # just created: look again next time
            self._known.add(path)
            if header is not None and header.get("run_id") == self.run_id:
                # trace-PID.log compressed to trace-PID.log.gz: the same process.
                if path.name.endswith(".gz"):
                    self.processes.pop(path.with_name(path.name[: -len(".gz")]), None)
                self.processes[path] = ProcessTrace(path)

    def refresh(self) -> bool:
        """Read what every file of the run appended; True when anything changed."""
        self.discover()
        changed = False
        for trace in list(self.processes.values()):
            changed |= trace.refresh()
        return changed

    def rows(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every running or abandoned action of the run, culprit first."""
        now = time.time() if now is None else now
        out: list[dict[str, Any]] = []
        for trace in self.processes.values():
            out.extend(process_rows(trace, now))
        return rank(out, self)

    def processes_ranked(self, rows: list[dict[str, Any]]) -> list[ProcessTrace]:
        """Processes ordered by their best-ranked action, then by start."""
        order: dict[int | None, int] = {}
        for i, row in enumerate(rows):
            order.setdefault(row["pid"], i)
        return sorted(
            self.processes.values(),
            key=lambda t: (order.get(t.pid, len(rows)), t.started or 0.0),
        )


def process_rows(trace: ProcessTrace, now: float) -> list[dict[str, Any]]:
    """The open actions of one process as anomaly rows (abandoned when it died)."""
    state = trace.state(now)
    abandoned = state != "running"
    until = trace.last_write if abandoned and trace.last_write else now
    rows = []
    for trace_id, rec in list(trace.running.items()):
        start = rec.get("start_time")
        start = (
            float(start)
            if isinstance(start, (int, float))
            else (_epoch(rec.get("timestamp")) or until)
        )
        stack = trace.stacks.get(trace_id, {})
        rows.append(
            {
                "action": rec.get("action"),
                "detail": rec.get("detail", ""),
                "start_time": start,
                "duration": max(0.0, until - start),
                "error": None,
                "trace_id": trace_id,
                "pid": rec.get("pid", trace.pid),
                "parent_id": rec.get("parent_id"),
                "thread": rec.get("thread"),
                "task": rec.get("task"),
                "child_pid": rec.get("child_pid"),
                "abandoned": abandoned,
                "stack": stack.get("stack") or [],
                "where": stack.get("where") or "",
            }
        )
    return rows


def _spawned_child(row: dict[str, Any], run: RunTrace | None) -> bool:
    """A Subprocess/Docker action whose traced child process still has open actions."""
    if run is None or row["action"] not in (records.SUBPROCESS, records.DOCKER):
        return False
    child_pid = row.get("child_pid")
    for child in run.processes.values():
        if not child.running:
            continue
        if child_pid is not None and child.pid == child_pid:
            return True
        if child.parent_pid != row["pid"]:
            continue
        if child.started is not None and child.started + 1.0 < row["start_time"]:
            continue
        child_cmd = shlex.join(child.argv[1:]) if len(child.argv) > 1 else ""
        if not child_cmd or child_cmd in row["detail"] or row["detail"] in child_cmd:
            return True
    return False


def rank(rows: list[dict[str, Any]], run: RunTrace | None = None) -> list[dict[str, Any]]:
    """Culprit first: actions nothing else of ours waits on, oldest first, then the rest
    innermost first.

    An action waits on another when it is that one's parent, or when it started a
    traced child process that has open actions.
    """
    parents = {row["parent_id"] for row in rows if row.get("parent_id")}
    for row in rows:
        row["waits_on_other"] = row["trace_id"] in parents or _spawned_child(row, run)
    # Leaves oldest first; then the waiting ones innermost (newest) first.
    return sorted(
        rows,
        key=lambda r: (
            r["waits_on_other"],
            r["duration"] if r["waits_on_other"] else -r["duration"],
        ),
    )


def default_run(directory: Path) -> str | None:
    """The run of the newest trace file that has a process record."""
    for path in trace_files(directory):
        header = read_header(path)
        if header is not None and header.get("run_id"):
            return str(header["run_id"])
    return None


def load_run(directory: Path, run_id: str | None = None) -> RunTrace:
    """Read every file of ``run_id`` (default: the run of the newest file) in ``directory``."""
    if not directory.is_dir():
        raise TraceReadError(f"no trace directory at {directory}")
    run_id = run_id or default_run(directory)
    if run_id is None:
        raise TraceReadError(f"no trace file with a run id in {directory}")
    run = RunTrace(directory, run_id)
    run.refresh()
    if not run.processes:
        raise TraceReadError(f"no trace file of run {run_id} in {directory}")
    return run


def run_of(directory: Path, run_id: str | None = None, path: Path | None = None) -> RunTrace:
    """The run named ``run_id``, else the run of ``path`` (just that file if it has none)."""
    if not run_id and path is not None:
        header = read_header(path)
        run_id = str(header["run_id"]) if header and header.get("run_id") else None
        # The file itself, whatever its name (only trace-*.log files are discovered),
        # then the other files of its run.
        run = RunTrace(directory, run_id, [path])
        run.refresh()
        return run
    return load_run(directory, run_id)


def run_report(run: RunTrace, now: float | None = None) -> dict[str, Any]:
    """The whole run as JSON: inspect's envelope over every file of the run (running
    culprit first, with ``abandoned``, ``stack``, ``where``), plus each process with its
    command line and state."""
    now = time.time() if now is None else now
    rows = run.rows(now)
    ended: dict[str, list[dict[str, Any]]] = {"cancelled": [], "errors": [], "timeouts": []}
    processes = []
    for trace in run.processes_ranked(rows):
        buckets = trace.scanner.anomalies().buckets_json(now)
        for name in ended:
            ended[name].extend(buckets[name])
        processes.append(
            {
                "pid": trace.pid,
                "parent_pid": trace.parent_pid,
                "argv": trace.argv,
                "state": trace.state(now),
                "trace_file": str(trace.path),
                "last_write": trace.last_write,
                # By file, not by pid: a record's pid may differ from its file's header.
                "running": [r for r in rows if r["trace_id"] in trace.running],
                "counts": {name: len(buckets[name]) for name in ended},
            }
        )
    for name in ended:  # inspect's order: most recently ended first
        ended[name].sort(key=lambda r: (r["start_time"] or 0) + (r["duration"] or 0), reverse=True)
    return {
        "run_id": run.run_id,
        "as_of": now,
        "trace_files": [str(p) for p in run.processes],
        "running": rows,
        **ended,
        "processes": processes,
    }
