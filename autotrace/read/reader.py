"""The trace reader: streaming, tolerant, fast; what `inspect-trace` and live views read with.

A ``TraceScanner`` is fed the bytes of one trace file (all at once, chunk by chunk, or
only what was appended since the last read) and keeps just what the anomalies need:
the raw ``enter`` line of each action still open and the end lines that landed in the
cancel / error / timeout buckets. Memory grows with the number of open (and
anomalous) actions, never with the size of the file.

Anomalies follow ``inspect trace anomalies`` (same buckets, same ``--filter``
semantics, finished buckets sorted as inspect sorts them; running actions come
culprit first); rows add our keys (``trace_id``, ``pid``, ``parent_id``, the
watchdog's ``stack`` / ``where``). Lines that are torn, blank, not JSON or not valid
records are counted, not fatal. ``scan_file`` reads a large file with two processes.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import getitem, itemgetter, ne
from pathlib import Path
from typing import IO, Any, TypeVar

from autotrace import config
from autotrace.records import EVENTS, MESSAGE_PREFIX

CHUNK = 1 << 18  # what a stream (gzip, a live view) is read by
BLOCK = 1 << 17  # what a plain file is read by: a block stays in the CPU cache through its passes
# With numpy (autotrace.read.npscan) a large file is read in larger blocks: each block costs a
# few dozen array calls, and the arrays of one block stay well under the memory budget.
VECTOR_BLOCK = 1 << 21
VECTOR_MIN_BLOCK = 1 << 18  # a smaller block is read the pure-Python way
VECTOR_MIN_FILE = 48 << 20  # numpy's import (~35 ms) pays for itself from about here

# Byte patterns of the fast paths (see TraceScanner._scan_lines and _scan_block for why
# they are safe).
_HEAD = b'{"timestamp": "'
_EVENT_KEY = b', "event": "'
_ACTION_KEY = b', "action": "'
_LEVEL_KEY = b', "level": "'
_MESSAGE_KEY = b', "message": "'
# The trace id key as it follows another string value; the block path (see
# TraceScanner._scan_block) splits a block of lines at it.
_TID_SEP = b'", "trace_id": "'
_AGENT_MESSAGE = b'"message": "' + MESSAGE_PREFIX.encode()
_EVENTS_BYTES = {e.encode(): e for e in EVENTS}
_NL_HEAD = b"\n" + _HEAD
_LINE_END = b"}\n"
_LINE_JOIN = b'}\n{"timestamp'
_EVENT_ENDS = tuple(_EVENT_KEY + e for e in _EVENTS_BYTES)
# The third last byte of each event name differs: enTer, eXit, erRor, canCel, timeOut.
_EVENT_OF_CODE = {e.encode()[-3]: e for e in EVENTS}
_THIRD_LAST = itemgetter(-3)

BUCKETS = ("cancel", "error", "timeout")
T = TypeVar("T")


class TraceReadError(Exception):
    """A trace file that cannot be read at all (missing, a directory, broken gzip)."""


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
        return self.blank + self.garbage + self.invalid + self.unknown_event + self.torn

    def note(self, kind: str, detail: str) -> None:
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


@dataclass(slots=True)
class ActionRecord:
    """One action as an anomaly row: the end record (or the enter, while running)."""

    trace_id: str
    action: str
    event: str
    detail: str
    message: str
    start_time: float | None
    duration: float | None
    error: str | None = None
    error_type: str | None = None
    stacktrace: str | None = None
    pid: int | None = None
    parent_id: str | None = None
    thread: str | None = None
    task: str | None = None
    record: dict[str, Any] = field(default_factory=dict, repr=False)
    # The latest stack the watchdog wrote for this action (running actions only).
    stack: list[dict[str, Any]] = field(default_factory=list, repr=False)
    where: str = ""

    def sort_key(self) -> float:
        """inspect's order: most recently finished first (running: latest start first)."""
        return (self.start_time or 0) + (self.duration or 0)

    def age(self, as_of: float) -> float:
        """The recorded duration, or the time since start (as of ``as_of``) while running."""
        if self.duration is not None:
            return self.duration
        if self.start_time is not None:
            return as_of - self.start_time
        return 0.0

    def row(self, as_of: float) -> dict[str, Any]:
        """The JSON row of `anomalies --json`: inspect's keys, then ours."""
        row: dict[str, Any] = {
            "action": self.action,
            "detail": self.detail or self.message,
            "start_time": self.start_time,
            "duration": self.age(as_of),
        }
        if self.error is not None:
            row["error"] = self.error
        row["trace_id"] = self.trace_id
        row["pid"] = self.pid
        row["parent_id"] = self.parent_id
        row["stack"] = self.stack
        row["where"] = self.where
        return row


@dataclass
class Anomalies:
    """The four buckets of `anomalies`, each sorted as inspect sorts them."""

    running: list[ActionRecord]
    cancelled: list[ActionRecord]
    errors: list[ActionRecord]
    timeouts: list[ActionRecord]

    def buckets_json(self, as_of: float) -> dict[str, list[dict[str, Any]]]:
        """The bucket lists of the `--json` envelope (all four, always)."""
        return {
            "running": [a.row(as_of) for a in self.running],
            "cancelled": [a.row(as_of) for a in self.cancelled],
            "errors": [a.row(as_of) for a in self.errors],
            "timeouts": [a.row(as_of) for a in self.timeouts],
        }

    def count(self) -> int:
        return len(self.running) + len(self.cancelled) + len(self.errors) + len(self.timeouts)


def validate_record(obj: Any) -> str | None:
    """Why inspect's reader would reject ``obj`` (None: it accepts it)."""
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
    if not (_number_or_none(get("start_time")) and _number_or_none(get("duration"))):
        return "invalid"
    # detail: a string, or absent (an explicit null is invalid)
    detail = get("detail")
    if not (isinstance(detail, str) or (detail is None and "detail" not in obj)):
        return "invalid"
    if not (
        _str_or_none(get("error"))
        and _str_or_none(get("error_type"))
        and _str_or_none(get("stacktrace"))
    ):
        return "invalid"
    return None


def _number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _action_record(obj: dict[str, Any], keep: bool = True) -> ActionRecord:
    get = obj.get
    start, duration = get("start_time"), get("duration")
    pid, parent, thread, task = get("pid"), get("parent_id"), get("thread"), get("task")
    # Positional, every field given: this runs once per anomaly row.
    return ActionRecord(
        obj["trace_id"],
        obj["action"],
        obj["event"],
        get("detail") or "",
        obj["message"],
        None if start is None else float(start),
        None if duration is None else float(duration),
        get("error"),
        get("error_type"),
        get("stacktrace"),
        pid if type(pid) is int else None,  # JSON gives exact types: bool is not int here
        parent if type(parent) is str else None,
        thread if type(thread) is str else None,
        task if type(task) is str else None,
        obj if keep else {},
        [],
        "",
    )


def _trace_ids(tails: list[bytes], m: int) -> list[bytes] | None:
    """The trace id each piece starts with (up to its closing quote), or None if any of
    them holds a backslash, a newline or has no closing quote (the line goes slow)."""
    width = tails[0].find(b'"')
    try:  # one writer: usually trace ids of one length
        uniform = width > 0 and list(map(itemgetter(width), tails)).count(34) == m
    except IndexError:
        uniform = False
    if uniform:
        tids = list(map(itemgetter(slice(0, width)), tails))
    else:
        ends = list(map(bytes.find, tails, repeat(b'"')))
        if min(ends) < 0:
            return None
        tids = list(map(getitem, tails, map(slice, ends)))
    joined = b"".join(tids)
    if b'"' in joined or b"\\" in joined or b"\n" in joined:
        return None
    return tids


def _finished_row(
    end_line: bytes, enter_line: bytes | None
) -> tuple[
    tuple[ActionRecord | None, str | None], tuple[tuple[float | None] | None, str | None] | None
]:
    """The row of an anomalous end record and (its enter's start time,), each with the
    problem that makes it invalid (counted by the caller when the row is used)."""
    obj, problem = _checked_action(end_line)
    end = (None if obj is None else _action_record(obj, keep=False), problem)
    if enter_line is None:
        return end, None
    start, problem = _checked_action(enter_line)
    return end, (None if start is None else (_float(start.get("start_time")),), problem)


def _checked_action(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(the action record on ``line``, None), or (None, why it is not a valid one)."""
    obj = _loads(line)
    problem = validate_record(obj)
    if problem is not None or not isinstance(obj, dict) or "action" not in obj:
        return None, problem or "invalid"
    return obj, None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


_raw_decode = json.JSONDecoder().raw_decode


def _loads(line: bytes) -> Any:
    """``json.loads(line)``, or None when it raises."""
    try:  # the common case without json.loads' encoding detection and wrapping
        text = line.decode()
        obj, end = _raw_decode(text)
        if end == len(text):
            return obj
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        pass
    except RecursionError:  # a line of deeply nested arrays: not a record
        return None
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


MAX_LINE = 32 << 20  # a longer line is dropped (and counted): memory stays bounded


class LineBuffer:
    """Cuts a byte stream into lines; keeps the incomplete last line until its newline.

    A line longer than MAX_LINE is dropped and counted as garbage rather than held
    (and a long line is joined once, not copied again with every chunk).
    """

    __slots__ = ("_parts", "_size", "_skipping", "problems")

    def __init__(self, problems: ReadProblems) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._skipping = False
        self.problems = problems

    def split(self, data: bytes) -> list[bytes]:
        """The lines ``data`` completes, in order."""
        nl = data.rfind(b"\n")
        if nl < 0:
            if not self._skipping:
                self._parts.append(data)
                self._size += len(data)
                if self._size > MAX_LINE:
                    self._drop()
            return []
        if self._parts:
            data = b"".join(self._parts) + data
            self._parts, self._size = [], 0
        lines = data.split(b"\n")
        tail = lines.pop()
        if self._skipping:  # the end of a dropped line
            del lines[0]
            self._skipping = False
        if tail:
            self._parts, self._size = [tail], len(tail)
            if self._size > MAX_LINE:
                self._drop()
        return lines

    def block(self, data: bytes) -> bytes:
        """The lines ``data`` completes, as one bytes object ending in a newline (or b"")."""
        nl = data.rfind(b"\n")
        if nl < 0:
            self.split(data)  # keeps (or drops) the partial line
            return b""
        if self._parts:
            head = b"".join(self._parts)
            self._parts, self._size = [], 0
            data = head + data
            nl += len(head)
        start = 0
        if self._skipping:  # the end of a dropped line
            start = data.find(b"\n") + 1
            self._skipping = False
        if nl + 1 < len(data):
            tail = data[nl + 1 :]
            self._parts, self._size = [tail], len(tail)
            if self._size > MAX_LINE:
                self._drop()
            return data[start : nl + 1]
        return data[start:] if start else data

    def rest(self) -> bytes:
        """At end of input: the last line if it had no newline (b"" when none)."""
        rest = b"".join(self._parts)
        self._parts, self._size, self._skipping = [], 0, False
        return rest

    def _drop(self) -> None:
        self._parts, self._size, self._skipping = [], 0, True
        self.problems.note("garbage", f"a line longer than {MAX_LINE >> 20} MiB")


class TraceScanner:
    """Reads one trace file incrementally; ``feed`` bytes, then ask for ``anomalies()``.

    ``feed`` may be called with any slices of the file in order (a live view feeds
    what was appended since ``offset``); a line is processed once its newline
    arrives. ``close()`` says the input ended: a last line without newline is read
    if it is complete and counted as torn if not.
    """

    def __init__(
        self, name: str = "", filter: str | None = None, *, vectorized: bool = False
    ) -> None:
        self.name = name
        self.filter = filter.lower() if filter else None
        self.offset = 0  # bytes fed so far
        self.lines = 0
        self.problems = ReadProblems()
        # trace_id (utf-8 bytes) -> raw enter line, for actions still open
        self.running: dict[bytes, bytes] = {}
        # bucket -> trace_id -> (raw end line, raw enter line or None)
        self.finished: dict[str, dict[bytes, tuple[bytes, bytes | None]]] = {b: {} for b in BUCKETS}
        # non-action records of the agent itself ("[autotrace] process start", stacks, ...)
        self.agent_records: list[dict[str, Any]] = []
        # End records that met no enter, in order (kept only for a parallel scan, whose
        # parts are joined by ending the actions the part before left open).
        self.orphans: list[tuple[bytes, str, bytes]] | None = None
        self._buffer = LineBuffer(self.problems)
        self._closed = False
        # The numpy block path (None: pure Python); vector_blocks counts blocks it read.
        vector = vector_module() if vectorized else None
        self._vector = vector.BlockScanner() if vector is not None else None
        self.vector_blocks = 0
        # (bucket, trace id) -> (end line, enter line, their parses): see parse_ahead
        self._ready: dict[tuple[str, bytes], tuple[Any, ...]] = {}
        # A filter can be checked on the raw bytes only when the JSON escaping of a
        # match cannot differ from the match itself (see _filter_match).
        f = self.filter
        self._filter_raw = (
            f.encode("ascii")
            if f is not None
            and f.isascii()
            and not any(c in f for c in '"\\/')
            and all(c >= " " for c in f)
            else None
        )

    # -- input -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Process the complete lines in ``data`` (after whatever was fed before)."""
        if not data:
            return
        self.offset += len(data)
        if self.filter is None:
            block = self._buffer.block(data)
            if not block:
                return
            if self._vector is not None and len(block) >= VECTOR_MIN_BLOCK:
                if not self._vector_scan(block, None, 0, len(block)):
                    self._scan_blocks(block)  # cut to cache-sized blocks
                return
            self._scan_block(block)
            return
        lines = self._buffer.split(data)
        if lines:
            self._scan_lines(lines)

    def close(self) -> None:
        """End of input: a last line without newline is read if whole, else counted torn."""
        if self._closed:
            return
        self._closed = True
        last = self._buffer.rest()
        if not last.strip():
            return
        obj = _loads(last)
        if not isinstance(obj, dict):
            self.lines += 1
            self.problems.note("torn", f"torn last line {last[:60]!r}")
            return
        if self._vector is not None:
            self._vector.stale = True
        self._scan_lines([last])

    def feed_stream(self, stream: IO[bytes], size: int = CHUNK) -> None:
        """Feed everything ``stream`` yields (binary), ``size`` bytes at a time.

        A compressed stream that ends early (a gzip cut by a kill or a full disk) is a
        torn tail, as a cut plain file is: what was decompressed is kept and counted.
        """
        try:
            for chunk in _chunks(stream, size):
                self.feed(chunk)
        except _EndedEarly:
            # The cut line, if any, is the torn tail close() counts; one note either way.
            last = self._buffer.rest()
            self.lines += 1
            self.problems.note(
                "torn", f"compressed file ended early (truncated gzip) {last[:60]!r}"
            )

    # -- the scan loop ----------------------------------------------------------

    def _scan_lines(self, lines: list[bytes]) -> None:
        """Classify each line; the byte-level fast path reads action lines unparsed.

        Why reading keys from raw bytes is safe. Inside a JSON string every ``"`` is
        written ``\\"``, so in a match of ``, "event": "`` the quote after ``event`` is
        a real one that closes a string, and since ``:`` follows, that string is a key.
        Its opening quote is real too, because a space, not a backslash, precedes it:
        the key is exactly ``event`` (and ``", "`` before it is a real separator). It is
        a key of the top-level object when no ``{`` comes before it on the line (a
        ``{`` inside a string only sends the line to the slow path). The same holds for
        ``, "action": "`` before it. Both our writer and inspect's ``json.dumps`` write
        ``event`` then ``trace_id`` with ``", "`` and ``": "`` separators; a line in
        another shape, with a backslash in its trace_id or with an unknown event goes
        through ``json.loads``. A line
        kept for the result (open or anomalous) is fully parsed and validated at the
        end; a line must end in ``}`` (a torn line does not). Plain files are read by
        ``_scan_block``, which proves the same per line with passes over a block.
        """
        running = self.running
        finished = self.finished
        events, tid_key = _EVENTS_BYTES, _TID_SEP
        event_key, action_key, head, agent = _EVENT_KEY, _ACTION_KEY, _HEAD, _AGENT_MESSAGE
        filtering = self.filter is not None
        slow = self._slow
        self.lines += len(lines)
        for line in lines:
            i = line.find(event_key)
            if i < 0:
                # No event key: a plain record (HTTP, messages, ours) unless it
                # hides an action key in another shape (then the slow path decides).
                # Its level and message keys are top-level strings when found after
                # ", " on a line with no other "{" (same reasoning as below).
                if (
                    line[:15] == head
                    and line[-1] == 125
                    and b'"action"' not in line
                    and b"\\u" not in line
                    and agent not in line
                    and _LEVEL_KEY in line
                    and _MESSAGE_KEY in line
                    and line.find(b"{", 1) < 0
                ):
                    continue
                slow(line)
                continue
            j = i + 12
            # The event value ends where '", "trace_id": "' starts (at most 7 bytes on).
            k = line.find(tid_key, j, j + 23)
            if (
                k > 0
                and line[-1] == 125  # }
                and line.rfind(b"{", 0, i) == 0  # the only { before the event key
                and line.find(action_key, 1, i) > 0
            ):
                event = line[j:k]
                t1 = line.find(b'"', k + 16)
                tid = line[k + 16 : t1]
                if t1 > 0 and b"\\" not in tid:
                    if filtering and not self._filter_match(line):
                        continue
                    if event == b"enter":
                        running[tid] = line
                        continue
                    name = events.get(event)
                    if name is not None:
                        enter = running.pop(tid, None)
                        if name != "exit":
                            finished[name][tid] = (line, enter)
                        if enter is None and self.orphans is not None:
                            self.orphans.append((tid, name, line))
                        continue
            slow(line)

    def _vector_scan(self, text: Any, buf: Any, begin: int, end: int) -> bool:
        """The numpy path over whole lines (``buf`` None: ``text`` is the block's bytes);
        False when it declined. An error in it turns it off and the block is read the
        pure-Python way: it never stops a read."""
        vector = self._vector
        if vector is None:
            return False
        try:
            done = (
                vector.scan(self, text)
                if buf is None
                else vector.scan_range(self, text, buf, begin, end)
            )
        except Exception:
            self._vector = None
            return False
        if done:
            self.vector_blocks += 1
        return bool(done)

    def _scan_blocks(self, data: bytes) -> None:
        """``_scan_block`` over ``data`` (whole lines) in pieces of about BLOCK bytes."""
        start = 0
        while start < len(data):
            end = data.find(b"\n", start + BLOCK) + 1 or len(data)
            self._scan_block(data[start:end])
            start = end

    def _scan_block(self, block: bytes) -> None:
        """Read a block of whole lines (ending in a newline) with a few C-level passes.

        Per line, Python does only a dict operation; everything else runs over the whole
        block or over its pieces in C. The checks, and why they are enough:

        * Over the block: it is ASCII, it starts with ``{"timestamp": "``, every newline
          but the last is followed by ``{"timestamp`` and preceded by ``}`` and the
          block ends in ``}`` + newline (one ``count`` of ``}\\n{"timestamp``), and it
          holds as many ``{`` as lines. So every line starts with ``{``, ends with
          ``}`` and has no other ``{``: it has no nested object, every key is a key of
          the top-level object (no blank line either: those go the slow way).
        * The block is split at ``", "trace_id": "`` (its quotes are real, and it is a
          key with a string value, by the reasoning of ``_scan_lines``). Piece k-1 then
          ends with the head of action line k and piece k starts with its trace id.
          Action line k is read unparsed when its head ends in ``, "event": "EV`` with
          EV a known event (``endswith``: the event key directly precedes the trace id
          key), holds ``, "action": "`` after the piece's last newline (the same line),
          and its trace id runs to a quote with no backslash, quote or newline in it.
          That is exactly what ``_scan_lines`` proves for its fast path, plus more.
        * Lines without that key (more than one newline in a piece) are read by
          ``_scan_lines`` (its own checks, ``json.loads`` for anything unusual); when
          none of them could be an action record (no ``"action"``, no ``\\u`` escape
          that could spell it) they cannot touch the actions' state and are read after
          the block's action lines (their own order kept); otherwise in place.
        * A block that fails any check goes through ``_scan_lines`` whole.

        Enters are kept as their piece index while the block is read and cut out as
        lines only if still open at its end (or when an anomalous end needs them); an
        enter of a trace id already open replaces it in place, as the slow path does.
        """
        if self._vector is not None:
            self._vector.stale = True  # this path may open ids the numpy path must know
        n = len(block) - len(block.replace(b"\n", b""))  # faster than count()
        if not (
            block.startswith(_HEAD)
            and block.endswith(_LINE_END)
            and block.isascii()
            and len(block) - len(block.replace(b"{", b"")) == n
            and block.count(_LINE_JOIN) == n - 1
        ):
            self._scan_lines(block.split(b"\n")[:-1])
            return
        pieces = block.split(_TID_SEP)
        m = len(pieces) - 1
        if m == 0:
            self._scan_lines(block.split(b"\n")[:-1])
            return
        heads = pieces[:-1]
        tails = pieces[1:]
        nl_at = list(map(bytes.rfind, heads, repeat(b"\n")))
        first_nl = list(map(bytes.find, tails, repeat(b"\n")))
        starts = nl_at.copy()
        starts[0] = max(starts[0], 0)
        if not (
            all(map(bytes.endswith, heads, repeat(_EVENT_ENDS)))
            and -1 not in list(map(bytes.find, heads, repeat(_ACTION_KEY), starts))
        ):
            self._scan_lines(block.split(b"\n")[:-1])
            return
        tids = _trace_ids(tails, m)
        if tids is None:
            self._scan_lines(block.split(b"\n")[:-1])
            return
        codes = list(map(_THIRD_LAST, heads))  # the event: its third last byte tells
        self.lines += m
        running = self.running
        orphans = self.orphans
        local: dict[bytes, int] = {}  # trace id -> piece index of its enter line (this block)
        local_pop, running_pop = local.pop, running.pop

        def line_of(k: int) -> bytes:
            """Action line k (1-based: its head ends piece k-1, its tail starts piece k)."""
            tail = pieces[k]
            return pieces[k - 1][nl_at[k - 1] + 1 :] + _TID_SEP + tail[: tail.find(b"\n")]

        def flush() -> None:
            for tid, k in local.items():
                running[tid] = line_of(k)
            local.clear()

        def middle(k: int) -> None:
            """The lines between action line k and k+1 (or before line 1 when k == 0)."""
            piece = pieces[k]
            if k == 0:
                rest = piece[: nl_at[0]]
            elif k == m:
                rest = piece[piece.find(b"\n") + 1 : -1]
            else:
                rest = piece[piece.find(b"\n") + 1 : piece.rfind(b"\n")]
            # A line that could be an action record touches ``running``: make it whole.
            if local and (b'"action"' in rest or b"\\u" in rest):
                flush()
            self._scan_lines(rest.split(b"\n"))

        def other_end(k: int, code: int, tid: bytes) -> None:
            name = _EVENT_OF_CODE[code]
            at = local.pop(tid, None)
            enter = line_of(at) if at is not None else running.pop(tid, None)
            line = line_of(k)
            self.finished[name][tid] = (line, enter)
            if enter is None and orphans is not None:
                orphans.append((tid, name, line))

        # Pieces after which other lines follow (more than one newline).
        last_nl = nl_at[1:]
        last_nl.append(len(pieces[m]) - 1)
        stops = list(compress(range(1, m + 1), map(ne, first_nl, last_nl)))
        rests = [pieces[k][first_nl[k - 1] + 1 : last_nl[k - 1]] for k in stops]
        if nl_at[0] >= 0:
            stops.insert(0, 0)
            rests.insert(0, pieces[0][: nl_at[0]])
        other = b"\n".join(rests)
        deferred = b'"action"' not in other and b"\\u" not in other
        if deferred:
            # None of the other lines is an action record: they touch no action state
            # and are read after the action lines (their own order is kept).
            stops = []
        elif stops and stops[0] == 0:
            middle(0)
            del stops[0]
        stops.append(m + 1)
        first = 1
        for stop in stops:
            end = min(stop, m)
            for k, code, tid in zip(
                range(first, end + 1), codes[first - 1 : end], tids[first - 1 : end], strict=True
            ):
                if code == 116:  # enter
                    if tid in running:
                        running[tid] = line_of(k)
                    else:
                        local[tid] = k
                elif code == 120:  # exit
                    if (
                        local_pop(tid, None) is None
                        and running_pop(tid, None) is None
                        and orphans is not None
                    ):
                        orphans.append((tid, "exit", b""))
                else:
                    other_end(k, code, tid)
            if stop <= m:
                middle(stop)
            first = stop + 1
        if deferred and other:
            self._scan_lines(other.split(b"\n"))
        flush()

    def _slow(self, line: bytes) -> None:
        """Parse one line fully; count it if it is not a valid record."""
        if not line.strip():
            self.problems.note("blank", "blank line")
            return
        obj = _loads(line)
        problem = validate_record(obj)
        if problem is not None:
            self.problems.note(problem, f"{problem.replace('_', ' ')}: {line[:60]!r}")
            return
        assert isinstance(obj, dict)
        if "action" not in obj:
            # The agent's own records are kept whatever the filter (run, pid, stacks).
            if obj["message"].startswith(MESSAGE_PREFIX):
                self.agent_records.append(obj)
            return
        if self.filter is not None and self.filter not in obj["message"].lower():
            return
        tid = obj["trace_id"].encode("utf-8", "surrogatepass")
        event = obj["event"]
        if event == "enter":
            self.running[tid] = line
        else:
            enter = self.running.pop(tid, None)
            if event != "exit":
                self.finished[event][tid] = (line, enter)
            if enter is None and self.orphans is not None:
                self.orphans.append((tid, event, line))

    def _filter_match(self, line: bytes) -> bool:
        """Whether the record's message contains the filter (case-insensitive).

        An ASCII line without ``\\u`` escapes holds a match of a filter free of quotes,
        backslashes, slashes and control characters verbatim, so a filter absent from
        the lowered raw line cannot match; anything else is decided on the message.
        """
        raw = self._filter_raw
        if raw is not None and line.isascii() and b"\\u" not in line:
            if raw not in line.lower():
                return False
        obj = _loads(line)
        needle = self.filter or ""
        return isinstance(obj, dict) and needle in str(obj.get("message", "")).lower()

    # -- results ----------------------------------------------------------------

    def anomalies(self) -> Anomalies:
        """The anomalies of what was fed so far (call ``close()`` first at end of input)."""
        running: list[ActionRecord] = []
        for line in self.running.values():
            record = self._parsed(line)
            if record is not None:
                running.append(record)
        buckets: dict[str, list[ActionRecord]] = {}
        ready, self._ready = self._ready, {}
        for name in BUCKETS:
            rows = []
            for tid, (end_line, enter_line) in self.finished[name].items():
                early = ready.pop((name, tid), None)  # freed as used: memory stays flat
                if early is not None and early[0] is end_line and early[1] is enter_line:
                    end, enter = early[2], early[3]
                else:
                    end, enter = _finished_row(end_line, enter_line)
                record = self._noted(end, end_line)
                if record is None:
                    continue
                if enter is not None and enter_line is not None:
                    start = self._noted(enter, enter_line)
                    if start is not None:
                        record.start_time = start[0]
                rows.append(record)
            buckets[name] = rows
        stacks = latest_stacks(self.agent_records)
        for record in running:
            found = stacks.get(record.trace_id)
            if found is not None:
                record.stack, record.where = found["stack"], found["where"]
        return Anomalies(
            running=culprit_first(running),
            cancelled=_sorted(buckets["cancel"]),
            errors=_sorted(buckets["error"]),
            timeouts=_sorted(buckets["timeout"]),
        )

    def _noted(self, checked: tuple[T | None, str | None], line: bytes) -> T | None:
        """The value of a check, or None with its problem counted."""
        value, problem = checked
        if value is None:
            self.problems.note(problem or "invalid", f"invalid: {line[:60]!r}")
        return value

    def parse_ahead(self) -> None:
        """Parse the anomalous end records found so far (and their enters) now, for
        ``anomalies()``: a reader process that finished its slice early does this
        while the others finish theirs. Problems are counted when the rows are used."""
        for name in BUCKETS:
            for tid, (end_line, enter_line) in self.finished[name].items():
                self._ready[(name, tid)] = (
                    end_line,
                    enter_line,
                    *_finished_row(end_line, enter_line),
                )

    def _parsed(self, line: bytes) -> ActionRecord | None:
        """``line`` as an anomaly row, or None (counted) if it is not a valid action record."""
        obj = self._noted(_checked_action(line), line)
        return None if obj is None else _action_record(obj)

    def open_actions(self) -> list[ActionRecord]:
        """Actions entered and not ended, oldest first."""
        rows = [r for r in map(self._parsed, self.running.values()) if r is not None]
        return sorted(rows, key=lambda r: r.start_time or 0)

    def process_records(self) -> list[dict[str, Any]]:
        """The ``[autotrace] process start`` records (run_id, pid, parent_pid, argv)."""
        return [r for r in self.agent_records if r.get("event_kind") == "process"]

    def report_problems(self, stream: IO[str] | None = None) -> None:
        """Write the one-line note about skipped lines (if any) to stderr."""
        summary = self.problems.summary(self.name)
        if summary:
            print(summary, file=stream or sys.stderr)


def culprit_first(rows: list[ActionRecord]) -> list[ActionRecord]:
    """Running actions that no other open action waits on first (oldest first), then parents
    (innermost, i.e. newest, first).

    An action with an open child waits on it: the child is nearer the culprit.
    """
    parents = {r.parent_id for r in rows if r.parent_id}

    def key(r: ActionRecord) -> tuple[bool, float]:
        waits = r.trace_id in parents
        start = r.start_time or 0.0
        return waits, -start if waits else start

    return sorted(rows, key=key)


def latest_stacks(agent_records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """trace_id -> {stack, where} of the latest watchdog record (stuck report or snapshot)."""
    out: dict[str, dict[str, Any]] = {}
    for rec in agent_records:
        kind = rec.get("event_kind")
        entries = [rec] if kind == "stack" else rec.get("actions") if kind == "snapshot" else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("trace_id"), str):
                stack = entry.get("stack")
                out[entry["trace_id"]] = {
                    "stack": stack if isinstance(stack, list) else [],
                    "where": str(entry.get("where") or ""),
                }
    return out


def _sorted(rows: list[ActionRecord]) -> list[ActionRecord]:
    return sorted(rows, key=ActionRecord.sort_key, reverse=True)


# -- files --------------------------------------------------------------------


def open_trace(path: Path) -> IO[bytes]:
    """Open a trace file for binary reading (``.gz`` transparently)."""
    try:
        if path.is_dir():
            raise TraceReadError(f"{path} is a directory, not a trace file")
        if path.name.endswith(".gz"):
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb")
    except FileNotFoundError as exc:
        raise TraceReadError(f"trace file {path} does not exist") from exc
    except PermissionError as exc:
        raise TraceReadError(f"cannot read {path}: permission denied") from exc
    except OSError as exc:
        raise TraceReadError(f"cannot read {path}: {exc.strerror or exc}") from exc


PARALLEL_MIN_BYTES = 8 << 20  # below this a second process does not pay for itself
PARENT_LESS = 0.05  # the share of a large file this process leaves to the others


def vector_module() -> Any:
    """``autotrace.read.npscan`` when numpy can be imported (and AUTOTRACE_NO_NUMPY is unset)."""
    if config.env_flag(config.ENV_NO_NUMPY):
        return None
    try:
        from autotrace.read import npscan
    except ImportError:
        return None
    return npscan


def scan_file(path: Path, filter: str | None = None, workers: int | None = None) -> TraceScanner:
    """Read a whole trace file; problems are counted in ``scanner.problems``.

    A large plain file is read by ``workers`` processes at once (default: one per
    available CPU, at most 2), each scanning a slice that starts at a line boundary,
    and in large numpy blocks when numpy is installed (see autotrace.read.npscan).
    """
    stream = open_trace(path)
    try:
        compressed = path.name.endswith(".gz")
        size = os.fstat(stream.fileno()).st_size
        # Imported here, before any fork, so that reader processes share it.
        vectorized = filter is None and size >= VECTOR_MIN_FILE and vector_module() is not None
        block = VECTOR_BLOCK if vectorized else CHUNK if compressed else BLOCK
        if workers is None:
            workers = min(2, _cpus())
        # Forking is safe only while this process has no other thread (a CLI process).
        if (
            workers > 1
            and not compressed
            and hasattr(os, "fork")
            and threading.active_count() == 1
            and size >= PARALLEL_MIN_BYTES
        ):
            return _scan_parallel(path, stream, size, filter, workers, vectorized, block)
        scanner = TraceScanner(path.name, filter, vectorized=vectorized)
        if vectorized and not compressed:
            _scan_range(scanner, stream, 0, size, block)
        else:
            scanner.feed_stream(stream, block)
    except (OSError, EOFError, zlib.error) as exc:
        raise TraceReadError(_describe(path, exc)) from exc
    finally:
        stream.close()
    scanner.close()
    scanner._vector = None  # its scratch arrays are not needed any more
    return scanner


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _scan_range(scanner: TraceScanner, stream: IO[bytes], start: int, end: int, block: int) -> None:
    stream.seek(start)
    if scanner._vector is not None:
        _scan_vectorized(scanner, stream, end - start)
        return
    left = end - start
    while left > 0:
        chunk = stream.read(min(block, left))
        if not chunk:
            break
        left -= len(chunk)
        scanner.feed(chunk)


class _Slices:
    """``text[s:e]`` as bytes, over a reused buffer (what the numpy path slices lines from)."""

    __slots__ = ("_view",)

    def __init__(self, view: memoryview) -> None:
        self._view = view

    def __getitem__(self, span: slice) -> bytes:
        return self._view[span].tobytes()


def _scan_vectorized(scanner: TraceScanner, stream: IO[bytes], length: int) -> None:
    """Read ``length`` bytes of a plain file into one reused buffer, whole lines at a time,
    and scan them in place with numpy (no per-block allocation: that costs page faults).

    A line longer than the buffer, and the last line when it has no newline, go through
    ``feed`` (its line buffer drops lines beyond MAX_LINE, and ``close`` sees the tail).
    """
    import numpy as np

    capacity = VECTOR_BLOCK
    buf = np.zeros(capacity + 64, np.uint8)  # words are read up to 40 bytes past a block
    view = memoryview(buf)  # type: ignore[arg-type]
    text = _Slices(view)
    filled = 0  # buf[:filled] starts at a line start
    left = length
    spilling = False  # inside a line longer than the buffer: feed() holds its head
    while True:
        want = min(capacity - filled, left)
        got = stream.readinto(view[filled : filled + want]) if want > 0 else 0  # type: ignore[attr-defined]
        left -= got
        at_end = got == 0
        if spilling:
            if at_end:
                return
            chunk = view[:got].tobytes()
            scanner.feed(chunk)
            if b"\n" in chunk:  # the long line ended: take the partial line after it back
                tail = scanner._buffer.rest()
                scanner.offset -= len(tail)
                buf[: len(tail)] = np.frombuffer(tail, np.uint8)
                filled, spilling = len(tail), False
            continue
        filled += got
        cut = _after_last_newline(buf, filled)
        if cut == 0:
            if filled and (at_end or filled == capacity):
                # The torn tail (close() reads it), or a line longer than the buffer.
                scanner.feed(view[:filled].tobytes())
                filled, spilling = 0, True
            if at_end:
                return
            continue
        scanner.offset += cut
        if not scanner._vector_scan(text, buf, 0, cut):
            scanner._scan_blocks(view[:cut].tobytes())
        buf[: filled - cut] = buf[cut:filled]
        filled -= cut


def _after_last_newline(buf: Any, filled: int) -> int:
    """The offset after the last newline in ``buf[:filled]`` (0: none)."""
    import numpy as np

    hi = filled
    while hi > 0:
        lo = max(0, hi - 8192)
        found = np.flatnonzero(buf[lo:hi] == 10)
        if found.size:
            return lo + int(found[-1]) + 1
        hi = lo
    return 0


def _scan_parallel(
    path: Path,
    stream: IO[bytes],
    size: int,
    filter: str | None,
    workers: int,
    vectorized: bool,
    block: int,
) -> TraceScanner:
    """Scan slices of ``path`` in forked children and this process, then join them in order.

    Joining is exact for unique trace ids: a slice's end records that met no enter
    end the actions the slices before it left open (and take their start times).
    """
    import pickle

    # This process takes a little less: it parses its anomalies while the others finish.
    first = 1 / workers - PARENT_LESS
    share = [first] + [(1 - first) / (workers - 1)] * (workers - 1)
    bounds = [0]
    for k in range(1, workers):
        stream.seek(int(size * sum(share[:k])))
        stream.readline()  # the next slice starts at a line start
        bounds.append(max(bounds[-1], min(stream.tell(), size)))
    bounds.append(size)

    children: list[tuple[int, int]] = []  # (pid, read end of its pipe)
    for k in range(1, workers):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: scan slice k, send the state, leave without cleanup
            code = 0
            try:
                os.close(read_fd)
                part = TraceScanner(path.name, filter, vectorized=vectorized)
                part.orphans = []
                # Its own open file: a descriptor shared across fork shares its offset.
                with open(path, "rb") as own:
                    _scan_range(part, own, bounds[k], bounds[k + 1], block)
                if k == workers - 1:
                    part.close()
                state = (
                    part.running,
                    part.finished,
                    part.agent_records,
                    part.problems,
                    part.lines,
                    part.orphans,
                    part.vector_blocks,
                )
                payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_fd, "wb") as out:
                    out.write(payload)
            except BaseException:
                code = 1
            os._exit(code)
        os.close(write_fd)
        children.append((pid, read_fd))

    scanner = TraceScanner(path.name, filter, vectorized=vectorized)
    _scan_range(scanner, stream, bounds[0], bounds[1], block)
    scanner.parse_ahead()
    for pid, read_fd in children:
        with os.fdopen(read_fd, "rb") as pipe:
            payload = pipe.read()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0 or not payload:
            raise TraceReadError(f"cannot read {path}: a reader process failed")
        running, finished, agent_records, problems, lines, orphans, vector_blocks = pickle.loads(
            payload
        )
        _join(scanner, running, finished, agent_records, problems, lines, orphans)
        scanner.vector_blocks += vector_blocks
    scanner.offset = size
    scanner._closed = True
    scanner._vector = None  # its scratch arrays are not needed any more
    return scanner


def _join(
    scanner: TraceScanner,
    running: dict[bytes, bytes],
    finished: dict[str, dict[bytes, tuple[bytes, bytes | None]]],
    agent_records: list[dict[str, Any]],
    problems: ReadProblems,
    lines: int,
    orphans: list[tuple[bytes, str, bytes]],
) -> None:
    """Append a later slice's state to ``scanner`` (as if it had read the slice itself)."""
    for tid, event, line in orphans:
        enter = scanner.running.pop(tid, None)
        if enter is not None and event != "exit":
            entry = finished[event].get(tid)
            if entry is not None and entry[0] is line:  # not replaced by a later end
                finished[event][tid] = (line, enter)
    scanner.running.update(running)
    for name in BUCKETS:
        scanner.finished[name].update(finished[name])
    scanner.agent_records.extend(agent_records)
    mine = scanner.problems
    for kind in ("blank", "garbage", "invalid", "unknown_event", "torn"):
        setattr(mine, kind, getattr(mine, kind) + getattr(problems, kind))
    mine.first_problem = mine.first_problem or problems.first_problem
    scanner.lines += lines


class _EndedEarly(Exception):
    """A compressed stream cut short (by a kill or a full disk): a torn tail, not a
    read error. What was decompressed before the cut has been yielded."""


def _chunks(stream: IO[bytes], size: int) -> Iterator[bytes]:
    """What ``stream`` (binary) yields, ``size`` bytes at a time; a gzip stream that
    ends early raises ``_EndedEarly`` after its last good chunk."""
    # GzipFile.read() drops what it decompressed when the stream breaks; read1 doesn't.
    compressed, read = (
        (True, stream.read1) if isinstance(stream, gzip.GzipFile) else (False, stream.read)
    )
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
    if isinstance(exc, EOFError):
        return f"cannot read {path}: compressed file ended early (truncated gzip)"
    if isinstance(exc, gzip.BadGzipFile):
        return f"cannot read {path}: not a gzip file"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read {path}: {exc.strerror}"
    return f"cannot read {path}: {exc}"


def iter_records(
    path: Path, filter: str | None = None, problems: ReadProblems | None = None
) -> Iterator[dict[str, Any]]:
    """Every valid record of a file, in order (for ``dump``); problems are counted."""
    problems = problems if problems is not None else ReadProblems()
    needle = filter.lower() if filter else None
    with open_trace(path) as stream:
        buffer = LineBuffer(problems)
        try:
            for chunk in _chunks(stream, CHUNK):
                for line in buffer.split(chunk):
                    obj = _checked(line, problems, last=False)
                    if obj is not None and (needle is None or needle in obj["message"].lower()):
                        yield obj
        except _EndedEarly:
            problems.note("torn", "compressed file ended early (truncated gzip)")
        except (OSError, EOFError, zlib.error) as exc:
            raise TraceReadError(_describe(path, exc)) from exc
        pending = buffer.rest()
        if pending.strip():
            obj = _checked(pending, problems, last=True)
            if obj is not None and (needle is None or needle in obj["message"].lower()):
                yield obj


def _checked(line: bytes, problems: ReadProblems, *, last: bool) -> dict[str, Any] | None:
    if not line.strip():
        problems.note("blank", "blank line")
        return None
    obj = _loads(line)
    problem = validate_record(obj)
    if problem is not None:
        kind = "torn" if last and problem == "garbage" else problem
        problems.note(kind, f"{kind.replace('_', ' ')}: {line[:60]!r}")
        return None
    return obj  # type: ignore[no-any-return]


# -- the trace directory ------------------------------------------------------


@dataclass
class TraceFileInfo:
    """A trace file in a directory listing, with what its first record says."""

    path: Path
    mtime: float
    size: int
    pid: int | None = None
    run_id: str | None = None
    parent_pid: int | None = None
    argv: list[str] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "mtime": self.mtime,
            "size": self.size,
            "pid": self.pid,
            "run_id": self.run_id,
            "parent_pid": self.parent_pid,
            "argv": self.argv,
        }


_PID_NAME = re.compile(r"^trace-(\d+)\.log(?:\.gz)?$")


def list_trace_files(directory: Path) -> list[TraceFileInfo]:
    """Trace files in ``directory``, newest first (as inspect lists them: every file)."""
    files: list[TraceFileInfo] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    except NotADirectoryError as exc:
        raise TraceReadError(f"{directory} is not a directory") from exc
    except PermissionError as exc:
        raise TraceReadError(f"cannot list {directory}: permission denied") from exc
    for entry in entries:
        try:
            if not entry.is_file():
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        match = _PID_NAME.match(entry.name)
        files.append(
            TraceFileInfo(
                path=Path(entry.path),
                mtime=st.st_mtime,
                size=st.st_size,
                pid=int(match.group(1)) if match else None,
            )
        )
    files.sort(key=lambda f: f.mtime, reverse=True)
    return files


def read_header(info: TraceFileInfo) -> TraceFileInfo:
    """Fill run id, parent and command line from the file's process record, if it has one."""
    try:
        with open_trace(info.path) as stream:
            first = stream.readline(1 << 16)
    except (TraceReadError, OSError, EOFError, zlib.error):
        return info
    obj = _loads(first)
    if isinstance(obj, dict) and obj.get("event_kind") == "process":
        pid = obj.get("pid")
        info.pid = pid if isinstance(pid, int) else info.pid
        info.run_id = obj.get("run_id") if isinstance(obj.get("run_id"), str) else None
        parent = obj.get("parent_pid")
        info.parent_pid = parent if isinstance(parent, int) else None
        argv = obj.get("argv")
        info.argv = [str(a) for a in argv] if isinstance(argv, list) else None
    return info


def resolve_trace_file(file: str | None, directory: Path) -> Path:
    """FILE as the CLI takes it: None -> newest in ``directory``; a bare name -> in it."""
    if file is None:
        files = list_trace_files(directory)
        if not files:
            raise TraceReadError(f"no trace files in {directory}")
        return files[0].path
    path = Path(file).expanduser()
    if not path.is_absolute() and not path.exists() and (directory / file).exists():
        path = directory / file
    if not path.exists():
        raise TraceReadError(f"trace file {file} does not exist (looked in . and {directory})")
    if path.is_dir():
        raise TraceReadError(f"{path} is a directory, not a trace file")
    return path
