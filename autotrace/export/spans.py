"""Actions as OTLP spans: the mapping the exporter sends, free of any SDK import.

The records are paired into actions by the read side's ``SpanBuilder`` (the span model
the timeline and the Perfetto export use too, ``autotrace.read.spans.Span``); this
module maps each action to what OpenTelemetry wants. One trace per run (its id derived from the run id), one span per action (its id derived
from the run and the action's ``trace_id``, so a file exported twice gives the same
spans). ``parent_id`` gives the parent span; a process's root actions hang under the
``Subprocess`` action of its parent process whose ``child_pid`` is this process.

An action that has written ``enter`` and no end is sent as a *pending span* (Logfire's
convention): a separate zero-length span whose parent is the real span-to-be, marked
``logfire.span_type = pending_span`` and ``autotrace.state = running``; each watchdog
stack report sends another, with the stack as an event. The real span follows when the
action ends, or when its process is found dead with the action still open (then it is
``abandoned``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shlex
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from autotrace.read.model import Frame
from autotrace.read.reader import Record
from autotrace.read.spans import Span, SpanBuilder
from autotrace.records import (
    CANCEL,
    DOCKER,
    ERROR,
    MODEL,
    S3,
    SUBPROCESS,
    TIMEOUT,
    TOOL_CALL,
)
from autotrace.redact import redact_text

AttrValue = str | bool | int | float

MAX_OPEN = 50_000  # open actions remembered per file (the oldest are forgotten beyond)
MAX_CHILDREN = 50_000  # (parent pid, child pid) -> spawning action, per run
MAX_TEXT = 4096  # longest attribute text sent (a stack, an error)

RUNNING = "running"
ABANDONED = "abandoned"
# OpenInference span kinds: how LLM-observability servers (Phoenix) render a span.
_OPENINFERENCE_KIND = {MODEL: "LLM", TOOL_CALL: "TOOL"}
_MODEL_DETAIL = re.compile(r"^(\w[\w.]*) \((.+)\)$")
_ERROR_TYPE = {TIMEOUT: "timeout", CANCEL: "cancelled", ABANDONED: "abandoned"}


@dataclass
class SpanEvent:
    name: str
    time_ns: int
    attributes: dict[str, AttrValue]


@dataclass
class OtlpSpan:
    """One span to send: ids as integers, times in epoch nanoseconds."""

    trace_id: int
    span_id: int
    parent_span_id: int | None
    name: str
    client: bool  # OTel span kind CLIENT (a call to another service), else INTERNAL
    start_ns: int
    end_ns: int
    attributes: dict[str, AttrValue]
    process: ProcessInfo
    events: list[SpanEvent] = field(default_factory=list)
    error: str | None = None  # status ERROR with this description; None: status UNSET
    pending: bool = False


@dataclass
class ProcessInfo:
    """What a trace file's process record says (the resource of its spans)."""

    key: str  # the file's name without .gz: stable across inspect's compression
    pid: int | None
    run_id: str
    parent_pid: int | None = None
    argv: list[str] = field(default_factory=list)


def _digest(*parts: str, size: int) -> int:
    h = hashlib.blake2b("\x00".join(parts).encode("utf-8", "surrogatepass"), digest_size=size)
    return int.from_bytes(h.digest(), "big") or 1  # 0 is the invalid id


def run_trace_id(run_id: str) -> int:
    """The 128-bit trace id of a run: every process of the run (on any machine) shares it."""
    return _digest("autotrace-run", run_id, size=16)


def action_span_id(run_id: str, trace_id: str) -> int:
    """The 64-bit span id of an action, from its run and its ``trace_id``."""
    return _digest(run_id, trace_id, size=8)


def pending_span_id(run_id: str, trace_id: str, report: int) -> int:
    """The span id of an action's ``report``-th pending span (0: the first)."""
    return _digest(run_id, trace_id, "pending", str(report), size=8)


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _attr(value: Any) -> AttrValue:
    if isinstance(value, (str, bool, int, float)):
        return _text(value) if isinstance(value, str) else value
    return _text(value)


@functools.lru_cache(maxsize=4096)
def _command_name(detail: str) -> str:
    try:
        words = shlex.split(detail)
    except ValueError:
        words = detail.split()
    return words[0].rsplit("/", 1)[-1] if words else ""


def conventions(
    action: str, detail: str, extra: dict[str, Any]
) -> tuple[str, bool, dict[str, AttrValue]]:
    """(span name, client kind, semantic-convention attributes) of an action."""
    attrs: dict[str, AttrValue] = {
        "openinference.span.kind": _OPENINFERENCE_KIND.get(action, "CHAIN")
    }
    name, client = action, False
    if action == MODEL:
        match = _MODEL_DETAIL.match(detail)
        spec = match.group(2) if match else detail
        provider, _, model = spec.partition("/") if "/" in spec else ("", "", spec)
        attrs["gen_ai.operation.name"] = "chat"
        attrs["gen_ai.request.model"] = model
        attrs["llm.model_name"] = model
        if provider:
            attrs["gen_ai.provider.name"] = provider
            attrs["gen_ai.system"] = provider  # the older name, still what many backends read
            attrs["llm.provider"] = provider
        name, client = f"chat {model}".strip(), True
    elif action == TOOL_CALL:
        tool = detail.split("(", 1)[0].strip()
        attrs["gen_ai.operation.name"] = "execute_tool"
        attrs["gen_ai.tool.name"] = tool
        attrs["tool.name"] = tool
        name = f"execute_tool {tool}".strip()
    elif action in (SUBPROCESS, DOCKER):
        attrs["process.command_line"] = _text(detail)
        command = _command_name(detail)
        if command:
            attrs["process.executable.name"] = command
        child = extra.get("child_pid")
        if isinstance(child, int) and not isinstance(child, bool):
            attrs["process.pid"] = child
        code = extra.get("returncode")
        if isinstance(code, int) and not isinstance(code, bool):
            attrs["process.exit.code"] = code
        name = f"{action} {command}".strip()
    elif action == S3:
        operation, _, rest = detail.partition(" ")
        attrs["rpc.system"] = "aws-api"
        attrs["rpc.service"] = "S3"
        if operation:
            attrs["rpc.method"] = operation
        url = next((w for w in rest.split() if w.startswith("s3://")), "")
        if url:
            bucket, _, key = url[len("s3://") :].partition("/")
            attrs["aws.s3.bucket"] = bucket
            if key:
                attrs["aws.s3.key"] = key
        name, client = f"S3 {operation}".strip(), True
    return name, client, attrs


def _stack_text(frames: Iterable[Frame]) -> str:
    """A stack as Python prints a traceback's frames."""
    lines = []
    for f in frames:
        lines.append(f'  File "{f.file}", line {f.line}, in {f.function}')
        if f.code:
            lines.append(f"    {f.code}")
    return "\n".join(lines)


def _span_state(span: Span, key: str, pending_sent: int) -> dict[str, Any]:
    """An open action as JSON (the exporter's saved state)."""
    return {
        "process": key,
        "pending_sent": pending_sent,
        "trace_id": span.trace_id,
        "action": span.action,
        "detail": span.detail,
        "start": span.start,
        "pid": span.pid,
        "thread": span.thread,
        "task": span.task,
        "parent_id": span.parent_id,
        "child_pid": span.child_pid,
        "source": span.source,
        "extra": span.extra,
        "frames": [f.as_json() for f in span.frames],
        "where": span.where,
        "stack_time": span.stack_time,
    }


def _span_of_state(state: dict[str, Any]) -> Span:
    fields = {k: v for k, v in state.items() if k not in ("process", "pending_sent")}
    fields["frames"] = tuple(Frame(**f) for f in fields.get("frames") or ())
    return Span(**fields)


class _FileSink:
    """What one file's ``SpanBuilder`` reads, handed to the mapper (``SpanSink``)."""

    def __init__(self, mapper: SpanMapper, key: str) -> None:
        self.mapper = mapper
        self.key = key

    def opened(self, span: Span) -> None:
        self.mapper._opened(self.key, span)

    def ended(self, span: Span) -> None:
        self.mapper._ended(self.key, span)

    def stacked(self, span: Span, stuck: bool) -> None:
        self.mapper._stacked(self.key, span)


class SpanMapper:
    """Turns the records of one run, file by file, into spans; remembers open actions."""

    def __init__(self, run_id: str, pending_after: float = 1.0) -> None:
        self.run_id = run_id
        self.trace_id = run_trace_id(run_id)
        self.pending_after = pending_after
        self.processes: dict[str, ProcessInfo] = {}
        self.builders: dict[str, SpanBuilder] = {}  # per file (ProcessInfo.key)
        self.pending_sent: dict[str, int] = {}  # trace_id -> pending spans sent for it
        # (parent pid, child pid) -> the trace id of the action that spawned the child
        self.children: OrderedDict[str, str] = OrderedDict()
        self._out: list[OtlpSpan] = []
        self._now = 0.0

    @property
    def forgotten(self) -> int:
        """Open actions dropped beyond MAX_OPEN."""
        return sum(b.forgotten for b in self.builders.values())

    def _builder(self, key: str) -> SpanBuilder:
        builder = self.builders.get(key)
        if builder is None:
            info = self.processes.get(key)
            builder = self.builders[key] = SpanBuilder(
                _FileSink(self, key), info.pid if info else None, MAX_OPEN
            )
        return builder

    # -- persisted state (offsets live with the follower) --------------------------

    def state(self) -> dict[str, Any]:
        """The open actions and spawn links, as JSON."""
        return {
            "open": [
                _span_state(span, key, self.pending_sent.get(span.trace_id, 0))
                for key, builder in self.builders.items()
                for span in builder.open.values()
            ],
            "children": list(self.children.items()),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what ``state()`` saved (entries of another shape are dropped)."""
        for item in state.get("open") or []:
            try:
                span = _span_of_state(item)
                key = str(item["process"])
                sent = int(item.get("pending_sent") or 0)
            except (TypeError, KeyError, ValueError):
                continue
            self._builder(key).open[span.trace_id] = span
            if sent:
                self.pending_sent[span.trace_id] = sent
        for key, value in state.get("children") or []:
            self.children[str(key)] = str(value)

    # -- reading ----------------------------------------------------------------------

    def add_process(self, info: ProcessInfo) -> None:
        """The process (resource) of the file ``info.key``."""
        self.processes[info.key] = info
        self._builder(info.key).pid = info.pid

    def spawner(self, info: ProcessInfo) -> str | None:
        """The trace id of the action that started ``info``'s process, when known."""
        if info.parent_pid is None or info.pid is None:
            return None
        return self.children.get(f"{info.parent_pid}:{info.pid}")

    def records(self, key: str, records: Iterable[Record], now: float) -> list[OtlpSpan]:
        """The spans of ``records`` (read in order from the file ``key``); an ``enter``
        is remembered and gives nothing yet (see ``pending``)."""
        builder = self._builder(key)
        self._now = now
        for record in records:
            builder.add(record)
        out, self._out = self._out, []
        return out

    def _opened(self, key: str, span: Span) -> None:
        info = self.processes[key]
        if span.child_pid is not None and info.pid is not None:
            self.children[f"{info.pid}:{span.child_pid}"] = span.trace_id
            if len(self.children) > MAX_CHILDREN:
                self.children.popitem(last=False)

    def _ended(self, key: str, span: Span) -> None:
        self.pending_sent.pop(span.trace_id, None)
        out = self._span(self.processes[key], span, span.end or span.start)
        event = span.outcome
        out.attributes["autotrace.outcome"] = event
        if event == ERROR:
            error_type = span.error_type or "error"
            error = redact_text(span.error) if span.error and span.native else span.error
            trace = span.stacktrace or ""
            out.error = _text(error or error_type, 1024)
            out.attributes["error.type"] = error_type
            out.events.append(
                SpanEvent(
                    "exception",
                    out.end_ns,
                    {
                        "exception.type": error_type,
                        "exception.message": _text(error or ""),
                        "exception.stacktrace": _text(redact_text(trace) if span.native else trace),
                    },
                )
            )
        elif event in _ERROR_TYPE:
            out.error = event
            out.attributes["error.type"] = _ERROR_TYPE[event]
        if span.stack_time is not None:
            out.events.append(self._stack_event(span))
        self._out.append(out)

    def _stacked(self, key: str, span: Span) -> None:
        self._out.append(self._pending(key, span, self._now))

    def _span(self, info: ProcessInfo, span: Span, end: float) -> OtlpSpan:
        """The span of an action (its id derived from the run and the action's id)."""
        # inspect's own records are redacted as the agent redacts its own (its Docker
        # details carry ``--env K=V``): nothing secret goes out.
        detail = redact_text(span.detail) if span.native else span.detail
        name, client, conv = conventions(span.action, detail, span.extra)
        attributes: dict[str, AttrValue] = {
            "autotrace.action": span.action,
            "autotrace.detail": _text(detail),
            "autotrace.trace_id": span.trace_id,
        }
        if span.thread:
            attributes["thread.name"] = span.thread
        if span.task:
            attributes["autotrace.task"] = span.task
        attributes["autotrace.source"] = span.source or "inspect"
        attributes.update(
            (f"autotrace.{k}", _attr(v)) for k, v in span.extra.items() if v is not None
        )
        attributes.update(conv)
        parent: int | None = None
        if span.parent_id:
            parent = action_span_id(self.run_id, span.parent_id)
        elif (spawner := self.spawner(info)) is not None:
            parent = action_span_id(self.run_id, spawner)
        start_ns = int(span.start * 1e9)
        return OtlpSpan(
            trace_id=self.trace_id,
            span_id=action_span_id(self.run_id, span.trace_id),
            parent_span_id=parent,
            name=name,
            client=client,
            start_ns=start_ns,
            end_ns=max(start_ns, int(end * 1e9)),
            attributes=attributes,
            process=info,
        )

    def _stack_event(self, span: Span) -> SpanEvent:
        at = span.stack_time if span.stack_time is not None else span.start
        attrs: dict[str, AttrValue] = {
            "autotrace.where": _text(span.where),
            "autotrace.stack": _text(_stack_text(span.frames)),
            "autotrace.age": round(max(0.0, at - span.start), 3),
        }
        return SpanEvent("autotrace.stuck", int(at * 1e9), attrs)

    def _pending(self, key: str, span: Span, now: float) -> OtlpSpan:
        """A pending span (Logfire's convention) of the open action ``span``."""
        out = self._span(self.processes[key], span, span.start)
        real = out.span_id
        sent = self.pending_sent.get(span.trace_id, 0)
        out.span_id = pending_span_id(self.run_id, span.trace_id, sent)
        out.attributes["logfire.pending_parent_id"] = (
            f"{out.parent_span_id:016x}" if out.parent_span_id else "0" * 16
        )
        out.parent_span_id = real
        out.attributes["logfire.span_type"] = "pending_span"
        out.attributes["autotrace.state"] = RUNNING
        out.attributes["autotrace.outcome"] = RUNNING
        out.attributes["autotrace.age"] = round(max(0.0, now - span.start), 3)
        if span.stack_time is not None:
            out.events.append(self._stack_event(span))
        out.pending = True
        self.pending_sent[span.trace_id] = sent + 1
        return out

    def pending(self, now: float, processes: set[str]) -> list[OtlpSpan]:
        """Pending spans of the actions of ``processes`` (live, their files read to the
        end) open for ``pending_after`` seconds, once per action."""
        due = now - self.pending_after
        return [
            self._pending(key, span, now)
            for key in processes
            if key in self.builders
            for span in list(self.builders[key].open.values())
            if span.trace_id not in self.pending_sent and span.start <= due
        ]

    def abandon(self, key: str, end: float) -> list[OtlpSpan]:
        """Final spans of the actions still open in ``key``'s process, found dead."""
        info = self.processes[key]
        builder = self._builder(key)
        out = []
        for span in builder.open.values():
            self.pending_sent.pop(span.trace_id, None)
            final = self._span(info, span, max(end, span.start))
            final.attributes["autotrace.outcome"] = ABANDONED
            final.attributes["error.type"] = ABANDONED
            final.error = "the process ended while the action was running"
            if span.stack_time is not None:
                final.events.append(self._stack_event(span))
            out.append(final)
        builder.open.clear()
        return out
