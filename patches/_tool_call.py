"""What the tool-call patches share (inspect_ai, mcp): a call as its readers think of it."""

from __future__ import annotations

from typing import Any

DETAIL_WIDTH = 200  # a Tool Call detail is cut here
VALUE_WIDTH = 60  # and each argument value here


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def call_detail(name: str, arguments: Any) -> str:
    """``bash(cmd='ls')``: each value's repr shortened, then the whole line.

    The action API redacts the detail before writing it (and before nothing else cuts it).
    """
    if isinstance(arguments, dict):
        parts = [f"{key}={_short(repr(value), VALUE_WIDTH)}" for key, value in arguments.items()]
    else:
        parts = [_short(repr(arguments), VALUE_WIDTH)] if arguments else []
    return _short(f"{name}({', '.join(parts)})", DETAIL_WIDTH)
