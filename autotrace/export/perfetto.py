"""A run as Chrome Trace Event JSON, the format Perfetto and ``chrome://tracing`` open.

The fields used (Trace Event Format; times in microseconds since the epoch):

- ``{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}``: the object form.
- ``ph: "M"`` metadata: ``process_name`` / ``thread_name`` (``args.name``),
  ``process_sort_index`` / ``thread_sort_index`` (``args.sort_index``), ``process_labels``.
- ``ph: "X"`` complete slice: ``name`` (the action), ``cat`` (its outcome), ``ts``,
  ``dur``, ``pid``, ``tid``, ``args`` (detail, outcome, trace_id, parent_id, error, where).
  A still-open action is a slice up to the time of reading with ``args.running: true``
  (``args.outcome`` ``running`` or ``abandoned``).
- ``ph: "i"`` instant, ``s: "t"`` (thread scope): a watchdog stuck report, ``args.where``.
- Flow (the v2 form, on ``X`` events): the ``Subprocess`` slice that started a traced
  child process has ``bind_id`` and ``flow_out: true``; the child's first top-level
  slice has the same ``bind_id`` and ``flow_in: true``, so the viewer draws an arrow
  from one process to the other.

Perfetto reads ``process_name`` and ``thread_name`` and ignores the sort indexes and
labels, which ``chrome://tracing`` uses.

Perfetto accepts only slices that nest perfectly on one track, so each (thread, task)
of a process is a track, and an action that would overlap another without nesting goes
to the next track of the same name (``MainThread (2)``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

from autotrace.read.spans import ABANDONED, OUTCOMES, RUNNING, RunSpans, read_spans

US = 1_000_000.0
FIELDS = {
    "M": {"name", "ph", "pid", "tid", "args"},
    "X": {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"},
    "i": {"name", "cat", "ph", "ts", "s", "pid", "tid", "args"},
}
FLOW_FIELDS = {"bind_id", "flow_in", "flow_out"}  # on some X events


def _flows(spans: RunSpans) -> dict[int, tuple[int, bool]]:
    """action -> (flow id, True for the flow's start): each traced child process's first
    top-level action linked to the Subprocess action that started it. An action gets
    one role: a child's first action that starts a grandchild keeps its incoming flow."""
    flows: dict[int, tuple[int, bool]] = {}
    first: dict[int, int] = {}  # process -> its earliest top-level action
    for i in range(len(spans)):
        if spans.parent[i] < 0:
            proc = spans.process[i]
            if proc not in first or spans.start[i] < spans.start[first[proc]]:
                first[proc] = i
    for n, process in enumerate(spans.processes):
        source, target = process.spawned_by, first.get(n)
        if source is None or target is None or source in flows or target in flows:
            continue
        flow_id = len(flows) // 2 + 1
        flows[target] = (flow_id, False)
        flows[source] = (flow_id, True)
    return flows


def _us(t: float) -> float:
    return round(t * US, 3)


def _tracks(spans: RunSpans) -> tuple[list[int], dict[tuple[int, int], str]]:
    """Each action's tid (per process), and each (process, tid)'s thread name."""
    tids = [0] * len(spans)
    names: dict[tuple[int, int], str] = {}
    # (process, thread, task) -> the open-slice stacks of its tracks, each with its tid
    lanes: dict[tuple[int, int, int], list[tuple[int, list[float]]]] = {}
    next_tid: dict[int, int] = {}
    order = sorted(range(len(spans)), key=lambda i: (spans.start[i], -spans.end_of(i)))
    for i in order:
        proc = spans.process[i]
        key = (proc, spans.thread[i], spans.task[i])
        start, end = spans.start[i], spans.end_of(i)
        tracks = lanes.setdefault(key, [])
        for tid, stack in tracks:
            while stack and stack[-1] <= start:
                stack.pop()
            if not stack or end <= stack[-1]:  # nests in what is open there, or free
                stack.append(end)
                tids[i] = tid
                break
        else:
            tid = next_tid.get(proc, 1)
            next_tid[proc] = tid + 1
            tracks.append((tid, [end]))
            thread = spans.strings[spans.thread[i]] or "thread"
            task = spans.strings[spans.task[i]]
            name = f"{thread} / {task}" if task else thread
            names[(proc, tid)] = name if len(tracks) == 1 else f"{name} ({len(tracks)})"
            tids[i] = tid
    return tids, names


def trace_events(spans: RunSpans) -> Iterator[dict[str, Any]]:
    """The run's events: metadata first, then slices and stuck reports."""
    tids, names = _tracks(spans)
    flows = _flows(spans)
    pids = [p.pid if p.pid is not None else 1_000_000 + n for n, p in enumerate(spans.processes)]
    for sort_index, (n, _) in enumerate(spans.process_tree()):
        process, pid = spans.processes[n], pids[n]
        command = " ".join(process.argv) or process.trace_file
        meta = {"ph": "M", "pid": pid, "tid": 0}
        yield {**meta, "name": "process_name", "args": {"name": f"{command} (pid {pid})"}}
        yield {**meta, "name": "process_sort_index", "args": {"sort_index": sort_index}}
        labels = [f"state: {process.state}"]
        if process.parent_pid is not None:
            labels.append(f"parent pid {process.parent_pid}")
        yield {**meta, "name": "process_labels", "args": {"labels": ", ".join(labels)}}
    for (proc, tid), name in sorted(names.items()):
        meta = {"ph": "M", "pid": pids[proc], "tid": tid}
        yield {**meta, "name": "thread_name", "args": {"name": name}}
        yield {**meta, "name": "thread_sort_index", "args": {"sort_index": tid}}
    s = spans.strings
    for i in range(len(spans)):
        outcome = spans.outcome[i]
        start = spans.start[i]
        args: dict[str, Any] = {
            "detail": s[spans.detail[i]],
            "outcome": OUTCOMES[outcome],
            "trace_id": spans.trace_id[i],
        }
        if spans.parent_id[i]:
            args["parent_id"] = s[spans.parent_id[i]]
        if outcome in (RUNNING, ABANDONED):
            args["running"] = True
        if i in spans.errors:
            args["error"] = spans.errors[i]
        if i in spans.stacks:
            where, frames = spans.stacks[i]
            args["where"] = where
            args["stack"] = [f.location() for f in frames]
        if i == spans.culprit:
            args["culprit"] = True
        event = {
            "name": s[spans.action[i]],
            "cat": OUTCOMES[outcome],
            "ph": "X",
            "ts": _us(start),
            "dur": _us(spans.end_of(i)) - _us(start),
            "pid": pids[spans.process[i]],
            "tid": tids[i],
            "args": args,
        }
        if i in flows:
            flow_id, out = flows[i]
            event["bind_id"] = flow_id
            event["flow_out" if out else "flow_in"] = True
        yield event
    for report in spans.stuck:
        i = report.span
        yield {
            "name": f"stuck: {s[spans.action[i]]}",
            "cat": "stuck",
            "ph": "i",
            "s": "t",
            "ts": _us(report.time),
            "pid": pids[spans.process[i]],
            "tid": tids[i],
            "args": {"trace_id": spans.trace_id[i], "where": report.where},
        }


def write_trace(spans: RunSpans, out: IO[str]) -> int:
    """Write the JSON object to ``out``, one event per line (streamed); returns the count."""
    out.write('{"displayTimeUnit": "ms", "otherData": ')
    out.write(json.dumps({"run_id": spans.run_id, "as_of": spans.as_of, "tool": "inspect-trace"}))
    out.write(', "traceEvents": [\n')
    encode = msgspec.json.Encoder().encode  # 4x faster than json.dumps
    count = 0
    for event in trace_events(spans):
        if count:
            out.write(",\n")
        try:
            out.write(encode(event).decode())
        except UnicodeEncodeError:  # a lone surrogate (a "\ud800" escape in a record)
            out.write(json.dumps(event, ensure_ascii=True))
        count += 1
    out.write("\n]}\n")
    return count


class ExportError(Exception):
    """The export could not be written (a one-line reason)."""


def export_perfetto(
    directory: Path,
    output: Path | None,
    *,
    run_id: str | None = None,
    path: Path | None = None,
    whole_run: bool = True,
) -> RunSpans:
    """``inspect-trace export --format perfetto``: read the run (or one file), then write
    its events to ``output`` (stdout when None). Reading problems raise
    ``TraceReadError``; the output file is created only once the run has been read."""
    spans = read_spans(directory, run_id, path, whole_run=whole_run)
    try:
        if output is None:
            write_trace(spans, sys.stdout)
            sys.stdout.flush()
        else:
            with open(output, "w", encoding="utf-8") as out:
                write_trace(spans, out)
    except BrokenPipeError:
        raise  # the reader of stdout went away (`| head`): the caller stops quietly
    except OSError as exc:
        where = output if output is not None else "stdout"
        raise ExportError(f"cannot write {where}: {exc.strerror or exc}") from exc
    return spans
