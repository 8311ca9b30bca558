"""Checks on what the user hands the CLI: option values and the file to read.

A bad option value is a click usage error (exit 2, click's form); a file that is not a
regular file is refused before it is read, without blocking on a FIFO.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

import click

PID_MAX = 2**31 - 1  # pid_t is a signed 32-bit integer; 0 and -1 mean groups to kill()
DAY = 86400.0


class Seconds(click.ParamType):
    """A finite number of seconds, positive (or 0 with ``zero``), at most ``maximum``
    (NaN, inf, 1e309 and -1 are refused)."""

    name = "seconds"

    def __init__(self, maximum: float, *, zero: bool = False) -> None:
        self.maximum = maximum
        self.zero = zero

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        low = 0 <= seconds if self.zero else 0 < seconds
        if not (math.isfinite(seconds) and low and seconds <= self.maximum):
            span = f"{'[' if self.zero else '('}0, {self.maximum:.10g}]"
            self.fail(f"{value!r} is not a number of seconds in {span}", param, ctx)
        return seconds


class PathText(click.ParamType):
    """A path as text, refused when empty or holding a NUL (no file can be named so)."""

    name = "path"

    def __init__(self, what: str) -> None:
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = os.fsdecode(value) if isinstance(value, bytes) else str(value)
        if not text:
            self.fail(f"the {self.what} cannot be an empty string", param, ctx)
        if "\0" in text:
            self.fail(f"the {self.what} cannot contain a NUL character", param, ctx)
        return text


PID = click.IntRange(1, PID_MAX)
TRACE_DIR = PathText("trace directory")
TRACE_FILE = PathText("trace file")


class NotRegularFile(Exception):
    """The path names something other than a regular file (the message is one line)."""


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_regular_file(path: Path) -> None:
    """Refuse what is not a regular file (a FIFO would block the read, /dev/zero never
    ends). Stat first, then open without blocking and check the opened file again, so
    that a FIFO swapped in after the stat does not hang us either."""
    st = os.stat(path)  # OSError (missing, permission) is the caller's to report
    _check_mode(path, st.st_mode)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        _check_mode(path, os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def _check_mode(path: Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise NotRegularFile(f"{path} is {kind}, not a trace file")
