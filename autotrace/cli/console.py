"""The CLI's streams: the one rich console setup, and how a verb treats its own process."""

from __future__ import annotations

import os
import re
import sys

TYPE_CHECKING = False  # typing costs milliseconds: the launcher imports this module
if TYPE_CHECKING:
    from typing import Any

# Piped output (a file, `less`, CI logs) has no terminal width; rich would assume 80
# columns and wrap paths and stacks one word per line. Tables only take what they need.
PIPED_WIDTH = 160
# COLUMNS / LINES that rich would take as they are, outside these, are ignored: COLUMNS=0
# prints nothing at all, COLUMNS=99999999 builds tables for minutes.
WIDTHS = (20, 4096)
HEIGHTS = (5, 1000)


def make_console() -> Any:
    """A rich Console: the terminal's width, or PIPED_WIDTH when stdout is not a terminal.

    When the reader of our output goes away (`| head`), it raises BrokenPipeError for
    the CLI to end quietly with its own exit code (rich's default exits 1 itself).
    """
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    terminal = sys.stdout.isatty()
    width = _size("COLUMNS", WIDTHS)
    height = _size("LINES", HEIGHTS)
    if width is None and (not terminal or "COLUMNS" in os.environ):
        width = _terminal_size()[0] if terminal else PIPED_WIDTH
    if height is None and "LINES" in os.environ:
        height = _terminal_size()[1]
    return _Console(highlight=False, width=width, height=height)


def _size(name: str, bounds: tuple[int, int]) -> int | None:
    """The variable when it holds a whole number within ``bounds``, else None."""
    try:
        value = int(os.environ[name])
    except (KeyError, ValueError):
        return None
    return value if bounds[0] <= value <= bounds[1] else None


def _terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        return max(WIDTHS[0], size.columns), max(HEIGHTS[0], size.lines)
    except (OSError, ValueError):
        return 80, 25


def tolerant_streams() -> None:
    """Text our streams cannot encode (LANG=C, PYTHONIOENCODING=ascii) is written as
    backslash escapes instead of ending the verb with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def quiet_broken_pipe() -> None:
    """The reader of our output went away (`| head`): stop quietly, as cat does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


# True when `inspect-trace` runs as its own process (the console script, `python -m`),
# not inside another program (tests call ``main`` in-process).
_own_process = False


def mark_own_process() -> None:
    global _own_process
    _own_process = True


def own_process() -> bool:
    """Whether a verb may end the process itself (a quick exit after a large read)."""
    return _own_process


# What a terminal would act on rather than show: C0 controls but tab (newline only where
# a cell may span lines), DEL, C1 controls (U+009B is a CSI on its own), lone surrogates
# (unencodable), line/paragraph separators and the bidi controls that reorder what
# follows them ("Trojan Source").
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_HIDDEN = re.compile(f"[\n{_CONTROLS}]")
_HIDDEN_BUT_NEWLINE = re.compile(f"[{_CONTROLS}]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object, *, newlines: bool = False) -> str:
    """``value`` as text a terminal shows and never obeys: controls become ``\\x1b``,
    ``\\u202e`` ... (newlines kept only with ``newlines=True``, for multi-line cells)."""
    text = value if isinstance(value, str) else str(value)
    pattern = _HIDDEN_BUT_NEWLINE if newlines else _HIDDEN
    return pattern.sub(_escape_char, text) if pattern.search(text) else text
