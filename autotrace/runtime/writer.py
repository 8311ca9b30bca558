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
from autotrace.runtime import guard

_RECHECK_SECONDS = 1.0  # how often we look whether our file was deleted under us

# This process's pid, kept current by a fork hook: os.getpid() is a system call, and
# write() compares it on every line.
_process_pid = os.getpid()


def _update_pid_after_fork() -> None:
    global _process_pid
    _process_pid = os.getpid()


os.register_at_fork(after_in_child=_update_pid_after_fork)


class TraceWriter:
    """Appends complete lines to this process's trace file."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.disabled = False
        self._fd = -1
        self._pid = -1
        self._checked_at = 0.0
        self._lock = threading.Lock()  # only around open/reopen, never around write()
        self._warned_reopen = False
        # Called with the writer after (re)opening, to write the header and open actions.
        self.on_open: list[Callable[[TraceWriter], None]] = []

    def write(self, line: bytes) -> None:
        """Append one complete line; never raises."""
        if self.disabled:
            return
        fd = self._fd
        if fd < 0 or self._pid != _process_pid:
            fd = self._open()
            if fd < 0:
                return
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

    def write_raw(self, fd: int, line: bytes) -> None:
        """Write to an already opened descriptor (used by on_open callbacks)."""
        os.write(fd, line)

    def _open(self) -> int:
        with self._lock:
            if self.disabled:
                return -1
            if self._fd >= 0 and self._pid == os.getpid():
                return self._fd
            return self._open_locked()

    def _open_locked(self) -> int:
        pid = os.getpid()
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
        except Exception as exc:  # config or platformdirs trouble: never break the program
            self.disable(f"cannot open trace file: {exc!r}")
            return -1
        # write() uses the descriptor without the lock once _pid matches: publish the
        # pid only after the header and the repeated enters, or a thread could write
        # its enter directly and have it repeated by the callback too.
        self.path, self._fd, self._pid = path, fd, -1
        self._checked_at = time.monotonic()
        for callback in list(self.on_open):
            try:
                callback(self)
            except Exception:
                pass
        self._pid = pid
        return fd

    def _reopen(self) -> int:
        with self._lock:
            old = self._fd
            self._fd = -1
            if old >= 0:
                try:
                    os.close(old)
                except OSError:
                    pass
            gone = self.path
            fd = self._open_locked()
            if fd >= 0 and not self._warned_reopen:
                self._warned_reopen = True
                guard.warn(
                    f"trace file {gone} was removed or renamed by another process: "
                    f"writing {self.path} (open actions written again)"
                )
            return fd

    def continue_in_gzip(self, gz_path: str) -> None:
        """Our file was gzipped to ``gz_path`` and deleted (inspect does so at exit).

        Later lines are appended to ``gz_path``, each as its own gzip member: gzip
        readers (inspect's and ours) read concatenated members as one stream.
        """
        with self._lock:
            if self._fd >= 0:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
            self._fd = -1
            try:
                fd = os.open(gz_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                self.disable(f"cannot append to {gz_path}: {exc.strerror or exc}")
                return
            self.path, self._fd, self._pid = gz_path, fd, os.getpid()
            self.write = self._write_gzip_member  # type: ignore[method-assign]

    def _write_gzip_member(self, line: bytes) -> None:
        if self.disabled or self._pid != os.getpid():
            return
        try:
            import gzip

            os.write(self._fd, gzip.compress(line, mtime=0))
        except OSError as exc:
            self.disable(f"cannot write {self.path}: {exc.strerror or exc}")

    def after_fork_in_child(self) -> None:
        """The child of a fork writes its own file: forget the parent's descriptor."""
        self.__dict__.pop("write", None)
        self._lock = threading.Lock()
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd, self._pid, self.path = -1, -1, None

    def disable(self, reason: str) -> None:
        """Turn tracing off for this process with one warning on stderr."""
        if self.disabled:
            return
        self.disabled = True
        guard.warn(f"tracing disabled: {reason}")

    def close(self) -> None:
        """Close the file (tests); the next record opens it again."""
        self.__dict__.pop("write", None)  # back from continue_in_gzip
        with self._lock:
            if self._fd >= 0:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
            self._fd, self._pid = -1, -1


def ensure_directory(directory: str) -> None:
    """Create the trace directory 0700 if missing; an existing one's mode is left alone."""
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
            if name.endswith(".log") and pid_text.isdigit() and _pid_alive(int(pid_text)):
                continue
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
    except OSError:
        pass
