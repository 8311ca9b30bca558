"""Following the trace files of a run: new whole records from persisted offsets.

A file is read from where the last successful export stopped. The follower keeps a
file open while its process lives, so a file that rotation deletes or inspect replaces
by its ``.gz`` at exit is still read to its end; a file first seen compressed is read
through gzip, skipping what was exported before. The bytes go to the read side's
``TraceReader`` (the reader of every verb), fed from the saved offset; its records reach
the exporter through its ``on_record`` hook. Offsets (bytes of the uncompressed
text, always at a line boundary) are saved with the exporter's state in a small 0600
file in the trace directory, so a restarted exporter resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from autotrace.export.spans import ProcessInfo
from autotrace.read.files import (
    HEADER_SCAN,
    TraceReadError,
    list_trace_files,
    open_trace,
    pid_from_name,
    read_header,
)
from autotrace.read.reader import ReadProblems, Record, TraceReader
from autotrace.read.run import process_alive

__all__ = ["FollowedFile", "RunFollower", "StateFile", "process_alive"]

CHUNK = 1 << 20  # bytes read from one file per turn: bounds the records (and spans) in memory
CHILD_WAIT = 3.0  # seconds a child's file waits for the action that spawned it to be read


def first_timestamp(path: Path) -> str:
    """The ``timestamp`` of a file's first record ("" when it has none)."""
    try:
        with open_trace(path) as stream:
            value = json.loads(stream.readline(1 << 16)).get("timestamp")
    except (TraceReadError, OSError, EOFError, zlib.error, ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


class FollowedFile:
    """One trace file, read from ``offset`` on by a ``TraceReader`` (whole records only)."""

    def __init__(
        self,
        path: Path,
        run_id: str,
        offset: int = 0,
        done: bool = False,
        was_compressed: bool = False,
    ) -> None:
        self.plain = path.with_name(path.name[: -len(".gz")]) if path.name.endswith(".gz") else path
        self.key = str(self.plain)
        self._records: list[Record] = []
        self.reader = TraceReader(self.plain.name, on_record=self._records.append, offset=offset)
        try:  # read to the end and its process gone (unless it grew since)
            self.done = done and self.plain.stat().st_size <= offset
        except OSError:  # compressed since (inspect does at exit): look again unless read so
            self.done = done and was_compressed
        self.first_seen = time.time()
        self._stream: IO[bytes] | None = None
        self._compressed = False
        header = read_header(path)
        pid = header.pid if header is not None else None
        self.started = header.started if header is not None else None
        self.info = ProcessInfo(
            key=self.key,
            pid=pid if pid is not None else pid_from_name(self.plain.name),
            run_id=(header.run_id if header is not None else None) or run_id,
            parent_pid=header.parent_pid if header is not None else None,
            argv=list(header.argv) if header is not None else [],
        )

    @property
    def offset(self) -> int:
        """Bytes of whole lines read (of the uncompressed text): where to resume."""
        return self.reader.line_offset

    @property
    def problems(self) -> ReadProblems:
        """Lines that were not valid records."""
        return self.reader.problems

    @property
    def compressed(self) -> bool:
        """Whether the file is read through gzip (inspect compressed it)."""
        return self._compressed

    def alive(self) -> bool:
        """Whether the file's process may still write to it."""
        gz = self.plain.with_name(self.plain.name + ".gz")
        if self._compressed or (not self.plain.exists() and gz.exists()):
            return False  # inspect compresses the file at exit (and removes the plain one)
        return self.info.pid is not None and process_alive(self.info.pid, self.started)

    def _open(self) -> IO[bytes] | None:
        if self._stream is not None:
            return self._stream
        try:
            stream = open_trace(self.plain)  # kept open while followed: read to its end
        except TraceReadError:
            try:
                stream = open_trace(self.plain.with_name(self.plain.name + ".gz"))
            except TraceReadError:
                return None
            self._compressed = True
            skip = self.reader.offset  # no seeking in gzip: what was read is skipped
            try:
                while skip > 0:
                    got = len(stream.read(min(skip, CHUNK)))
                    if not got:
                        break
                    skip -= got
            except (OSError, EOFError, zlib.error):
                stream.close()
                return None
        self._stream = stream
        return stream

    def close(self) -> None:
        """Close the file (it is opened again by the next read)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def read(self, limit: int = CHUNK) -> list[Record] | None:
        """The whole records appended since the last read (None: nothing new)."""
        stream = self._open()
        if stream is None:
            return None
        fresh = b""
        try:
            if not self._compressed:
                stream.seek(self.reader.offset)
            fresh = stream.read(limit)
        except (OSError, EOFError, zlib.error):
            self.reader.problems.note("torn", "compressed file ended early")
        if not fresh:
            return None
        self.reader.feed(fresh)
        return self._taken()

    def finish(self) -> list[Record]:
        """The file's process is gone and the file read to its end: a last line without
        its newline is read if whole (counted torn if not)."""
        self.reader.close()
        return self._taken()

    def _taken(self) -> list[Record]:
        out = self._records[:]
        self._records.clear()
        return out


class RunFollower:
    """The files of one run (or the files named), each followed from its saved offset."""

    def __init__(
        self,
        directory: Path | None,
        run_id: str,
        paths: Iterable[Path] = (),
        offsets: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.directory = directory
        self.run_id = run_id
        self.files: dict[str, FollowedFile] = {}
        self._saved = offsets or {}
        self._seen: set[Path] = set()
        self._checked: dict[Path, int] = {}  # file -> its size when it had no process record
        self._named = list(paths)

    def _add(self, path: Path) -> FollowedFile:
        saved = self._saved.get(str(path.with_name(path.name.removesuffix(".gz"))), {})
        followed = FollowedFile(
            path,
            self.run_id,
            int(saved.get("offset", 0)),
            bool(saved.get("done", False)),
            bool(saved.get("compressed", False)),
        )
        self.files[followed.key] = followed
        return followed

    def discover(self) -> list[FollowedFile]:
        """The files that appeared since the last call (for a run: those with its run id)."""
        new = []
        for path in self._named:
            if path not in self._seen:
                self._seen.add(path)
                new.append(self._add(path))
        if self.directory is None or self._named:
            return new
        for listed in list_trace_files(self.directory):
            path = listed.path
            if path in self._seen or pid_from_name(path.name) is None:
                continue
            key = str(path.with_name(path.name.removesuffix(".gz")))
            if key in self.files:
                self._seen.add(path)
                continue
            size = listed.size
            if self._checked.get(path) == size:
                continue  # no process record when last looked, and not grown since
            header = read_header(path)
            if header is None:
                # Not (yet) ours: the agent may write its record after inspect's first lines.
                if size >= HEADER_SCAN:
                    self._seen.add(path)  # it never will have one where we look
                self._checked[path] = size
                continue
            self._seen.add(path)
            if header.run_id == self.run_id:
                new.append(self._add(path))
        return new

    def offsets(self) -> dict[str, dict[str, Any]]:
        state = dict(self._saved)
        state.update(
            {
                k: {"offset": f.offset, "done": f.done, "compressed": f.compressed}
                for k, f in self.files.items()
            }
        )
        return state

    def ordered(self, spawned: Any) -> list[FollowedFile]:
        """Files to read this turn: a parent process before its children, and a child only
        once the action that spawned it is known (``spawned(info)``), or after CHILD_WAIT."""
        by_pid = {f.info.pid: f for f in self.files.values() if f.info.pid is not None}
        now = time.time()

        def depth(f: FollowedFile) -> int:
            seen, d = set(), 0
            while f.info.parent_pid in by_pid and f.info.pid not in seen:
                seen.add(f.info.pid)
                f = by_pid[f.info.parent_pid]
                d += 1
            return d

        out = []
        for f in sorted(self.files.values(), key=depth):
            if f.done:
                continue
            parent = by_pid.get(f.info.parent_pid) if f.info.parent_pid is not None else None
            if (
                f.offset == 0
                and parent is not None
                and not parent.done
                and spawned(f.info) is None
                and now - f.first_seen < CHILD_WAIT
            ):
                continue
            out.append(f)
        return out


_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str) -> str:
    """``text`` usable in a file name (a run id may come from anywhere)."""
    return _SAFE.sub("_", text)[:80]


class StateFile:
    """The exporter's saved state (offsets, open actions), one 0600 JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def name_for(run_key: str, endpoint_key: str) -> str:
        return f"otlp-state-{safe_name(run_key)}-{endpoint_key}.json"

    def load(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp, self.path)
