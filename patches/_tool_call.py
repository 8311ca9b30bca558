"""What the tool-call patches share (inspect_ai, mcp): a call as its readers think of it."""

from __future__ import annotations

from typing import Any

from autotrace.redact import redact_text

DETAIL_WIDTH = 200  # a Tool Call detail is cut here
VALUE_WIDTH = 60  # and each argument value here


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def call_detail(name: str, arguments: Any) -> str:
    """``bash(cmd='ls')``: each argument masked first, then shortened, then the whole line.

    Masking first matters: a key cut in half is no longer recognisable, and its first
    half would be written in clear.
    """
    if isinstance(arguments, dict):
        parts = [
            _short(redact_text(f"{key}={value!r}"), len(str(key)) + 1 + VALUE_WIDTH)
            for key, value in arguments.items()
        ]
    else:
        parts = [_short(redact_text(repr(arguments)), VALUE_WIDTH)] if arguments else []
    return _short(f"{name}({', '.join(parts)})", DETAIL_WIDTH)
