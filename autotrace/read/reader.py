"""The trace reader: one streaming path over msgspec, tolerant of bad lines.

A ``TraceReader`` is fed the bytes of one trace file (all at once, chunk by chunk, or
only what was appended since the last read). It cuts them at the last newline and
decodes the whole lines with one ``msgspec`` call into ``Record`` structs;
a chunk that holds a line msgspec rejects (or a blank line, which it skips) is read
again line by line, so its good lines are kept and each bad one is counted by kind.

It keeps only what the anomalies need: the enter record of each action still open,
the end records of the cancel / error / timeout buckets (with their enters) and the
latest stack the watchdog wrote for each open action. Memory grows with the number of
open (and anomalous) actions, never with the size of the file.

What counts as a record is what inspect's reader accepts (``validate_record``), except
that a ``start_time`` or ``duration`` beyond +-1e15 (or not finite) makes an action
record invalid: no reader output can then hold NaN, Infinity or an overflowing age.
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from autotrace.read.files import TraceReadError, open_trace
from autotrace.records import EVENTS, MESSAGE_PREFIX, NATIVE_PARENT_KIND

# Bytes decoded per msgspec call. Chunks of 128 KiB to 1 MiB read a 200k-record file in
# about 25% less CPU than 4 MiB here (a chunk and the structs decoded from it stay in the
# CPU cache); a chunk with a bad line is read line by line, so smaller also costs less then.
CHUNK = 512 << 10
MAX_LINE = 32 << 20  # a longer line is dropped (and counted): memory stays bounded
BUCKETS = ("cancel", "error", "timeout")
LIMIT = 1e15  # |start_time| and |duration| above this (or not finite): invalid

_Time = Annotated[float, msgspec.Meta(ge=-LIMIT, le=LIMIT)]


class Record(msgspec.Struct, gc=False):
    """One trace line, typed: inspect's fields, ours, and the watchdog's stack fields.

    Unknown keys are skipped by the decoder. ``action`` is UNSET on a record that is not
    an action; ``detail`` is UNSET when absent (an explicit null is invalid, as in inspect).
    """

    timestamp: str
    level: str
    message: str
    action: str | UnsetType = UNSET
    event: str | UnsetType = UNSET
    trace_id: str | UnsetType = UNSET
    detail: str | UnsetType = UNSET
    start_time: _Time | None = None
    duration: _Time | None = None
    error: str | None = None
    error_type: str | None = None
    stacktrace: str | None = None
    # ours (ignored by inspect)
    pid: int | None = None
    thread: str | None = None
    task: str | None = None
    parent_id: str | None = None
    child_pid: int | None = None
    source: str | None = None  # "autotrace" on ours; absent on inspect's own records
    # the extras our patches write (any type: inspect ignores them, so a reader does too)
    returncode: Any = None
    ended_by: Any = None
    closed_by: Any = None
    bytes: Any = None
    stream: Any = None
    # the watchdog's records ("[autotrace] ..."): decoded loosely, checked where used
    event_kind: Any = None
    stack: Any = None
    where: Any = None
    actions: Any = None
    # who waits for the action, when its work was handed to another thread or loop
    caller_stack: Any = None
    caller_where: Any = None
    caller_thread: Any = None


_DECODER = msgspec.json.Decoder(Record)
_FIELDS = Record.__struct_fields__
EXTRAS = ("child_pid", "returncode", "ended_by", "closed_by", "bytes", "stream")


@dataclass
class ReadProblems:
    """Lines that were not valid records, counted per kind (never fatal)."""

    blank: int = 0
    garbage: int = 0  # not a JSON object line
    invalid: int = 0  # JSON, but not a valid trace record (missing/mistyped keys)
    unknown_event: int = 0  # an action record whose event inspect does not know
    torn: int = 0  # the last line, cut short (a write in progress or a kill -9)
    first_problem: str = ""

    def total(self) -> int:
        """How many lines were skipped."""
        return self.blank + self.garbage + self.invalid + self.unknown_event + self.torn

    def note(self, kind: str, detail: str) -> None:
        """Count one skipped line of ``kind``; the first one's ``detail`` is kept."""
        setattr(self, kind, getattr(self, kind) + 1)
        if not self.first_problem:
            self.first_problem = detail

    def summary(self, name: str) -> str | None:
        """One line for stderr, or None when every line was a valid record."""
        if not self.total():
            return None
        parts = [
            f"{count} {label}"
            for count, label in (
                (self.torn, "torn last line"),
                (self.blank, "blank"),
                (self.garbage, "not JSON"),
                (self.invalid, "invalid"),
                (self.unknown_event, "unknown event"),
            )
            if count
        ]
        first = f" (first: {self.first_problem})" if self.first_problem else ""
        return f"note: skipped {self.total()} line(s) in {name}: {', '.join(parts)}{first}"


def validate_record(obj: Any) -> str | None:
    """Why inspect's reader would reject ``obj`` (None: it accepts it): "garbage",
    "invalid" or "unknown_event". Times beyond +-LIMIT or not finite are invalid too."""
    if not isinstance(obj, dict):
        return "garbage"
    get = obj.get
    if not (
        isinstance(get("timestamp"), str)
        and isinstance(get("level"), str)
        and isinstance(get("message"), str)
    ):
        return "invalid"
    if "action" not in obj:
        return None
    if not (isinstance(obj["action"], str) and isinstance(get("trace_id"), str)):
        return "invalid"
    if get("event") not in EVENTS:
        return "unknown_event"
    if not (_time_or_none(get("start_time")) and _time_or_none(get("duration"))):
        return "invalid"
    # detail: a string, or absent (an explicit null is invalid)
    detail = get("detail")
    if not (isinstance(detail, str) or (detail is None and "detail" not in obj)):
        return "invalid"
    if not all(_str_or_none(get(k)) for k in ("error", "error_type", "stacktrace")):
        return "invalid"
    return None


def _time_or_none(value: Any) -> bool:
    if value is None:
        return True
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and -LIMIT <= value <= LIMIT
    )


def _str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


_OURS = {
    "pid": int,
    "thread": str,
    "task": str,
    "parent_id": str,
    "child_pid": int,
    "source": str,
}
_ACTION_KEYS = (
    "action",
    "event",
    "trace_id",
    "detail",
    "start_time",
    "duration",
    "error",
    "error_type",
    "stacktrace",
)
_LOOSE_KEYS = (
    "timestamp",
    "level",
    "message",
    "event_kind",
    "stack",
    "where",
    "actions",
    "caller_stack",
    "caller_where",
    "caller_thread",
    *EXTRAS[1:],
)


def _record_of(obj: dict[str, Any]) -> Record:
    """A record ``validate_record`` accepts, as a ``Record``: inspect's keys as checked
    there, ours only when of the right type (inspect ignores them, and so do we)."""
    fields = {k: obj[k] for k in _LOOSE_KEYS if k in obj}
    if "action" in obj:
        fields.update((k, obj[k]) for k in _ACTION_KEYS if obj.get(k) is not None)
    elif isinstance(obj.get("trace_id"), str):  # a watchdog record names its action
        fields["trace_id"] = obj["trace_id"]
    for key, kind in _OURS.items():
        if type(obj.get(key)) is kind:
            fields[key] = obj[key]
    return Record(**fields)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def decode_line(line: bytes) -> tuple[Any, str | None]:
    """(the JSON value on ``line``, None) or (None, "garbage" | "invalid"), as inspect's
    parser (the stdlib's) reads it, except NaN, Infinity and out-of-range numbers.

    Nesting too deep for the parser is "invalid"; nothing raises.
    """
    try:
        return json.loads(line, parse_constant=_reject_constant, parse_float=_parse_float), None
    except RecursionError:
        return None, "invalid"
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, rejected numbers
        return None, "garbage"


def _checked(record: Record) -> bool:
    """Whether a decoded record passes what the struct cannot check (``_add`` counts
    the others): an action record has a ``trace_id`` and one of inspect's events."""
    return record.action is UNSET or (record.trace_id is not UNSET and record.event in EVENTS)


class TraceReader:
    """Reads one trace file incrementally; ``feed`` bytes, then ask for what it found.

    ``feed`` may be called with any slices of the file in order (a live view feeds what
    was appended since ``offset``); a line is read once its newline arrives. ``close()``
    says the input ended: a last line without newline is read if it is complete and
    counted as torn if not.

    After reading: ``running`` (trace_id -> enter record, in order of entry), ``ended``
    (bucket -> trace_id -> (end record, its enter or None)), ``stacks`` (trace_id -> the
    watchdog's latest stack record, open actions only), ``parents`` (trace_id -> parent
    trace id of an open action inspect traced itself, as the agent recorded it),
    ``problems``, ``lines``.

    ``on_record``, when given, is called with every valid record in file order as it is
    read (before it is paired and whatever the filter): for readers that need every
    record, not only the anomalies (an exporter, a timeline).

    ``offset`` is where in the file the first byte fed lies (a follower that resumes
    from a saved offset); ``line_offset`` is where the next whole line starts.
    """

    def __init__(
        self,
        name: str = "",
        filter: str | None = None,
        on_record: Callable[[Record], None] | None = None,
        offset: int = 0,
    ) -> None:
        self.name = name
        self.filter = filter.lower() if filter else None
        self.on_record = on_record
        self.offset = offset  # bytes fed so far (from the start of the file)
        self.lines = 0
        self.problems = ReadProblems()
        self.running: dict[str, Record] = {}
        self.ended: dict[str, dict[str, tuple[Record, Record | None]]] = {b: {} for b in BUCKETS}
        self.stacks: dict[str, dict[str, Any]] = {}
        self.parents: dict[str, str] = {}
        self.closed = False
        # The start of a line whose newline has not arrived, in pieces (joined once).
        self._tail: list[bytes] = []
        self._tail_size = 0
        self._skipping = False  # inside a line longer than MAX_LINE: dropped

    @property
    def line_offset(self) -> int:
        """The offset of the first byte not yet read as part of a whole line (where a
        reader could resume; inside a dropped over-long line, its end is not known yet)."""
        return self.offset - self._tail_size

    # -- input -----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Read the complete lines in ``data`` (after whatever was fed before)."""
        if not data:
            return
        self.offset += len(data)
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            self._hold(data)
            return
        start = data.find(b"\n") + 1 if self._skipping or self._tail else 0
        if self._skipping:  # the end of a dropped line
            self._skipping = False
        elif self._tail:  # the line it completes, on its own (no copy of ``data``)
            line = self._take_tail() + data[:start]
            self._decode(line, 0, len(line))
        while start < cut:  # in chunks of whole lines, however much was fed at once
            end = data.rfind(b"\n", start, start + CHUNK) + 1
            if end <= start:  # a line longer than a chunk
                end = data.find(b"\n", start + CHUNK) + 1
            self._decode(data, start, end)
            start = end
        if cut < len(data):
            self._hold(data[cut:])

    def _hold(self, part: bytes) -> None:
        """Keep ``part`` of a line until its newline (or drop the line when too long)."""
        if self._skipping:
            return
        self._tail.append(part)
        self._tail_size += len(part)
        if self._tail_size > MAX_LINE:
            self._take_tail()
            self._skipping = True
            self.lines += 1
            self.problems.note("garbage", f"a line longer than {MAX_LINE >> 20} MiB")

    def _take_tail(self) -> bytes:
        """The held start of a line (emptied)."""
        tail = b"".join(self._tail)
        self._tail, self._tail_size = [], 0
        return tail

    def close(self) -> None:
        """End of input: a last line without newline is read if whole, else counted torn."""
        if self.closed:
            return
        self.closed = True
        last, self._skipping = self._take_tail(), False
        if last.strip():
            self._line(last, last=True)

    def feed_stream(self, stream: IO[bytes], size: int = CHUNK) -> None:
        """Feed everything ``stream`` (binary) yields, ``size`` bytes at a time.

        A compressed stream that ends early (a gzip cut by a kill or a full disk) is a
        torn tail, as a cut plain file is: what was decompressed is kept, the cut is
        counted once.
        """
        try:
            for chunk in _chunks(stream, size):
                self.feed(chunk)
        except _EndedEarly:
            last, self._skipping = self._take_tail(), False
            self.lines += 1
            self.problems.note(
                "torn", f"compressed file ended early (truncated gzip) {last[:60]!r}"
            )

    # -- decoding --------------------------------------------------------------------

    def _decode(self, data: bytes, start: int, end: int) -> None:
        """The whole lines of ``data[start:end]``: one msgspec call, else line by line."""
        n = data.count(b"\n", start, end)
        try:
            records = _DECODER.decode_lines(memoryview(data)[start:end])
        # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 in a string.
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            records = None
        if records is None or len(records) != n:  # a bad line, or a blank one it skipped
            for line in data[start : end - 1].split(b"\n"):
                self._line(line, last=False)
            return
        self.lines += n
        if self.on_record is not None:
            for record in records:
                if _checked(record):
                    self.on_record(record)
                self._add(record)
            return
        # _add, inlined for the common records (this loop runs once per line).
        running, ended, add = self.running, self.ended, self._add
        stacks, parents = self.stacks, self.parents
        filtering = self.filter is not None
        for record in records:
            event = record.event
            if filtering or record.action is UNSET or record.trace_id is UNSET:
                add(record)
            elif event == "enter":
                running[record.trace_id] = record  # type: ignore[index]
            elif event == "exit":
                tid: str = record.trace_id  # type: ignore[assignment]
                if running.pop(tid, None) is not None and (stacks or parents):
                    stacks.pop(tid, None)
                    parents.pop(tid, None)
            elif event in ended:
                tid = record.trace_id  # type: ignore[assignment]
                stacks.pop(tid, None)
                parents.pop(tid, None)
                ended[event][tid] = (record, running.pop(tid, None))  # type: ignore[index]
            else:
                add(record)  # an unknown event: counted there

    def _line(self, line: bytes, *, last: bool) -> None:
        """One line: counted by kind when it is not a valid record."""
        self.lines += 1
        if not line.strip():
            self.problems.note("blank", "blank line")
            return
        try:
            record = _DECODER.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            obj, problem = decode_line(line)
            if problem is None:
                problem = validate_record(obj)
            if problem is not None:
                kind = "torn" if last and problem == "garbage" else problem
                self.problems.note(kind, f"{kind.replace('_', ' ')}: {line[:60]!r}")
                return
            record = _record_of(obj)
        if self.on_record is not None and _checked(record):
            self.on_record(record)
        self._add(record)

    def _add(self, record: Record) -> None:
        """Pair one decoded record (inspect's checks that the struct cannot express)."""
        action = record.action
        if action is UNSET:
            if record.event_kind is not None and record.message.startswith(MESSAGE_PREFIX):
                self._agent_record(record)
            return
        tid = record.trace_id
        if tid is UNSET:
            self.problems.note("invalid", f"invalid: an action record without trace_id {action!r}")
            return
        event = record.event
        if event not in EVENTS:
            self.problems.note("unknown_event", f"unknown event: {event!r}")
            return
        if self.filter is not None and self.filter not in record.message.lower():
            return
        if event == "enter":
            self.running[tid] = record
            return
        enter = self.running.pop(tid, None)
        self.stacks.pop(tid, None)
        self.parents.pop(tid, None)
        if event != "exit":
            self.ended[event][tid] = (record, enter)  # type: ignore[index]

    def _agent_record(self, record: Record) -> None:
        """Keep the watchdog's latest stack of each open action, and the parent the agent
        names for an action inspect traced itself (kept whatever the filter)."""
        kind = record.event_kind
        if kind == NATIVE_PARENT_KIND:
            tid, parent = record.trace_id, record.parent_id
            if isinstance(tid, str) and parent is not None and tid in self.running:
                self.parents[tid] = parent
            return
        if kind == "stack":
            entries: Any = [
                {
                    "trace_id": record.trace_id,
                    "stack": record.stack,
                    "where": record.where,
                    "caller_stack": record.caller_stack,
                    "caller_where": record.caller_where,
                    "caller_thread": record.caller_thread,
                }
            ]
        elif kind == "snapshot":
            entries = record.actions
        else:
            return
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, dict):
                key = entry.get("trace_id")
                if isinstance(key, str) and key in self.running:
                    self.stacks[key] = entry

    # -- results ---------------------------------------------------------------------


class _EndedEarly(Exception):
    """A compressed stream cut short (by a kill or a full disk): a torn tail, not a
    read error. What was decompressed before the cut has been yielded."""


def _chunks(stream: IO[bytes], size: int) -> Iterator[bytes]:
    """What ``stream`` (binary) yields, ``size`` bytes at a time; a gzip stream that
    ends early raises ``_EndedEarly`` after its last good chunk."""
    # GzipFile.read() drops what it decompressed when the stream breaks; read1 doesn't.
    compressed = isinstance(stream, gzip.GzipFile)
    read = stream.read1 if isinstance(stream, gzip.GzipFile) else stream.read
    decompressed = 0
    while True:
        try:
            chunk = read(size)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            # Ended early, or broken after good data; a stream broken from its first
            # byte is not gzip at all (a read error).
            if compressed and (isinstance(exc, EOFError) or decompressed > 0):
                raise _EndedEarly from exc
            raise
        if not chunk:
            return
        decompressed += len(chunk)
        yield chunk


def _describe(path: Path, exc: BaseException) -> str:
    if isinstance(exc, gzip.BadGzipFile):
        return f"cannot read {path}: not a gzip file"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read {path}: {exc.strerror}"
    return f"cannot read {path}: {exc}"


def read_file(path: Path, filter: str | None = None) -> TraceReader:
    """Read a whole trace file (plain or gzip); problems are counted in ``.problems``.

    ``TraceReadError`` when it cannot be read at all (missing, not a regular file,
    not gzip although named ``.gz``).
    """
    reader = TraceReader(path.name, filter)
    with open_trace(path) as stream:
        try:
            reader.feed_stream(stream)
        except (OSError, EOFError, zlib.error) as exc:
            raise TraceReadError(_describe(path, exc)) from exc
    reader.close()
    return reader


def iter_records(
    path: Path, filter: str | None = None, problems: ReadProblems | None = None
) -> Iterator[dict[str, Any]]:
    """Every valid record of a file as its full JSON object, in order (for ``dump``);
    problems are counted in ``problems``."""
    problems = problems if problems is not None else ReadProblems()
    needle = filter.lower() if filter else None

    def checked(line: bytes, last: bool) -> dict[str, Any] | None:
        if not line.strip():
            problems.note("blank", "blank line")
            return None
        obj, problem = decode_line(line)
        problem = problem or validate_record(obj)
        if problem is not None:
            kind = "torn" if last and problem == "garbage" else problem
            problems.note(kind, f"{kind.replace('_', ' ')}: {line[:60]!r}")
            return None
        if needle is not None and needle not in obj["message"].lower():
            return None
        return obj  # type: ignore[no-any-return]

    with open_trace(path) as stream:
        tail = b""
        skipping = False  # inside a line longer than MAX_LINE: dropped
        try:
            for chunk in _chunks(stream, CHUNK):
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                if skipping and lines:  # the end of the dropped line
                    del lines[0]
                    skipping = False
                if len(tail) > MAX_LINE:
                    problems.note("garbage", f"a line longer than {MAX_LINE >> 20} MiB")
                    tail, skipping = b"", True
                elif skipping:
                    tail = b""
                for line in lines:
                    obj = checked(line, False)
                    if obj is not None:
                        yield obj
        except _EndedEarly:
            problems.note("torn", "compressed file ended early (truncated gzip)")
            return
        except (OSError, EOFError, zlib.error) as exc:
            raise TraceReadError(_describe(path, exc)) from exc
        if tail.strip():
            obj = checked(tail, True)
            if obj is not None:
                yield obj
