"""The trace writer: one os.write() per line on an O_APPEND descriptor.

A line is a single write() call on a file opened with O_APPEND, so the kernel
appends it whole: lines of threads and processes never interleave, and a kill -9
can at most cut the last line short. The file is opened lazily on the first
record, starts with a process record, and is reopened (with the open actions
written again) when another process rotates it away. Any OSError turns tracing
off with one warning: the program always goes on.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from autotrace import config
from autotrace.runtime import forks, guard, process_info

_RECHECK_SECONDS = 1.0  # how often we look whether our file was deleted under us

# The writer's states. A line goes: CLOSED -> opened, then written (OPEN); in a forked
# child the file is the parent's, so OPEN with another pid counts as CLOSED.
CLOSED = "closed"  # no file yet (or closed by a test): the next line opens it
OPEN = "open"  # plain appends to trace-<pid>.log
GZIP = "gzip"  # the file was gzipped away (inspect at exit): each line a gzip member
HOLDING = "holding"  # the file is being moved by someone else: lines wait in memory
DISABLED = "disabled"  # tracing is off in this process, after one warning


class TraceWriter:
    """Appends complete lines to this process's trace file.

    Its behaviour follows ``state`` (one of the constants above), changed only by its
    own methods: ``hold``/``release`` around someone else moving the file,
    ``continue_in_gzip``, ``after_fork_in_child``, ``disable`` and ``close``.
    """

    def __init__(self) -> None:
        self.path: str | None = None
        self.state = CLOSED
        self.disabled = False  # state is DISABLED (read on every action: a plain attribute)
        self._fd = -1
        self._pid = -1  # the pid that opened _fd (a forked child must not write to it)
        self._checked_at = 0.0
        self._lock = threading.Lock()  # only around open/reopen, never around write()
        self._warned_reopen = False
        self._held: list[bytes] = []
        self._state_after_hold = CLOSED
        # Called after (re)opening with a function that writes a line to the new file
        # (the process header, the open actions), before any other line reaches it.
        self.on_open: list[Callable[[Callable[[bytes], None]], None]] = []

    def write(self, line: bytes) -> None:
        """Append one complete line; never raises."""
        state = self.state
        if state is OPEN and self._pid == forks.pid:
            self._append(self._fd, line)
        elif state is CLOSED or state is OPEN:  # not open yet, or opened before a fork
            fd = self._open()
            if fd >= 0:
                self._append(fd, line)
        elif state is GZIP:
            self._append_gzip_member(line)
        elif state is HOLDING:
            self._held.append(line)

    def _append(self, fd: int, line: bytes) -> None:
        try:
            now = time.monotonic()
            if now - self._checked_at > _RECHECK_SECONDS:
                self._checked_at = now
                if self._moved_away(fd):  # deleted or renamed (rotated) by someone else
                    fd = self._reopen()
                    if fd < 0:
                        return
            written = os.write(fd, line)
            if written != len(line):  # short write: only on a full disk
                raise OSError(28, "No space left on device (short write)")
        except OSError as exc:
            self.disable(f"cannot write {self.path}: {exc.strerror or exc}")

    def _append_gzip_member(self, line: bytes) -> None:
        if self._pid != forks.pid:
            return
        try:
            import gzip

            os.write(self._fd, gzip.compress(line, mtime=0))
        except OSError as exc:
            self.disable(f"cannot write {self.path}: {exc.strerror or exc}")

    def _moved_away(self, fd: int) -> bool:
        """Whether our file is no longer the one at our path (unlinked, or renamed away)."""
        st = os.fstat(fd)
        if st.st_nlink == 0:
            return True
        if self.path is None:
            return False
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (at_path.st_ino, at_path.st_dev) != (st.st_ino, st.st_dev)

    def ensure_open(self) -> str | None:
        """Open the file now if it is not open (header first); its path, or None if off.

        For another writer that is about to append to the same file (inspect's handler):
        our process header is then its first line.
        """
        if self.disabled or self._open() < 0:
            return None
        return self.path

    def _open(self) -> int:
        with self._lock:
            if self.state is not CLOSED and self.state is not OPEN:
                return -1
            if self.state is OPEN and self._pid == forks.pid:
                return self._fd
            return self._open_locked()

    def _open_locked(self) -> int:
        pid = forks.pid
        try:
            path = config.trace_file_for(pid)
            directory = os.path.dirname(path) or os.curdir
            ensure_directory(directory)
            if not config.explicit_trace_file():
                rotate(directory, config.keep_files() - 1)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self.disable(f"cannot open trace file: {exc}")
            return -1
        except Exception as exc:  # config trouble: never break the program
            self.disable(f"cannot open trace file: {exc!r}")
            return -1
        # write() uses the descriptor without the lock once _pid matches: publish the
        # pid only after the header and the repeated enters, or a thread could write
        # its enter directly and have it repeated by the callback too.
        self.path, self._fd, self._pid, self.state = path, fd, -1, OPEN
        self._checked_at = time.monotonic()

        def write_first(line: bytes) -> None:
            os.write(fd, line)

        for callback in list(self.on_open):
            guard.call(callback, write_first)
        self._pid = pid
        return fd

    def _reopen(self) -> int:
        with self._lock:
            self._close_fd()
            gone = self.path
            fd = self._open_locked()
            if fd >= 0 and not self._warned_reopen:
                self._warned_reopen = True
                guard.warn(
                    f"trace file {gone} was removed or renamed by another process: "
                    f"writing {self.path} (open actions written again)"
                )
            return fd

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def hold(self) -> None:
        """Keep lines in memory from now on (another party is about to move the file)."""
        with self._lock:
            if self.state is DISABLED or self.state is HOLDING:
                return
            self._state_after_hold, self.state = self.state, HOLDING

    def release(self) -> None:
        """Write the held lines, in order, and go on as before ``hold`` (or as set since)."""
        with self._lock:
            if self.state is not HOLDING:
                return
            self.state = self._state_after_hold
            held, self._held = self._held, []
        for line in held:
            self.write(line)

    def continue_in_gzip(self, gz_path: str) -> None:
        """Our file was gzipped to ``gz_path`` and deleted (inspect does so at exit).

        Later lines are appended to ``gz_path``, each as its own gzip member: gzip
        readers (inspect's and ours) read concatenated members as one stream.
        """
        with self._lock:
            if self.state is DISABLED:
                return
            self._close_fd()
            try:
                fd = os.open(gz_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                self._disable_locked(f"cannot append to {gz_path}: {exc.strerror or exc}")
                return
            self.path, self._fd, self._pid = gz_path, fd, forks.pid
            if self.state is HOLDING:
                self._state_after_hold = GZIP
            else:
                self.state = GZIP

    def after_fork_in_child(self) -> None:
        """The child of a fork writes its own file: forget the parent's descriptor."""
        self._lock = threading.Lock()
        self._close_fd()
        self._pid, self.path, self._held = -1, None, []
        if self.state is not DISABLED:
            self.state = CLOSED

    def disable(self, reason: str) -> None:
        """Turn tracing off for this process with one warning on stderr."""
        self._disable_locked(reason)  # a plain assignment: safe without the lock

    def _disable_locked(self, reason: str) -> None:
        if self.state is DISABLED:
            return
        self.state, self.disabled = DISABLED, True
        guard.warn(f"tracing disabled: {reason}")

    def close(self) -> None:
        """Close the file and start over, enabled (tests); the next record opens a file."""
        with self._lock:
            self._close_fd()
            self._pid, self._held = -1, []
            self.state, self.disabled = CLOSED, False


def ensure_directory(directory: str) -> None:
    """Create the trace directory 0700 if missing; an existing one's mode is left alone."""
    config.make_private_dirs(directory)


def rotate(directory: str, keep: int) -> None:
    """Delete the oldest trace files beyond ``keep``; files of live processes stay.

    Many processes may rotate at once: a file that vanished under us is fine.
    """
    try:
        entries = []
        with os.scandir(directory) as it:
            for entry in it:
                name = entry.name
                if not (
                    name.startswith("trace-")
                    and (name.endswith(".log") or name.endswith(".log.gz"))
                ):
                    continue
                try:
                    entries.append((entry.stat(follow_symlinks=False).st_mtime, name))
                except OSError:
                    continue
        if len(entries) <= keep:
            return
        entries.sort(reverse=True)
        for _mtime, name in entries[keep:]:
            pid_text = name[len("trace-") :].split(".", 1)[0]
            if (
                name.endswith(".log")
                and pid_text.isdigit()
                and process_info.pid_alive(int(pid_text))
            ):
                continue
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
    except OSError:
        pass
