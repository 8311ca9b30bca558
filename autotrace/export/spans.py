"""Trace records as spans: the mapping the OTLP exporter sends, free of any SDK import.

One trace per run (its id derived from the run id), one span per action (its id derived
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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autotrace.records import (
    CANCEL,
    DOCKER,
    ENTER,
    ERROR,
    MODEL,
    S3,
    SUBPROCESS,
    TIMEOUT,
    TOOL_CALL,
)
from autotrace.redact import redact_text

AttrValue = str | bool | int | float

# Keys of an action record that are not extras.
_RECORD_KEYS = frozenset(
    {
        "timestamp",
        "level",
        "message",
        "action",
        "event",
        "trace_id",
        "detail",
        "start_time",
        "duration",
        "error",
        "error_type",
        "stacktrace",
        "pid",
        "thread",
        "task",
        "parent_id",
        "source",
    }
)
MAX_OPEN = 50_000  # open actions remembered per run (the oldest are forgotten beyond)
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
class Span:
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


def epoch(timestamp: Any) -> float | None:
    """A record's ISO ``timestamp`` as epoch seconds."""
    if not isinstance(timestamp, str):
        return None
    try:
        return datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        return None


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


@dataclass
class OpenAction:
    """An action read as ``enter`` whose end has not been read yet."""

    trace_id: str
    action: str
    detail: str
    start: float
    parent_id: str | None
    process: str  # ProcessInfo.key
    attrs: dict[str, AttrValue]  # thread, task, source, the enter's extras
    extra: dict[str, Any]
    pending_sent: int = 0  # pending spans sent (0: none yet)
    stack: dict[str, Any] | None = None  # the latest watchdog report

    def state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _stack_text(stack: Any) -> str:
    if not isinstance(stack, list):
        return ""
    lines = []
    for entry in stack:
        if isinstance(entry, dict):
            lines.append(
                f'  File "{entry.get("file")}", line {entry.get("line")}, in {entry.get("function")}'
            )
            code = entry.get("code")
            if code:
                lines.append(f"    {code}")
        else:
            lines.append(f"  {entry}")
    return "\n".join(lines)


def _redacted(rec: dict[str, Any]) -> dict[str, Any]:
    """A record inspect wrote itself, its texts redacted as the agent redacts its own (its
    Docker details carry ``--env K=V``): nothing secret goes out."""
    out = dict(rec)
    for key in ("detail", "error", "stacktrace"):
        if isinstance(out.get(key), str):
            out[key] = redact_text(out[key])
    return out


class SpanMapper:
    """Turns the records of one run, file by file, into spans; remembers open actions."""

    def __init__(self, run_id: str, pending_after: float = 1.0) -> None:
        self.run_id = run_id
        self.trace_id = run_trace_id(run_id)
        self.pending_after = pending_after
        self.processes: dict[str, ProcessInfo] = {}
        self.open: OrderedDict[str, OpenAction] = OrderedDict()
        # (parent pid, child pid) -> the trace id of the action that spawned the child
        self.children: OrderedDict[str, str] = OrderedDict()
        self.forgotten = 0  # open actions dropped beyond MAX_OPEN

    # -- persisted state (offsets live with the follower) --------------------------

    def state(self) -> dict[str, Any]:
        return {
            "open": [a.state() for a in self.open.values()],
            "children": list(self.children.items()),
        }

    def restore(self, state: dict[str, Any]) -> None:
        for item in state.get("open") or []:
            try:
                action = OpenAction(**item)
            except TypeError:
                continue
            self.open[action.trace_id] = action
        for key, value in state.get("children") or []:
            self.children[str(key)] = str(value)

    # -- reading ----------------------------------------------------------------------

    def add_process(self, info: ProcessInfo) -> None:
        self.processes[info.key] = info

    def spawner(self, info: ProcessInfo) -> str | None:
        """The trace id of the action that started ``info``'s process, when known."""
        if info.parent_pid is None or info.pid is None:
            return None
        return self.children.get(f"{info.parent_pid}:{info.pid}")

    def records(self, key: str, records: list[dict[str, Any]], now: float) -> list[Span]:
        """The spans of ``records`` (read in order from the file ``key``); ``enter``
        records are remembered and give nothing yet (see ``pending``)."""
        info = self.processes[key]
        out: list[Span] = []
        for rec in records:
            if "action" in rec:
                if rec.get("source") != "autotrace":
                    rec = _redacted(rec)
                if rec["event"] == ENTER:
                    self._enter(info, rec)
                else:
                    out.append(self._end(info, rec))
            elif rec.get("event_kind") in ("stack", "snapshot"):
                out.extend(self._stack(rec, now))
        return out

    def _enter(self, info: ProcessInfo, rec: dict[str, Any]) -> None:
        trace_id = rec["trace_id"]
        start = rec.get("start_time")
        if not isinstance(start, (int, float)):
            start = epoch(rec["timestamp"]) or 0.0
        extra = {k: v for k, v in rec.items() if k not in _RECORD_KEYS}
        parent = rec.get("parent_id")
        self.open[trace_id] = OpenAction(
            trace_id=trace_id,
            action=rec["action"],
            detail=rec.get("detail") or "",
            start=float(start),
            parent_id=parent if isinstance(parent, str) else None,
            process=info.key,
            attrs=self._common(rec),
            extra=extra,
        )
        child = extra.get("child_pid")
        if isinstance(child, int) and info.pid is not None:
            self.children[f"{info.pid}:{child}"] = trace_id
            if len(self.children) > MAX_CHILDREN:
                self.children.popitem(last=False)
        if len(self.open) > MAX_OPEN:
            self.open.popitem(last=False)
            self.forgotten += 1

    @staticmethod
    def _common(rec: dict[str, Any]) -> dict[str, AttrValue]:
        attrs: dict[str, AttrValue] = {}
        for key, name in (("thread", "thread.name"), ("task", "autotrace.task")):
            value = rec.get(key)
            if isinstance(value, str):
                attrs[name] = value
        attrs["autotrace.source"] = rec.get("source") or "inspect"
        return attrs

    def _parent_span(self, info: ProcessInfo, parent_id: str | None) -> int | None:
        if parent_id:
            return action_span_id(self.run_id, parent_id)
        spawner = self.spawner(info)
        return action_span_id(self.run_id, spawner) if spawner else None

    def _span(
        self,
        info: ProcessInfo,
        trace_id: str,
        action: str,
        detail: str,
        parent_id: str | None,
        start: float,
        end: float,
        extra: dict[str, Any],
        attrs: dict[str, AttrValue],
    ) -> Span:
        name, client, conv = conventions(action, detail, extra)
        attributes: dict[str, AttrValue] = {
            "autotrace.action": action,
            "autotrace.detail": _text(detail),
            "autotrace.trace_id": trace_id,
            **attrs,
            **{f"autotrace.{k}": _attr(v) for k, v in extra.items() if v is not None},
            **conv,
        }
        return Span(
            trace_id=self.trace_id,
            span_id=action_span_id(self.run_id, trace_id),
            parent_span_id=self._parent_span(info, parent_id),
            name=name,
            client=client,
            start_ns=int(start * 1e9),
            end_ns=max(int(start * 1e9), int(end * 1e9)),
            attributes=attributes,
            process=info,
        )

    def _end(self, info: ProcessInfo, rec: dict[str, Any]) -> Span:
        trace_id = rec["trace_id"]
        opened = self.open.pop(trace_id, None)
        duration = rec.get("duration")
        duration = float(duration) if isinstance(duration, (int, float)) else 0.0
        if opened is not None:
            start, end = opened.start, opened.start + duration
            extra = {**opened.extra, **{k: v for k, v in rec.items() if k not in _RECORD_KEYS}}
            attrs = opened.attrs
        else:
            end = epoch(rec["timestamp"]) or 0.0
            start = end - duration
            extra = {k: v for k, v in rec.items() if k not in _RECORD_KEYS}
            attrs = self._common(rec)
        parent = rec.get("parent_id")
        parent = parent if isinstance(parent, str) else opened.parent_id if opened else None
        event = rec["event"]
        span = self._span(
            info, trace_id, rec["action"], rec.get("detail") or "", parent, start, end, extra, attrs
        )
        span.attributes["autotrace.outcome"] = event
        if event == ERROR:
            error_type = rec.get("error_type") or "error"
            span.error = _text(rec.get("error") or error_type, 1024)
            span.attributes["error.type"] = error_type
            span.events.append(
                SpanEvent(
                    "exception",
                    span.end_ns,
                    {
                        "exception.type": error_type,
                        "exception.message": _text(rec.get("error") or ""),
                        "exception.stacktrace": _text(rec.get("stacktrace") or ""),
                    },
                )
            )
        elif event in _ERROR_TYPE:
            span.error = event
            span.attributes["error.type"] = _ERROR_TYPE[event]
        if opened is not None and opened.stack is not None:
            span.events.append(self._stack_event(opened.stack))
        return span

    def _stack(self, rec: dict[str, Any], now: float) -> list[Span]:
        entries = [rec] if rec.get("event_kind") == "stack" else rec.get("actions")
        out = []
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            opened = self.open.get(str(entry.get("trace_id")))
            if opened is None:
                continue
            opened.stack = {
                "time": epoch(rec.get("timestamp")) or now,
                "where": _text(entry.get("where") or ""),
                "stack": _text(_stack_text(entry.get("stack"))),
                "age": entry.get("age"),
            }
            out.append(self._pending(opened, now))
        return out

    @staticmethod
    def _stack_event(stack: dict[str, Any]) -> SpanEvent:
        attrs: dict[str, AttrValue] = {
            "autotrace.where": stack["where"],
            "autotrace.stack": stack["stack"],
        }
        if isinstance(stack.get("age"), (int, float)):
            attrs["autotrace.age"] = float(stack["age"])
        return SpanEvent("autotrace.stuck", int(stack["time"] * 1e9), attrs)

    def _pending(self, opened: OpenAction, now: float) -> Span:
        info = self.processes[opened.process]
        span = self._span(
            info,
            opened.trace_id,
            opened.action,
            opened.detail,
            opened.parent_id,
            opened.start,
            opened.start,
            opened.extra,
            opened.attrs,
        )
        real = span.span_id
        span.span_id = pending_span_id(self.run_id, opened.trace_id, opened.pending_sent)
        span.attributes["logfire.pending_parent_id"] = (
            f"{span.parent_span_id:016x}" if span.parent_span_id else "0" * 16
        )
        span.parent_span_id = real
        span.attributes["logfire.span_type"] = "pending_span"
        span.attributes["autotrace.state"] = RUNNING
        span.attributes["autotrace.outcome"] = RUNNING
        span.attributes["autotrace.age"] = round(max(0.0, now - opened.start), 3)
        if opened.stack is not None:
            span.events.append(self._stack_event(opened.stack))
        span.pending = True
        opened.pending_sent += 1
        return span

    def pending(self, now: float, processes: set[str]) -> list[Span]:
        """Pending spans of the actions of ``processes`` (live, their files read to the
        end) open for ``pending_after`` seconds, once per action."""
        due = now - self.pending_after
        return [
            self._pending(a, now)
            for a in list(self.open.values())
            if not a.pending_sent and a.start <= due and a.process in processes
        ]

    def abandon(self, key: str, end: float) -> list[Span]:
        """Final spans of the actions still open in ``key``'s process, found dead."""
        info = self.processes[key]
        out = []
        for trace_id in [t for t, a in self.open.items() if a.process == key]:
            opened = self.open.pop(trace_id)
            span = self._span(
                info,
                trace_id,
                opened.action,
                opened.detail,
                opened.parent_id,
                opened.start,
                max(end, opened.start),
                opened.extra,
                opened.attrs,
            )
            span.attributes["autotrace.outcome"] = ABANDONED
            span.attributes["error.type"] = ABANDONED
            span.error = "the process ended while the action was running"
            if opened.stack is not None:
                span.events.append(self._stack_event(opened.stack))
            out.append(span)
        return out
