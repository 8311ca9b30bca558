"""Checks on what the user hands the CLI: option values and the file to read.

A bad option value is a click usage error (exit 2, click's form). Whether a file is a
regular file it may read is the reader's check (``autotrace.read.files.open_trace``).
"""

from __future__ import annotations

import math
import os
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
