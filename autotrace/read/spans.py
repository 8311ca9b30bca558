"""Every action of a run (or of one file) as plain data, for pictures and exporters.

``read_spans`` reads the files of a run with the tolerant reader
(``autotrace.reader.iter_records``) and pairs each action's ``enter`` with its end
record. The result, ``RunSpans``, holds the actions in columns (arrays and one table of
interned strings), not a dict per action, so a run of a million actions stays in
bounded memory; ``RunSpans.span(i)`` gives one action as a ``Span`` record. The
culprit is the one ``anomalies`` puts first (``diagnose.rank``), so the picture and
the tables agree.
"""

from __future__ import annotations

import math
import os
import pickle
import shlex
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from autotrace import diagnose
from autotrace.reader import ReadProblems, TraceReadError, iter_records

# Outcome codes, in the order of OUTCOMES (an action's ``outcome`` column holds the index).
OUTCOMES = ("exit", "error", "timeout", "cancel", "running", "abandoned")
EXIT, ERROR, TIMEOUT, CANCEL, RUNNING, ABANDONED = range(len(OUTCOMES))
_END_EVENTS = {"exit": EXIT, "error": ERROR, "timeout": TIMEOUT, "cancel": CANCEL}
NONE = -1  # "no value" in the integer columns (pid, parent, child_pid)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a watchdog stack."""

    file: str
    line: int | None
    function: str
    code: str


@dataclass(frozen=True, slots=True)
class StuckReport:
    """An ``[autotrace] stuck action`` record: when the watchdog saw the action stuck."""

    time: float
    span: int
    where: str


@dataclass(slots=True)
class Process:
    """One traced process of the run, from its file's ``process start`` header."""

    pid: int | None
    parent_pid: int | None
    argv: list[str]
    state: str  # running | exited | dead
    header: dict[str, Any] | None
    trace_file: str
    started: float | None
    last_write: float
    spawned_by: int | None = None  # the span (a Subprocess action) that started it


@dataclass(slots=True)
class Span:
    """One action as a plain record (built on demand from the columns)."""

    index: int
    trace_id: str
    action: str
    detail: str
    start: float
    end: float | None  # None while running
    outcome: str
    pid: int | None
    thread: str
    task: str
    process: int  # index into RunSpans.processes
    parent: int | None  # index of the parent action, when it is in the run
    parent_id: str
    child_pid: int | None
    error: str | None
    stack: list[Frame] = field(default_factory=list)
    where: str = ""


class RunSpans:
    """The actions of a run in columns; strings interned in ``strings``."""

    def __init__(self, run_id: str | None, as_of: float) -> None:
        self.run_id = run_id
        self.as_of = as_of
        self.processes: list[Process] = []
        self.strings: list[str] = [""]
        self._interned: dict[str, int] = {"": 0}
        self.trace_id: list[str] = []
        self.action = array("I")
        self.detail = array("I")
        self.thread = array("I")
        self.task = array("I")
        self.parent_id = array("I")
        self.start = array("d")
        self.end = array("d")  # NaN while running / abandoned
        self.outcome = bytearray()
        self.pid = array("q")
        self.process = array("I")
        self.parent = array("q")
        self.child_pid = array("q")
        self.errors: dict[int, str] = {}
        self.stacks: dict[int, tuple[str, list[Frame]]] = {}  # latest stack per span
        self.stuck: list[StuckReport] = []
        self.culprit: int | None = None
        self.problems = ReadProblems()

    def __len__(self) -> int:
        return len(self.trace_id)

    def intern(self, text: str) -> int:
        index = self._interned.get(text)
        if index is None:
            index = self._interned[text] = len(self.strings)
            self.strings.append(text)
        return index

    def end_of(self, i: int) -> float:
        """Where the action's bar ends: its end, else the time of reading (running) or
        its process's last write (abandoned)."""
        end = self.end[i]
        if not math.isnan(end):
            return end
        if self.outcome[i] == ABANDONED:
            last = self.processes[self.process[i]].last_write
            return max(self.start[i], last or self.as_of)
        return max(self.start[i], self.as_of)

    def span(self, i: int) -> Span:
        """Action ``i`` as a record."""
        s = self.strings
        end = self.end[i]
        where, stack = self.stacks.get(i, ("", []))
        parent, pid, child = self.parent[i], self.pid[i], self.child_pid[i]
        return Span(
            index=i,
            trace_id=self.trace_id[i],
            action=s[self.action[i]],
            detail=s[self.detail[i]],
            start=self.start[i],
            end=None if math.isnan(end) else end,
            outcome=OUTCOMES[self.outcome[i]],
            pid=None if pid == NONE else pid,
            thread=s[self.thread[i]],
            task=s[self.task[i]],
            process=self.process[i],
            parent=None if parent == NONE else parent,
            parent_id=s[self.parent_id[i]],
            child_pid=None if child == NONE else child,
            error=self.errors.get(i),
            stack=stack,
            where=where,
        )

    def __iter__(self) -> Iterator[Span]:
        return map(self.span, range(len(self)))

    def process_tree(self) -> list[tuple[int, int]]:
        """(process, depth): each root by start, each child right under its parent."""
        procs = self.processes
        by_pid = {p.pid: n for n, p in enumerate(procs) if p.pid is not None}
        children: dict[int, list[int]] = {}
        roots = []
        for n, p in enumerate(procs):
            parent = by_pid.get(p.parent_pid) if p.parent_pid is not None else None
            if parent is not None and parent != n:
                children.setdefault(parent, []).append(n)
            else:
                roots.append(n)
        started = [p.started if p.started is not None else math.inf for p in procs]
        order: list[tuple[int, int]] = []
        seen: set[int] = set()

        def visit(n: int, depth: int) -> None:
            if n in seen:
                return
            seen.add(n)
            order.append((n, depth))
            for child in sorted(children.get(n, []), key=lambda c: started[c]):
                visit(child, depth + 1)

        for n in sorted(roots, key=lambda r: started[r]):
            visit(n, 0)
        for n in range(len(procs)):  # a cycle of parent pids (reused pids): still shown
            visit(n, 0)
        return order

    def bounds(self) -> tuple[float, float]:
        """(earliest start, latest end) over every action, or the time of reading."""
        if not len(self):
            return self.as_of, self.as_of
        first = min(self.start)
        last = max(self.end_of(i) for i in range(len(self)))
        return first, max(last, first)


def read_spans(
    directory: Path,
    run_id: str | None = None,
    path: Path | None = None,
    now: float | None = None,
    *,
    whole_run: bool = True,
    workers: int | None = None,
) -> RunSpans:
    """The actions of run ``run_id`` in ``directory`` (default: the run of ``path``, else of
    the newest file; ``path`` alone when its file has no run id or ``whole_run`` is off).

    A large run of several files is read by two processes (``workers``; default: two
    when there are two CPUs), each taking whole files.
    """
    if path is not None and not whole_run and not run_id:
        run = diagnose.RunTrace(directory, None, [path])
        run.refresh()
    else:
        run = _load_run(directory, run_id, path)
    now = time.time() if now is None else now
    ranked = run.rows(now)
    spans = RunSpans(run.run_id, now)
    if run.run_id is None and len(run.processes) == 1:  # one file: the run it belongs to
        header = next(iter(run.processes.values())).header or {}
        spans.run_id = header["run_id"] if isinstance(header.get("run_id"), str) else None
    culprit_key = (ranked[0]["pid"], ranked[0]["trace_id"]) if ranked else None
    files: list[tuple[int, Path]] = []
    for trace in run.processes_ranked(ranked):
        files.append((len(spans.processes), trace.path))
        process = Process(
            pid=trace.pid,
            parent_pid=trace.parent_pid,
            argv=trace.argv,
            state=trace.state(now),
            header=trace.header,
            trace_file=str(trace.path),
            started=trace.started,
            last_write=trace.last_write,
        )
        spans.processes.append(process)
    _read_files(spans, files, culprit_key, workers)
    _link_children(spans)
    _redact(spans)
    return spans


def _redact(spans: RunSpans) -> None:
    """The redaction the writer applies, once more over every text shown (files written
    by other tools, inspect's own details): each distinct string is redacted once."""
    from autotrace.redact import redact_argv, redact_text

    spans.strings[:] = [redact_text(text) for text in spans.strings]
    for process in spans.processes:
        process.argv = redact_argv(process.argv)
    for i, text in spans.errors.items():
        spans.errors[i] = redact_text(text)
    for i, (where, frames) in spans.stacks.items():
        spans.stacks[i] = (
            redact_text(where),
            [Frame(f.file, f.line, f.function, redact_text(f.code)) for f in frames],
        )


PARALLEL_MIN_BYTES = 16 << 20  # below this a second process does not pay for itself


def _read_files(
    spans: RunSpans,
    files: list[tuple[int, Path]],
    culprit_key: tuple[Any, str] | None,
    workers: int | None,
) -> None:
    """Read each process's file into ``spans``; in a large run, a forked child reads
    about half of the bytes (whole files) and sends its actions back to be appended."""
    sizes = {path: _size(path) for _, path in files}
    small = sum(sizes.values()) < PARALLEL_MIN_BYTES
    if workers is None:
        workers = 1 if small else min(2, _cpus())
    if (
        workers < 2
        or len(files) < 2
        or not hasattr(os, "fork")
        or threading.active_count() != 1  # forking is safe only without other threads
    ):
        for proc, path in files:
            _read_process(spans, proc, path, culprit_key)
        return
    mine: list[tuple[int, Path]] = []
    theirs: list[tuple[int, Path]] = []
    load = [0, 0]
    for proc, path in sorted(files, key=lambda f: -sizes[f[1]]):  # largest first
        side = 0 if load[0] <= load[1] else 1
        (mine if side == 0 else theirs).append((proc, path))
        load[side] += sizes[path]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: read its files, send them, leave without clean-up
        code = 0
        try:
            os.close(read_fd)
            part = RunSpans(spans.run_id, spans.as_of)
            part.processes = spans.processes
            for proc, path in theirs:
                _read_process(part, proc, path, culprit_key)
            with os.fdopen(write_fd, "wb") as out:
                pickle.dump(_state(part), out, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_fd)
    try:
        for proc, path in mine:
            _read_process(spans, proc, path, culprit_key)
        with os.fdopen(read_fd, "rb") as pipe:
            payload = pipe.read()
    finally:
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not payload:
        raise TraceReadError("cannot read the run: a reader process failed")
    _append(spans, pickle.loads(payload))


def _state(part: RunSpans) -> tuple[Any, ...]:
    """What a reader process sends back: columns, strings and the sparse extras, as
    plain values (arrays, lists, tuples)."""
    return (
        part.strings,
        part.trace_id,
        [part.action, part.detail, part.thread, part.task, part.parent_id],
        [part.start, part.end, part.pid, part.process, part.child_pid],
        part.outcome,
        part.parent,
        part.errors,
        {
            i: (where, [(f.file, f.line, f.function, f.code) for f in frames])
            for i, (where, frames) in part.stacks.items()
        },
        [(r.time, r.span, r.where) for r in part.stuck],
        part.culprit,
        part.problems,
    )


def _append(spans: RunSpans, state: tuple[Any, ...]) -> None:
    """Append another reader's actions: its string ids and action indices moved to ours."""
    strings, trace_ids, text_columns, plain_columns, outcome, parent, *extras = state
    errors, stacks, stuck, culprit, problems = extras
    base = len(spans)
    ids = [spans.intern(text) for text in strings]
    spans.trace_id.extend(trace_ids)
    ours = (spans.action, spans.detail, spans.thread, spans.task, spans.parent_id)
    for column, theirs in zip(ours, text_columns, strict=True):
        column.extend(map(ids.__getitem__, theirs))
    ours_plain: tuple[Any, ...] = (
        spans.start,
        spans.end,
        spans.pid,
        spans.process,
        spans.child_pid,
    )
    for column, theirs in zip(ours_plain, plain_columns, strict=True):
        column.extend(theirs)
    spans.outcome.extend(outcome)
    spans.parent.extend(p + base if p != NONE else NONE for p in parent)
    spans.errors.update((i + base, text) for i, text in errors.items())
    for i, (where, frames) in stacks.items():
        spans.stacks[i + base] = (where, [Frame(*f) for f in frames])
    spans.stuck.extend(StuckReport(t, i + base, where) for t, i, where in stuck)
    if culprit is not None:
        spans.culprit = culprit + base
    for name in ("blank", "garbage", "invalid", "unknown_event", "torn"):
        setattr(spans.problems, name, getattr(spans.problems, name) + getattr(problems, name))
    spans.problems.first_problem = spans.problems.first_problem or problems.first_problem


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _load_run(directory: Path, run_id: str | None, path: Path | None) -> diagnose.RunTrace:
    if not run_id and path is not None:
        header = diagnose.read_header(path)
        run_id = str(header["run_id"]) if header and header.get("run_id") else None
        if run_id is None:
            run = diagnose.RunTrace(directory, None, [path])
            run.refresh()
            return run
    if not directory.is_dir():
        raise TraceReadError(f"no trace directory at {directory}")
    run_id = run_id or diagnose.default_run(directory)
    if run_id is None:
        raise TraceReadError(f"no trace file with a run id in {directory}")
    run = diagnose.RunTrace(directory, run_id)
    run.refresh()
    if not run.processes:
        raise TraceReadError(f"no trace file of run {run_id} in {directory}")
    return run


def _epoch(timestamp: Any) -> float | None:
    if not isinstance(timestamp, str):
        return None
    try:
        return datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    """A finite number, else None (JSON as Python reads it may hold Infinity and NaN)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _int(value: Any) -> int:
    return value if type(value) is int else NONE


def _frames(stack: Any) -> list[Frame]:
    frames = []
    for entry in stack if isinstance(stack, list) else []:
        if isinstance(entry, dict):
            line = entry.get("line")
            frames.append(
                Frame(
                    str(entry.get("file", "?")),
                    line if type(line) is int else None,
                    str(entry.get("function", "?")),
                    str(entry.get("code") or ""),
                )
            )
    return frames


def _read_process(
    spans: RunSpans, proc: int, path: Path, culprit_key: tuple[Any, str] | None
) -> None:
    """Append the actions of one file; pair ends with enters through the open ones."""
    process = spans.processes[proc]
    open_: dict[str, int] = {}  # trace_id -> span index, while the action is open
    intern = spans.intern
    own_pid = _int(process.pid)
    for rec in iter_records(path, problems=spans.problems):
        get = rec.get
        if "action" not in rec:
            _agent_record(spans, rec, open_)
            continue
        trace_id, event = rec["trace_id"], rec["event"]
        if event == "enter":
            if trace_id in open_:  # re-written when a file is reopened: the same action
                continue
            start = _number(get("start_time"))
            if start is None:
                start = _epoch(get("timestamp")) or 0.0
            i = _new_span(spans, rec, proc, own_pid, start)
            parent = get("parent_id")
            if isinstance(parent, str):
                spans.parent_id[i] = intern(parent)
                spans.parent[i] = open_.get(parent, NONE)
            open_[trace_id] = i
            continue
        duration = _number(get("duration"))
        found = open_.pop(trace_id, None)
        if found is None:  # an end without its enter (the file was rotated or cut)
            stamp = _epoch(get("timestamp")) or 0.0
            found = _new_span(spans, rec, proc, own_pid, stamp - (duration or 0.0))
        i = found
        start = spans.start[i]
        spans.end[i] = (
            start + duration if duration is not None else (_epoch(get("timestamp")) or start)
        )
        spans.outcome[i] = _END_EVENTS[event]
        error = get("error")
        if isinstance(error, str) and error:
            spans.errors[i] = error
        if (child := get("child_pid")) is not None and spans.child_pid[i] == NONE:
            spans.child_pid[i] = _int(child)
    still = RUNNING if process.state == "running" else ABANDONED
    for trace_id, i in open_.items():
        spans.outcome[i] = still
        if culprit_key is not None and culprit_key[1] == trace_id:
            if culprit_key[0] in (process.pid, spans.pid[i]):
                spans.culprit = i


def _new_span(spans: RunSpans, rec: dict[str, Any], proc: int, own_pid: int, start: float) -> int:
    get, intern = rec.get, spans.intern
    i = len(spans.trace_id)
    spans.trace_id.append(rec["trace_id"])
    spans.action.append(intern(rec["action"]))
    spans.detail.append(intern(get("detail") or ""))
    thread, task = get("thread"), get("task")
    spans.thread.append(intern(thread) if isinstance(thread, str) else 0)
    spans.task.append(intern(task) if isinstance(task, str) else 0)
    spans.parent_id.append(0)
    spans.start.append(start)
    spans.end.append(math.nan)
    spans.outcome.append(RUNNING)
    pid = _int(get("pid"))
    spans.pid.append(pid if pid != NONE else own_pid)
    spans.process.append(proc)
    spans.parent.append(NONE)
    spans.child_pid.append(_int(get("child_pid")))
    return i


def _agent_record(spans: RunSpans, rec: dict[str, Any], open_: dict[str, int]) -> None:
    """A watchdog record: the latest stack of an open action, and a stuck report."""
    kind = rec.get("event_kind")
    if kind == "stack":
        entries = [rec]
    elif kind == "snapshot" and isinstance(rec.get("actions"), list):
        entries = rec["actions"]
    else:
        return
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        i = open_.get(entry.get("trace_id"))  # type: ignore[arg-type]
        if i is None:
            continue
        where = str(entry.get("where") or "")
        spans.stacks[i] = (where, _frames(entry.get("stack")))
        if kind == "stack":
            stamp = _epoch(rec.get("timestamp")) or spans.start[i]
            spans.stuck.append(StuckReport(stamp, i, where))


def _link_children(spans: RunSpans) -> None:
    """Each child process's ``spawned_by``: the Subprocess action of its parent process
    that started it (by ``child_pid``, else by its command line and start time)."""
    by_pid: dict[int, int] = {p.pid: n for n, p in enumerate(spans.processes) if p.pid is not None}
    spawners: dict[int, list[int]] = {}
    for i in range(len(spans)):
        child = spans.child_pid[i]
        if child != NONE and child in by_pid and spans.processes[by_pid[child]].spawned_by is None:
            spans.processes[by_pid[child]].spawned_by = i
        if spans.strings[spans.action[i]] in ("Subprocess", "Docker"):
            spawners.setdefault(spans.process[i], []).append(i)
    for process in spans.processes:
        if process.spawned_by is not None or process.parent_pid not in by_pid:
            continue
        command = shlex.join(process.argv[1:]) if len(process.argv) > 1 else ""
        best: int | None = None
        for i in spawners.get(by_pid[process.parent_pid], []):  # type: ignore[index]
            if process.started is not None and spans.start[i] > process.started + 1.0:
                continue
            detail = spans.strings[spans.detail[i]]
            if command and command not in detail and detail not in command:
                continue
            if best is None or spans.start[i] > spans.start[best]:
                best = i  # the latest matching spawn before the child started
        process.spawned_by = best
