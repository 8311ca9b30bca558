"""Every action as a span: each ``enter`` paired with its end record, as plain data.

``Span`` is the one span model of the pictures and the exporters: the timeline page,
the Perfetto export (through ``RunSpans``) and the OTLP exporter
(``autotrace.export.spans``) all see an action as a ``Span``, built by one
``SpanBuilder`` from the records the reader (``TraceReader``'s ``on_record``) hands
over, in file order, as they are read. A builder pairs the records of one file and
tells its ``SpanSink`` when an action opens, ends, or gets a watchdog stack.

``read_spans`` reads a whole run (``RunTrace``, every file once) into ``RunSpans``: the
actions in columns (arrays and one table of interned strings), not an object per
action, so a run of a million actions stays in bounded memory; ``RunSpans.span(i)``
gives one action back as a ``Span``. The culprit is the one ``anomalies --run`` puts
first (``run_view``: the same ranking, over the same reading), so the picture and the
tables agree.
"""

from __future__ import annotations

import math
import shlex
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from msgspec import UNSET

from autotrace.read.files import epoch
from autotrace.read.model import Frame, frames_of
from autotrace.read.reader import EXTRAS, ReadProblems, Record
from autotrace.read.run import ProcessTrace, run_of, run_view
from autotrace.records import DOCKER, ENTER, MESSAGE_PREFIX, SOURCE, SUBPROCESS
from autotrace.redact import redact_argv, redact_text

# Outcome codes, in the order of OUTCOMES (RunSpans' ``outcome`` column holds the index).
OUTCOMES = ("exit", "error", "timeout", "cancel", "running", "abandoned")
EXIT, ERROR, TIMEOUT, CANCEL, RUNNING, ABANDONED = range(len(OUTCOMES))
_CODE = {name: code for code, name in enumerate(OUTCOMES)}
NONE = -1  # "no value" in the integer columns (pid, parent, child_pid)


@dataclass(slots=True)
class Span:
    """One action: its ``enter`` paired with its end record (``end`` None while open).

    ``start`` is the enter's ``start_time`` (else its timestamp); ``end`` is the start
    plus the end record's ``duration`` (else its timestamp). An end whose enter was
    never read (rotated away, or before a resumed offset) starts ``duration`` before its
    timestamp. ``frames`` / ``where`` are the watchdog's latest stack for it, written at
    ``stack_time``. ``index``, ``process`` and ``parent`` are positions in a
    ``RunSpans`` (-1 / None outside one); ``extra`` holds the patches' extras
    (``returncode``, ...), enter's and end's together.
    """

    trace_id: str
    action: str
    detail: str
    start: float
    end: float | None = None
    outcome: str = "running"
    pid: int | None = None
    thread: str = ""
    task: str = ""
    parent_id: str | None = None
    child_pid: int | None = None
    source: str | None = None  # "autotrace" on the agent's records, None on inspect's own
    error: str | None = None
    error_type: str | None = None
    stacktrace: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    frames: tuple[Frame, ...] = ()
    where: str = ""
    stack_time: float | None = None
    index: int = -1
    process: int = -1
    parent: int | None = None

    @property
    def native(self) -> bool:
        """Whether inspect wrote the action itself (its text was not redacted by us)."""
        return self.source != SOURCE


class SpanSink(Protocol):
    """What a ``SpanBuilder`` tells about one file's actions, as it reads them."""

    def opened(self, span: Span) -> None:
        """An action's ``enter`` was read (it is in ``builder.open`` from now on)."""

    def ended(self, span: Span) -> None:
        """An action's end was read (``span.index`` -1: its enter never was)."""

    def stacked(self, span: Span, stuck: bool) -> None:
        """The watchdog wrote an open action's stack (``stuck``: a stuck report, not a
        snapshot ``inspect-trace stacks`` asked for)."""


def _number(value: float | None) -> float | None:
    # The reader lets only finite times within +-1e15 through; a NaN is still not a time.
    return value if value is not None and value == value else None


def _extras(record: Record) -> dict[str, Any]:
    """The extras a record carries (most carry none: checked first, at little cost)."""
    if (
        record.child_pid is None
        and record.returncode is None
        and record.ended_by is None
        and record.closed_by is None
        and record.bytes is None
        and record.stream is None
    ):
        return {}
    return {key: value for key in EXTRAS if (value := getattr(record, key)) is not None}


class SpanBuilder:
    """Pairs the action records of one file into ``Span`` s, record by record.

    ``add`` takes every valid record in file order (a ``TraceReader``'s ``on_record``
    hook); ``pid`` is the file's process, for records that name none (inspect's own).
    An ``enter`` written again for an open action (a file reopened) is the same action.
    With ``max_open``, the oldest open actions beyond it are forgotten (``forgotten``).
    """

    def __init__(self, sink: SpanSink, pid: int | None = None, max_open: int | None = None):
        self.sink = sink
        self.pid = pid
        self.max_open = max_open
        self.open: dict[str, Span] = {}  # trace_id -> span, in order of entry
        self.forgotten = 0

    def add(self, record: Record) -> None:
        """Read one record."""
        if record.action is UNSET:
            if record.event_kind is not None and record.message.startswith(MESSAGE_PREFIX):
                self._agent_record(record)
            return
        trace_id: str = record.trace_id  # type: ignore[assignment]  # checked by the reader
        if record.event == ENTER:
            if trace_id in self.open:
                return
            start = _number(record.start_time)
            if start is None:
                start = epoch(record.timestamp) or 0.0
            span = self._span(record, start)
            self.sink.opened(span)
            self.open[trace_id] = span
            if self.max_open is not None and len(self.open) > self.max_open:
                del self.open[next(iter(self.open))]
                self.forgotten += 1
            return
        duration = _number(record.duration)
        opened = self.open.pop(trace_id, None)
        if opened is None:
            stamp = epoch(record.timestamp) or 0.0
            span = self._span(record, stamp - (duration or 0.0))
        else:
            span = opened
            if span.parent_id is None and record.parent_id is not None:
                span.parent_id = record.parent_id
            if span.child_pid is None and record.child_pid is not None:
                span.child_pid = record.child_pid
            span.extra.update(_extras(record))
        span.end = (
            span.start + duration
            if duration is not None
            else (epoch(record.timestamp) or span.start)
        )
        span.outcome = str(record.event)
        if record.error is not None:
            span.error = record.error
            span.error_type = record.error_type
            span.stacktrace = record.stacktrace
        self.sink.ended(span)

    def _span(self, record: Record, start: float) -> Span:
        detail = record.detail
        return Span(
            trace_id=record.trace_id,  # type: ignore[arg-type]
            action=record.action,  # type: ignore[arg-type]
            detail=detail if isinstance(detail, str) else "",
            start=start,
            pid=record.pid if record.pid is not None else self.pid,
            thread=record.thread or "",
            task=record.task or "",
            parent_id=record.parent_id,
            child_pid=record.child_pid,
            source=record.source,
            extra=_extras(record),
        )

    def _agent_record(self, record: Record) -> None:
        """A watchdog record: the latest stack of each open action it names."""
        kind = record.event_kind
        if kind == "stack":
            entries: Any = [
                {"trace_id": record.trace_id, "stack": record.stack, "where": record.where}
            ]
        elif kind == "snapshot":
            entries = record.actions
        else:
            return
        at = epoch(record.timestamp)
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, dict):
                continue
            span = self.open.get(entry.get("trace_id"))  # type: ignore[arg-type]
            if span is None:
                continue
            where = entry.get("where")
            span.frames = frames_of(entry.get("stack"))
            span.where = where if isinstance(where, str) else ""
            span.stack_time = at if at is not None else span.start
            self.sink.stacked(span, kind == "stack")


# -- a whole run in columns (the timeline and the Perfetto export) -----------------


@dataclass(frozen=True, slots=True)
class StuckReport:
    """An ``[autotrace] stuck action`` record: when the watchdog saw the action stuck."""

    time: float
    span: int
    where: str


@dataclass(slots=True)
class Process:
    """One traced process of the run, from its file's header and reading."""

    pid: int | None
    parent_pid: int | None
    argv: list[str]
    state: str  # running | exited | dead
    trace_file: str
    started: float | None
    last_write: float
    spawned_by: int | None = None  # the span (a Subprocess action) that started it


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
        self.stacks: dict[int, tuple[str, tuple[Frame, ...]]] = {}  # latest stack per span
        self.stuck: list[StuckReport] = []
        self.culprit: int | None = None
        self.problems = ReadProblems()

    def __len__(self) -> int:
        return len(self.trace_id)

    def intern(self, text: str) -> int:
        """The index of ``text`` in ``strings`` (added when new)."""
        index = self._interned.get(text)
        if index is None:
            index = self._interned[text] = len(self.strings)
            self.strings.append(text)
        return index

    def append(self, span: Span, process: int, parent: int) -> int:
        """Add ``span`` (of process ``process``, child of action ``parent`` or NONE)."""
        intern = self.intern
        i = len(self.trace_id)
        self.trace_id.append(span.trace_id)
        self.action.append(intern(span.action))
        self.detail.append(intern(span.detail))
        self.thread.append(intern(span.thread))
        self.task.append(intern(span.task))
        self.parent_id.append(intern(span.parent_id) if span.parent_id is not None else 0)
        self.start.append(span.start)
        self.end.append(math.nan if span.end is None else span.end)
        self.outcome.append(_CODE[span.outcome])
        self.pid.append(NONE if span.pid is None else span.pid)
        self.process.append(process)
        self.parent.append(parent)
        self.child_pid.append(NONE if span.child_pid is None else span.child_pid)
        return i

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
        """Action ``i`` as a ``Span``."""
        s = self.strings
        end = self.end[i]
        where, frames = self.stacks.get(i, ("", ()))
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
            parent_id=s[self.parent_id[i]] or None,
            child_pid=None if child == NONE else child,
            error=self.errors.get(i),
            frames=frames,
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


class _ProcessColumns:
    """The ``SpanSink`` of one file: appends its actions to the run's columns."""

    def __init__(self, spans: RunSpans, process: int, trace: ProcessTrace) -> None:
        self.spans = spans
        self.process = process
        self.trace = trace
        self.builder = SpanBuilder(self, trace.pid)

    def opened(self, span: Span) -> None:
        parent = self.builder.open.get(span.parent_id) if span.parent_id else None  # type: ignore[arg-type]
        span.index = self.spans.append(span, self.process, parent.index if parent else NONE)

    def ended(self, span: Span) -> None:
        spans = self.spans
        if span.index < 0:  # an end without its enter
            span.index = spans.append(span, self.process, NONE)
            i = span.index
        else:
            i = span.index
            spans.end[i] = span.end  # type: ignore[assignment]
            spans.outcome[i] = _CODE[span.outcome]
            if span.parent_id is not None and not spans.parent_id[i]:
                spans.parent_id[i] = spans.intern(span.parent_id)
            if span.child_pid is not None and spans.child_pid[i] == NONE:
                spans.child_pid[i] = span.child_pid
        if span.error:
            spans.errors[i] = span.error

    def stacked(self, span: Span, stuck: bool) -> None:
        self.spans.stacks[span.index] = (span.where, span.frames)
        if stuck:
            at = span.stack_time if span.stack_time is not None else span.start
            self.spans.stuck.append(StuckReport(at, span.index, span.where))


def read_spans(
    directory: Path,
    run_id: str | None = None,
    path: Path | None = None,
    now: float | None = None,
    *,
    whole_run: bool = True,
) -> RunSpans:
    """The actions of run ``run_id`` in ``directory`` (default: the run of ``path``, else of
    the newest file; ``path`` alone when its file has no run id or ``whole_run`` is off).

    Every file is read once, by the reader ``anomalies --run`` uses: its records become
    spans as they are read, and the same reading gives the ranking of the culprit.
    ``TraceReadError`` when there is nothing to read.
    """
    now = time.time() if now is None else now
    spans = RunSpans(None, now)
    columns: dict[Path, _ProcessColumns] = {}

    def on_record(trace: ProcessTrace, record: Record) -> None:
        sink = columns.get(trace.path)
        if sink is None:
            sink = columns[trace.path] = _ProcessColumns(spans, len(columns), trace)
        sink.builder.add(record)

    run = run_of(directory, run_id, path, on_record, whole_run=whole_run)
    spans.run_id = run.run_id
    if spans.run_id is None and len(run.processes) == 1:  # one file: the run it belongs to
        header = next(iter(run.processes.values())).header
        spans.run_id = header.run_id if header is not None else None
    for trace in run.processes.values():  # files without a record still have a lane
        if trace.path not in columns:
            columns[trace.path] = _ProcessColumns(spans, len(columns), trace)
    view = run_view(run, now)
    culprit = view.anomalies.running[0] if view.anomalies.running else None
    for sink in columns.values():  # in the order of their process index
        trace = sink.trace
        state = trace.state()
        spans.processes.append(
            Process(
                pid=trace.pid,
                parent_pid=trace.parent_pid,
                argv=trace.argv,
                state=state,
                trace_file=str(trace.path),
                started=trace.started,
                last_write=trace.last_write,
            )
        )
        still = RUNNING if state == "running" else ABANDONED
        for span in sink.builder.open.values():
            spans.outcome[span.index] = still
            if (
                culprit is not None
                and culprit.trace_id == span.trace_id
                and culprit.pid in (trace.pid, span.pid)
            ):
                spans.culprit = span.index
        spans.problems = _merged(spans.problems, trace.reader.problems)
    _link_children(spans)
    _redact(spans)
    return spans


def _merged(total: ReadProblems, more: ReadProblems) -> ReadProblems:
    for name in ("blank", "garbage", "invalid", "unknown_event", "torn"):
        setattr(total, name, getattr(total, name) + getattr(more, name))
    total.first_problem = total.first_problem or more.first_problem
    return total


def _redact(spans: RunSpans) -> None:
    """The redaction the writer applies, once more over every text shown (files written
    by other tools, inspect's own details): each distinct string is redacted once."""
    spans.strings[:] = [redact_text(text) for text in spans.strings]
    for process in spans.processes:
        process.argv = redact_argv(process.argv)
    for i, text in spans.errors.items():
        spans.errors[i] = redact_text(text)
    for i, (where, frames) in spans.stacks.items():
        spans.stacks[i] = (
            redact_text(where),
            tuple(Frame(f.file, f.line, f.function, redact_text(f.code)) for f in frames),
        )


def _link_children(spans: RunSpans) -> None:
    """Each child process's ``spawned_by``: the Subprocess action of its parent process
    that started it (by ``child_pid``, else by its command line and start time)."""
    by_pid: dict[int, int] = {p.pid: n for n, p in enumerate(spans.processes) if p.pid is not None}
    spawners: dict[int, list[int]] = {}
    for i in range(len(spans)):
        child = spans.child_pid[i]
        if child != NONE and child in by_pid and spans.processes[by_pid[child]].spawned_by is None:
            spans.processes[by_pid[child]].spawned_by = i
        if spans.strings[spans.action[i]] in (SUBPROCESS, DOCKER):
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
