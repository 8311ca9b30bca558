"""The one row model of every view, and the one culprit ranking (leaf first).

``ActionRow`` is an action as `anomalies`, `anomalies --run`, `--watch`, `--json` and
`stacks` show it; ``Frame`` is one stack frame, kept as data. ``rank`` orders running
rows culprit first: the deepest running action of each chain (one with no running
child), oldest first, then the ancestors that wait on them; each row carries its
``chain`` of running ancestors (trace ids, outermost first).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autotrace.read.reader import Record, TraceReader
from autotrace.records import DOCKER, DOCKER_PROGRAMS, SUBPROCESS

RUNNING = "running"


@dataclass(frozen=True, slots=True)
class Frame:
    """One stack frame as the watchdog wrote it."""

    file: str
    line: int | None
    function: str
    code: str = ""

    def location(self) -> str:
        """``file:line in function`` (the watchdog's ``where`` format)."""
        return f"{self.file}:{self.line} in {self.function}"

    def as_json(self) -> dict[str, Any]:
        """The frame as the watchdog writes it."""
        return {"file": self.file, "line": self.line, "function": self.function, "code": self.code}


def frames_of(stack: Any) -> tuple[Frame, ...]:
    """A stack as written (a list of {file, line, function, code}) as frames; entries of
    another shape are left out."""
    if not isinstance(stack, list):
        return ()
    out = []
    for entry in stack:
        if isinstance(entry, dict):
            line = entry.get("line")
            out.append(
                Frame(
                    file=str(entry.get("file", "?")),
                    line=line if type(line) is int else None,
                    function=str(entry.get("function", "?")),
                    code=str(entry.get("code") or ""),
                )
            )
    return tuple(out)


def blamed_index(frames: tuple[Frame, ...], where: str) -> int | None:
    """The index of the frame ``where`` names (the watchdog's choice, written in
    ``Frame.location`` form), innermost match first; None when none does."""
    if not where:
        return None
    for i in range(len(frames) - 1, -1, -1):
        if frames[i].location() == where:
            return i
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def shown_action(action: str, detail: str) -> str:
    """The name our views show: a ``Subprocess`` that runs the docker CLI is ``Docker``
    (inspect names its own docker calls ``Subprocess``; the record stays as written)."""
    if action != SUBPROCESS or not any(program in detail for program in DOCKER_PROGRAMS):
        return action
    try:
        first = shlex.split(detail)[:1]
    except ValueError:
        first = detail.split()[:1]
    if first and os.path.basename(first[0]) in DOCKER_PROGRAMS:
        return DOCKER
    return action


@dataclass(slots=True)
class ActionRow:
    """One action as every view shows it (running, or ended as cancel / error / timeout).

    ``duration`` is the recorded duration of an ended action, or the age of a running
    one as of reading (up to its file's last write when its process died: ``abandoned``).
    ``frames`` is the latest stack the watchdog wrote for it, outermost first, and
    ``blamed`` the index of the frame it waits at (``where``). ``chain`` holds the trace
    ids of its running ancestors, outermost first; ``leaf`` is False when a running
    action waits on it (a child action, or a traced child process).
    """

    trace_id: str
    action: str
    detail: str
    outcome: str  # "running", "cancel", "error" or "timeout"
    start: float | None
    duration: float
    pid: int | None = None
    thread: str | None = None
    task: str | None = None
    parent_id: str | None = None
    child_pid: int | None = None
    abandoned: bool = False
    frames: tuple[Frame, ...] = ()
    blamed: int | None = None
    where: str = ""
    error: str | None = None
    error_type: str | None = None
    chain: tuple[str, ...] = ()
    leaf: bool = True
    # Who waits for it, when its work was handed to another thread or event loop: that
    # thread's latest frames and the program's line among them (the watchdog's choice).
    caller_frames: tuple[Frame, ...] = ()
    caller_where: str = ""
    caller_thread: str | None = None

    @property
    def ended_at(self) -> float:
        """When it ended (running: as of reading); inspect sorts ended buckets by it."""
        return (self.start or 0.0) + self.duration

    def as_json(self) -> dict[str, Any]:
        """The JSON row of `anomalies --json` (and `--run`): inspect's keys, then ours."""
        row: dict[str, Any] = {
            "action": self.action,
            "detail": self.detail,
            "start_time": self.start,
            "duration": self.duration,
        }
        if self.error is not None:
            row["error"] = self.error
            row["error_type"] = self.error_type
        row.update(
            trace_id=self.trace_id,
            pid=self.pid,
            parent_id=self.parent_id,
            thread=self.thread,
            task=self.task,
            child_pid=self.child_pid,
            abandoned=self.abandoned,
            chain=list(self.chain),
            waits_on_other=not self.leaf,
            stack=[f.as_json() for f in self.frames],
            where=self.where,
        )
        if self.caller_where:
            row["caller_stack"] = [f.as_json() for f in self.caller_frames]
            row["caller_where"] = self.caller_where
            row["caller_thread"] = self.caller_thread
        return row


def row_of(
    record: Record,
    *,
    as_of: float,
    pid: int | None = None,
    stack: Mapping[str, Any] | None = None,
    start: float | None = None,
    abandoned: bool = False,
    parent_id: str | None = None,
) -> ActionRow:
    """An ``ActionRow`` from a decoded action record (``autotrace.read.reader.Record``).

    A running action's duration is its age as of ``as_of``; ``pid`` stands in for a
    record without one (inspect's native records: the file's process); ``start`` is the
    enter's start time of an end record; ``stack`` the watchdog's latest entry for it;
    ``parent_id`` the parent the agent recorded for an action inspect traced itself.
    """
    # An action record, checked by the reader: action, event and trace_id are strings.
    action, event, trace_id = str(record.action), str(record.event), str(record.trace_id)
    detail = record.detail if isinstance(record.detail, str) else ""
    if event == "enter":
        outcome = RUNNING
        start = record.start_time
        duration = max(0.0, as_of - start) if start is not None else 0.0
    else:
        outcome = event
        duration = record.duration if record.duration is not None else 0.0
    frames = frames_of(stack.get("stack")) if stack else ()
    where = _text(stack.get("where")) if stack else ""
    caller = _caller(stack)
    return ActionRow(
        trace_id=trace_id,
        action=shown_action(action, detail),
        detail=detail or record.message,
        outcome=outcome,
        start=start,
        duration=duration,
        pid=record.pid if record.pid is not None else pid,
        thread=record.thread,
        task=record.task,
        parent_id=record.parent_id if record.parent_id is not None else parent_id,
        child_pid=record.child_pid,
        abandoned=abandoned,
        frames=frames,
        blamed=blamed_index(frames, where),
        where=where,
        error=record.error if outcome == "error" else None,
        error_type=record.error_type if outcome == "error" else None,
        caller_frames=caller[0],
        caller_where=caller[1],
        caller_thread=caller[2],
    )


def _caller(entry: Mapping[str, Any] | None) -> tuple[tuple[Frame, ...], str, str | None]:
    """(frames, where, thread) of the caller a stack entry names, or empty."""
    if not entry or not _text(entry.get("caller_where")):
        return (), "", None
    thread = entry.get("caller_thread")
    return (
        frames_of(entry.get("caller_stack")),
        _text(entry.get("caller_where")),
        thread if isinstance(thread, str) else None,
    )


def snapshot_rows(snapshot: Mapping[str, Any]) -> list[ActionRow]:
    """The open actions of a live process's snapshot (``inspect-trace stacks``) as rows."""
    rows = []
    actions = snapshot.get("actions")
    for entry in actions if isinstance(actions, list) else ():  # a hostile peer: anything
        if not isinstance(entry, dict):
            continue
        frames = frames_of(entry.get("stack"))
        where = _text(entry.get("where"))
        age = entry.get("age")
        start = entry.get("start_time")
        action, detail = str(entry.get("stuck_action") or ""), str(entry.get("detail") or "")
        rows.append(
            ActionRow(
                trace_id=str(entry.get("trace_id") or ""),
                action=shown_action(action, detail),
                detail=detail,
                outcome=RUNNING,
                start=float(start) if isinstance(start, (int, float)) else None,
                duration=float(age) if isinstance(age, (int, float)) else 0.0,
                pid=snapshot.get("pid") if isinstance(snapshot.get("pid"), int) else None,
                thread=entry.get("thread") if isinstance(entry.get("thread"), str) else None,
                task=entry.get("task") if isinstance(entry.get("task"), str) else None,
                parent_id=entry.get("parent_id")
                if isinstance(entry.get("parent_id"), str)
                else None,
                frames=frames,
                blamed=blamed_index(frames, where),
                where=where,
                caller_frames=_caller(entry)[0],
                caller_where=_caller(entry)[1],
                caller_thread=_caller(entry)[2],
            )
        )
    return rank(rows)


def rank(rows: Iterable[ActionRow], adopted: Mapping[str, str] | None = None) -> list[ActionRow]:
    """Running rows culprit first, leaf first; sets each row's ``chain`` and ``leaf``.

    A row's parent is the running row its ``parent_id`` names, else the one ``adopted``
    gives (trace id -> parent trace id: a traced child process's outermost actions
    adopted by the ``Subprocess`` that started it). Leaves (no running child) come
    first, oldest first: the deepest running action of each chain is the culprit. The
    ancestors follow, innermost (newest) first.
    """
    rows = list(rows)
    by_id = {r.trace_id: r for r in rows}
    parent: dict[str, str] = {}
    for r in rows:
        p = r.parent_id
        if p is not None and p != r.trace_id and p in by_id:
            parent[r.trace_id] = p
    for child, p in (adopted or {}).items():
        if child in by_id and p in by_id and child not in parent and child != p:
            parent[child] = p
    waited_on = set(parent.values())
    for r in rows:
        chain: list[str] = []
        seen = {r.trace_id}
        p = parent.get(r.trace_id)
        while p is not None and p not in seen:  # a cycle of bad ids ends the walk
            chain.append(p)
            seen.add(p)
            p = parent.get(p)
        chain.reverse()
        r.chain = tuple(chain)
        r.leaf = r.trace_id not in waited_on
    return sorted(rows, key=lambda r: (not r.leaf, -r.duration if r.leaf else r.duration))


def ended_order(rows: Iterable[ActionRow]) -> list[ActionRow]:
    """inspect's order for ended buckets: most recently ended first."""
    return sorted(rows, key=lambda r: r.ended_at, reverse=True)


@dataclass
class Anomalies:
    """The four buckets of `anomalies`: running culprit first, the others as inspect sorts them."""

    running: list[ActionRow] = field(default_factory=list)
    cancelled: list[ActionRow] = field(default_factory=list)
    errors: list[ActionRow] = field(default_factory=list)
    timeouts: list[ActionRow] = field(default_factory=list)

    def buckets(self) -> dict[str, list[ActionRow]]:
        """The buckets by their `--json` names, in inspect's order."""
        return {
            "running": self.running,
            "cancelled": self.cancelled,
            "errors": self.errors,
            "timeouts": self.timeouts,
        }

    def count(self) -> int:
        """How many rows the four buckets hold."""
        return len(self.running) + len(self.cancelled) + len(self.errors) + len(self.timeouts)


def anomalies_of(
    reader: TraceReader,
    *,
    as_of: float,
    pid: int | None = None,
    until: float | None = None,
    rank_running: bool = True,
) -> Anomalies:
    """The anomalies of what a ``TraceReader`` has read so far.

    ``pid`` is the file's process (for records without one); ``until`` (a dead
    process's last write) ends the age of its running actions, which are then
    ``abandoned``. ``rank_running=False`` leaves the ranking to a caller that ranks the
    rows of several files together (the run view).
    """
    abandoned = until is not None
    age_as_of = until if until is not None else as_of
    running = [
        row_of(
            rec,
            as_of=age_as_of,
            pid=pid,
            stack=reader.stacks.get(tid),
            abandoned=abandoned,
            parent_id=reader.parents.get(tid),
        )
        for tid, rec in reader.running.items()
    ]
    buckets: dict[str, list[ActionRow]] = {}
    for name, ended in reader.ended.items():
        buckets[name] = ended_order(
            row_of(
                end,
                as_of=as_of,
                pid=pid,
                start=enter.start_time if enter is not None else None,
            )
            for end, enter in ended.values()
        )
    return Anomalies(
        running=rank(running) if rank_running else running,
        cancelled=buckets["cancel"],
        errors=buckets["error"],
        timeouts=buckets["timeout"],
    )
