"""A whole run: the trace files of a parent and every traced child process, read together.

``RunTrace`` finds the files of one run (tied together by the ``run_id`` of their
process header) and reads each incrementally (``ProcessTrace``: only what was appended
since the last refresh), so ``anomalies --watch`` and the exporters can refresh it
cheaply. ``run_view`` turns it into rows: one ranking over every process, in which the
outermost open actions of a traced child process count as children of the
``Subprocess`` action that started it.
"""

from __future__ import annotations

import os
import shlex
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

from autotrace.read.files import (
    Header,
    TraceReadError,
    list_trace_files,
    open_trace,
    pid_from_name,
    read_header,
)
from autotrace.read.model import ActionRow, Anomalies, anomalies_of, ended_order, rank
from autotrace.read.reader import Record, TraceReader
from autotrace.records import DOCKER, SUBPROCESS
from autotrace.runtime.process_info import pid_alive

# -- one file -------------------------------------------------------------------


OnRecord = Callable[["ProcessTrace", Record], None]


class ProcessTrace:
    """One process's trace file, read so far; ``refresh()`` reads what was appended.

    ``on_record(trace, record)``, when given, sees every valid record as it is read (a
    ``.gz`` file that grew is read again from its start: its records are seen again).
    """

    def __init__(self, path: Path, on_record: OnRecord | None = None) -> None:
        self.path = path
        self.on_record = on_record
        self.reader = self._new_reader()
        self.header: Header | None = None
        self.last_write = 0.0
        self.gone = False
        self._gz_size = -1

    def _new_reader(self) -> TraceReader:
        hook = self.on_record
        if hook is None:
            return TraceReader(self.path.name)
        return TraceReader(self.path.name, on_record=lambda record: hook(self, record))

    @property
    def offset(self) -> int:
        """Bytes read so far (of the decompressed stream for a ``.gz`` file)."""
        return self.reader.offset

    @property
    def running(self) -> dict[str, Any]:
        """trace_id -> enter record of the actions open so far, in order of entry."""
        return self.reader.running

    @property
    def pid(self) -> int | None:
        """The process id: from the header, else from the file name."""
        if self.header is not None and self.header.pid is not None:
            return self.header.pid
        return pid_from_name(self.path.name)

    @property
    def run_id(self) -> str | None:
        """The run the header names (None: no header yet, or not ours)."""
        return self.header.run_id if self.header else None

    @property
    def parent_pid(self) -> int | None:
        """The traced process that started this one, as the header says."""
        return self.header.parent_pid if self.header else None

    @property
    def argv(self) -> list[str]:
        """The (redacted) command line the header records."""
        return list(self.header.argv) if self.header else []

    @property
    def started(self) -> float | None:
        """When the process wrote its header (epoch seconds)."""
        return self.header.started if self.header else None

    def refresh(self) -> bool:
        """Read what was appended since the last call; True when something new was read."""
        try:
            st = os.stat(self.path)
        except OSError:
            self.gone = True
            return False
        if not S_ISREG(st.st_mode):  # replaced by a FIFO or a device: never opened
            self.gone = True
            return False
        if self.header is None:  # first: ``on_record`` may ask for the process's pid
            self.header = read_header(self.path)
        if self.path.name.endswith(".gz"):
            # Compressed at exit (by inspect); members may still be appended: no seeking
            # in gzip, so a grown file is read again from the start.
            if st.st_size == self._gz_size:
                return False
            self.reader = self._new_reader()
            self._gz_size = st.st_size
            try:
                with open_trace(self.path) as f:
                    self.reader.feed_stream(f)
            except (TraceReadError, OSError, EOFError, zlib.error):
                # Unreadable, or still being compressed: keep the records read so far.
                self.reader.problems.note("torn", "compressed file ended early")
            self.reader.close()
        else:
            if st.st_size < self.reader.offset:  # truncated or replaced: read it again
                self.reader = self._new_reader()
                self.header = None
            if st.st_size == self.reader.offset:
                return False
            try:
                with open_trace(self.path) as f:
                    f.seek(self.reader.offset)
                    self.reader.feed_stream(f)  # chunk by chunk: memory stays flat
            except (TraceReadError, OSError):
                self.gone = True
                return False
        if self.header is None:
            self.header = read_header(self.path)
        self.last_write = max(self.last_write, st.st_mtime)
        return True

    def state(self) -> str:
        """'running', 'exited' (gone with nothing open) or 'dead' (gone with actions open)."""
        if self.path.name.endswith(".gz"):
            return "exited"
        pid = self.pid
        if pid is not None and process_alive(pid, self.started):
            return "running"
        return "dead" if self.reader.running else "exited"

    def anomalies(self, as_of: float) -> Anomalies:
        """This file's anomalies (running rows not ranked: the run ranks them together)."""
        until = None
        if self.state() != "running":
            until = self.last_write or as_of
        return anomalies_of(self.reader, as_of=as_of, pid=self.pid, until=until, rank_running=False)


def process_alive(pid: int, started: float | None = None) -> bool:
    """Whether ``pid`` runs and is the process that wrote since ``started`` (not a reused pid)."""
    if not pid_alive(pid):
        return False
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


class RunTrace:
    """Every trace file of one run, refreshed incrementally (``on_record``: see ProcessTrace)."""

    def __init__(
        self,
        directory: Path,
        run_id: str | None,
        files: list[Path] | None = None,
        on_record: OnRecord | None = None,
    ):
        self.directory = directory
        self.run_id = run_id
        self.on_record = on_record
        self.processes: dict[Path, ProcessTrace] = {}
        self._known: set[Path] = set()
        for path in files or []:
            self.processes[path] = ProcessTrace(path, on_record)
            self._known.add(path)

    def discover(self) -> None:
        """Pick up the files of this run that appeared since the last call."""
        if self.run_id is None:
            return
        for info in list_trace_files(self.directory):
            path = info.path
            if path in self._known:
                continue
            header = read_header(path)
            if header is None and info.size == 0:
                continue  # just created: look again next time
            self._known.add(path)
            if header is not None and header.run_id == self.run_id:
                # trace-PID.log compressed to trace-PID.log.gz: the same process.
                if path.name.endswith(".gz"):
                    self.processes.pop(path.with_name(path.name[: -len(".gz")]), None)
                self.processes[path] = ProcessTrace(path, self.on_record)

    def refresh(self) -> bool:
        """Read what every file of the run appended; True when anything changed."""
        self.discover()
        changed = False
        for trace in list(self.processes.values()):
            changed |= trace.refresh()
        return changed

    def rows(self, now: float | None = None) -> list[ActionRow]:
        """Every running (or abandoned) action of the run, ranked culprit first."""
        return run_view(self, now).anomalies.running


@dataclass
class ProcessView:
    """One process of a run as the views show it."""

    pid: int | None
    parent_pid: int | None
    argv: list[str]
    state: str
    trace_file: Path
    last_write: float
    running: list[ActionRow]
    counts: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        """The process entry of `anomalies --run --json`."""
        return {
            "pid": self.pid,
            "parent_pid": self.parent_pid,
            "argv": self.argv,
            "state": self.state,
            "trace_file": str(self.trace_file),
            "last_write": self.last_write,
            "running": [r.as_json() for r in self.running],
            "counts": self.counts,
        }


@dataclass
class RunView:
    """A run's anomalies (one ranking over every process) and its processes, culprit's first."""

    run_id: str | None
    as_of: float
    trace_files: list[Path]
    anomalies: Anomalies
    processes: list[ProcessView] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The `anomalies --run --json` document: inspect's envelope over the whole run
        plus ``run_id``, ``trace_files`` and ``processes``."""
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "as_of": self.as_of,
            "trace_files": [str(p) for p in self.trace_files],
        }
        for name, rows in self.anomalies.buckets().items():
            out[name] = [r.as_json() for r in rows]
        out["processes"] = [p.as_json() for p in self.processes]
        return out


def run_view(run: RunTrace, now: float | None = None) -> RunView:
    """The run as rows: every process's anomalies, running ranked together (leaf first)."""
    now = time.time() if now is None else now
    per_file = {path: trace.anomalies(now) for path, trace in run.processes.items()}
    running = [row for a in per_file.values() for row in a.running]
    ranked = rank(running, _adopted(run, per_file))
    order = {id(row): i for i, row in enumerate(ranked)}
    processes = []
    for path, trace in run.processes.items():
        a = per_file[path]
        processes.append(
            ProcessView(
                pid=trace.pid,
                parent_pid=trace.parent_pid,
                argv=trace.argv,
                state=trace.state(),
                trace_file=path,
                last_write=trace.last_write,
                running=sorted(a.running, key=lambda r: order[id(r)]),
                counts={
                    "cancelled": len(a.cancelled),
                    "errors": len(a.errors),
                    "timeouts": len(a.timeouts),
                },
            )
        )
    # By file, not by pid: two files may name one pid (a reused pid, a header without one).
    first = {p.trace_file: order[id(p.running[0])] for p in processes if p.running}
    processes.sort(key=lambda p: (first.get(p.trace_file, len(ranked)), _started(run, p)))
    return RunView(
        run_id=run.run_id,
        as_of=now,
        trace_files=list(run.processes),
        anomalies=Anomalies(
            running=ranked,
            cancelled=ended_order(r for a in per_file.values() for r in a.cancelled),
            errors=ended_order(r for a in per_file.values() for r in a.errors),
            timeouts=ended_order(r for a in per_file.values() for r in a.timeouts),
        ),
        processes=processes,
    )


def _started(run: RunTrace, view: ProcessView) -> float:
    trace = run.processes.get(view.trace_file)
    return (trace.started if trace else None) or 0.0


def _adopted(run: RunTrace, per_file: dict[Path, Anomalies]) -> dict[str, str]:
    """Cross-process links: trace id of a child process's outermost open action -> the
    ``Subprocess`` / ``Docker`` action that started that process."""
    links: dict[str, str] = {}
    taken: set[Path] = set()
    for parent_path, a in per_file.items():
        for row in a.running:
            if row.action not in (SUBPROCESS, DOCKER):
                continue
            for path, child in run.processes.items():
                if path == parent_path or path in taken or not per_file[path].running:
                    continue
                if _started_by(row, child):
                    taken.add(path)
                    ids = {r.trace_id for r in per_file[path].running}
                    for r in per_file[path].running:
                        if r.parent_id not in ids:
                            links[r.trace_id] = row.trace_id
                    break
    return links


def _started_by(row: ActionRow, child: ProcessTrace) -> bool:
    """Whether traced process ``child`` is the one the Subprocess action ``row`` started:
    its pid is the action's ``child_pid``, else its header names the action's process as
    parent, it started after the action and its command line matches the detail."""
    if row.child_pid is not None:
        return child.pid == row.child_pid
    if child.parent_pid is None or child.parent_pid != row.pid:
        return False
    if child.started is not None and row.start is not None and child.started + 1.0 < row.start:
        return False
    argv = child.argv
    child_cmd = shlex.join(argv[1:]) if len(argv) > 1 else ""
    return not child_cmd or child_cmd in row.detail or row.detail in child_cmd


def default_run(directory: Path) -> str | None:
    """The run of the newest trace file that has a process header."""
    for info in list_trace_files(directory):
        header = read_header(info.path)
        if header is not None and header.run_id:
            return header.run_id
    return None


def load_run(
    directory: Path, run_id: str | None = None, on_record: OnRecord | None = None
) -> RunTrace:
    """Read every file of ``run_id`` (default: the run of the newest file) in ``directory``
    (``on_record``: see ``ProcessTrace``)."""
    if not directory.is_dir():
        raise TraceReadError(f"no trace directory at {directory}")
    run_id = run_id or default_run(directory)
    if run_id is None:
        raise TraceReadError(f"no trace file with a run id in {directory}")
    run = RunTrace(directory, run_id, on_record=on_record)
    run.refresh()
    if not run.processes:
        raise TraceReadError(f"no trace file of run {run_id} in {directory}")
    return run


def run_of(
    directory: Path,
    run_id: str | None = None,
    path: Path | None = None,
    on_record: OnRecord | None = None,
    *,
    whole_run: bool = True,
) -> RunTrace:
    """The run named ``run_id``, else the run of ``path``: that file whatever its name or
    folder, with the other files of its run in ``directory`` (just it if it has no run id,
    or when ``whole_run`` is off); ``on_record``: see ``ProcessTrace``."""
    if not run_id and path is not None:
        header = read_header(path)
        if header is None:
            open_trace(path).close()  # a file that cannot be read is an error, not "no run"
        if path.parent.resolve() == directory.resolve():
            path = directory / path.name  # the name discovery lists it under: read once
        run_id = header.run_id if header and whole_run else None
        run = RunTrace(directory, run_id, [path], on_record=on_record)
        run.refresh()
        return run
    return load_run(directory, run_id, on_record)
