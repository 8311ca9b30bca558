"""Trace files: opening one (plain or gzip, regular files only), the process header, listings.

The one place that knows how a trace file is found and opened. Every error is a
``TraceReadError`` whose message is one line for the CLI to print.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

HEADER_LIMIT = 1 << 20  # the process header is the first line; a longer one is not a header
HEADER_SCAN = 256 << 10  # bytes searched for it when inspect wrote the first lines


class TraceReadError(Exception):
    """A trace file (or directory) that cannot be read at all; the message is one line."""


@dataclass(frozen=True)
class Header:
    """What a file's ``[autotrace] process start`` record says about its process."""

    pid: int | None
    run_id: str | None
    parent_pid: int | None
    argv: tuple[str, ...]
    started: float | None  # epoch seconds of the record

    @classmethod
    def from_record(cls, obj: Any) -> Header | None:
        """The header a decoded first record carries, or None when it is not one."""
        if not isinstance(obj, dict) or obj.get("event_kind") != "process":
            return None
        pid, run_id, parent = obj.get("pid"), obj.get("run_id"), obj.get("parent_pid")
        argv = obj.get("argv")
        return cls(
            pid=pid if type(pid) is int else None,
            run_id=run_id if isinstance(run_id, str) else None,
            parent_pid=parent if type(parent) is int else None,
            argv=tuple(str(a) for a in argv) if isinstance(argv, list) else (),
            started=epoch(obj.get("timestamp")),
        )


@dataclass
class TraceFile:
    """A file of a trace directory listing (newest first), with its header when it has one."""

    path: Path
    mtime: float
    size: int
    header: Header | None = field(default=None)

    @property
    def pid(self) -> int | None:
        """The process id: the header's, else the one in the file name."""
        if self.header is not None and self.header.pid is not None:
            return self.header.pid
        return pid_from_name(self.path.name)

    def as_json(self) -> dict[str, Any]:
        """The row of ``inspect-trace list --json``."""
        h = self.header
        return {
            "file": str(self.path),
            "mtime": self.mtime,
            "size": self.size,
            "pid": self.pid,
            "run_id": h.run_id if h else None,
            "parent_pid": h.parent_pid if h else None,
            "argv": list(h.argv) if h else None,
        }


def pid_from_name(name: str) -> int | None:
    """The pid in ``trace-<pid>.log`` / ``trace-<pid>.log.gz`` (None for other names)."""
    if not name.startswith("trace-"):
        return None
    digits, dot, rest = name[len("trace-") :].partition(".")
    if dot and rest in ("log", "log.gz") and digits.isdigit() and digits.isascii():
        return int(digits)
    return None


def epoch(timestamp: Any) -> float | None:
    """An ISO 8601 timestamp as epoch seconds (None when it is not one)."""
    if not isinstance(timestamp, str):
        return None
    try:
        return datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        return None


def open_trace(path: Path) -> IO[bytes]:
    """Open a trace file for binary reading (``.gz`` transparently).

    Only a regular file is read: a FIFO, a device (``/dev/zero``) or a directory is
    refused without blocking on it or reading it forever.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below (on
        # the opened file: a FIFO swapped in after a stat cannot block). O_NOCTTY: a
        # terminal device named as a trace never becomes our controlling terminal.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise TraceReadError(f"trace file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise TraceReadError(f"{path} is a directory, not a trace file") from exc
    except PermissionError as exc:
        raise TraceReadError(f"cannot read {path}: permission denied") from exc
    except OSError as exc:
        raise TraceReadError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise TraceReadError(f"{path} is a directory, not a trace file")
        if not stat.S_ISREG(mode):
            raise TraceReadError(f"{path} is not a regular file ({_kind(mode)})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        stream = open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    if path.name.endswith(".gz"):
        # Closing the GzipFile leaves ``stream`` open: close both through one wrapper.
        return _Gzip(stream)  # type: ignore[return-value]
    return stream


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    """What a file that is not a regular file is, for the one-line error."""
    return next((name for test, name in _KINDS if test(mode)), "of an unknown kind")


class _Gzip(gzip.GzipFile):
    """A GzipFile that owns (and closes) the file it reads."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def read_header(path: Path) -> Header | None:
    """The process header of ``path``, or None (no header, unreadable, not a file).

    It is the first line of a file the agent opened; when inspect's own handler wrote to
    the file first, it is the first process record within ``HEADER_SCAN`` bytes.
    """
    try:
        with open_trace(path) as stream:
            first = stream.readline(HEADER_LIMIT)
            header = _header_of(first)
            if header is not None or not first.endswith(b"\n"):
                return header
            head = stream.read(HEADER_SCAN)
    except (TraceReadError, OSError, EOFError, zlib.error):
        return None
    for line in head.split(b"\n"):
        if b'"process"' in line:
            header = _header_of(line)
            if header is not None:
                return header
    return None


def _header_of(line: bytes) -> Header | None:
    try:
        return Header.from_record(json.loads(line))
    except (ValueError, RecursionError):
        return None


def list_trace_files(directory: Path, *, headers: bool = False) -> list[TraceFile]:
    """Regular files in ``directory``, newest first (as inspect lists them: every file).

    With ``headers``, each file's process header is read too. A missing directory is an
    empty listing; a path that is not a directory is a ``TraceReadError``.
    """
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    except NotADirectoryError as exc:
        raise TraceReadError(f"{directory} is not a directory") from exc
    except PermissionError as exc:
        raise TraceReadError(f"cannot list {directory}: permission denied") from exc
    except OSError as exc:
        raise TraceReadError(f"cannot list {directory}: {exc.strerror or exc}") from exc
    files: list[TraceFile] = []
    for entry in entries:
        try:
            if not entry.is_file():
                continue
            st = entry.stat()
        except OSError:
            continue
        files.append(TraceFile(Path(entry.path), st.st_mtime, st.st_size))
    files.sort(key=lambda f: f.mtime, reverse=True)
    if headers:
        for f in files:
            f.header = read_header(f.path)
    return files


def resolve_trace_file(file: str | None, directory: Path) -> Path:
    """FILE as the CLI takes it: None -> the newest in ``directory``; a bare name -> in it.

    The file is opened once (without blocking) to check it is a regular file it may read.
    """
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
    open_trace(path).close()  # refused now (a FIFO, a device, no permission), not mid-output
    return path
