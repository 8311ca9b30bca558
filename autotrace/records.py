"""Trace records: the one place that knows the line format inspect's reader accepts.

Every line is a JSON object with ``timestamp``, ``level`` and ``message``; an action
record adds ``action``, ``event`` (one of EVENTS) and ``trace_id``. Our own keys
(``pid``, ``thread``, ``task``, ``parent_id``, ``source`` and extras) are ignored by
inspect. Lines are built by hand around the C string encoder: this is the hot path,
and json.dumps of a dict costs several times more.
"""

from __future__ import annotations

import sys
import time
from _json import encode_basestring_ascii as _quote  # C, escapes to pure ASCII

from autotrace.redact import redact_text, redact_value

quote = _quote  # a text as a JSON string (for a field added to another tracer's line)

# Every traced process imports this module before its first record: json (for values
# other than str, numbers and lists or dicts of them), traceback (for error records),
# datetime and typing cost milliseconds, so they are imported only where needed.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LEVEL = "TRACE"
SOURCE = "autotrace"
MESSAGE_PREFIX = "[autotrace]"

ENTER, EXIT, CANCEL, ERROR, TIMEOUT = "enter", "exit", "cancel", "error", "timeout"
EVENTS = (ENTER, EXIT, CANCEL, ERROR, TIMEOUT)

# Action names (inspect's where inspect has one).
MODEL = "Model"
SUBPROCESS = "Subprocess"
TOOL_CALL = "Tool Call"
SUBTASK = "Subtask"
LOG_WRITE = "Log Write"
DOCKER = "Docker"
S3 = "S3"
# The event_kind of the record that names the parent of an action inspect traced itself
# (inspect's own records carry no parent; the agent knows it when it adopts the action).
NATIVE_PARENT_KIND = "native_parent"
# Programs whose command lines are Docker actions (a Subprocess running them shows as Docker).
DOCKER_PROGRAMS = frozenset({"docker", "docker-compose", "podman"})

_ts_cache: tuple[int, str, str] = (-1, "", "")


def _ts_parts(sec: int) -> tuple[int, str, str]:
    """Date and time, and the UTC offset, of a whole second in local time."""
    global _ts_cache
    local = time.localtime(sec)
    offset = local.tm_gmtoff
    if offset is None or offset % 60:  # no offset known, or one with seconds: as datetime
        import datetime

        whole = datetime.datetime.fromtimestamp(sec).astimezone().isoformat()
        _ts_cache = (sec, whole[:19], whole[19:])
        return _ts_cache
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset) // 60, 60)
    # one assignment: safe across threads
    _ts_cache = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", local), f"{sign}{hours:02d}:{minutes:02d}")
    return _ts_cache


def iso_timestamp(t: float) -> str:
    """ISO 8601 with local offset and microseconds, as inspect's TraceFormatter writes.

    Equal to ``datetime.fromtimestamp(t).astimezone().isoformat(timespec="microseconds")``:
    microseconds are rounded half to even as datetime rounds them; the date, time and
    offset of the whole second are computed once per second.
    """
    sec = int(t)
    us = round((t - sec) * 1e6)
    if us >= 1_000_000:
        sec += 1
        us -= 1_000_000
    cache = _ts_cache
    if cache[0] != sec:
        cache = _ts_parts(sec)
    return f"{cache[1]}.{us:06d}{cache[2]}"


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, (KeyboardInterrupt, GeneratorExit, SystemExit)):
        return True
    if getattr(exc, "autotrace_cancel", False) is True:  # raised by `inspect-trace cancel`
        return True
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and isinstance(exc, asyncio.CancelledError):
        return True
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(exc, trio.Cancelled)


# Library timeouts that are not built-in TimeoutErrors, by class name (anywhere in the
# MRO), so that the core never imports a library: subprocess.TimeoutExpired, httpx's
# TimeoutException / ReadTimeout, the openai / anthropic APITimeoutError, and botocore's
# ReadTimeoutError / ConnectTimeoutError (any name ending in "TimeoutError").
_TIMEOUT_NAMES = frozenset({"TimeoutExpired", "TimeoutException", "ReadTimeout", "APITimeoutError"})


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    return any(
        c.__name__ in _TIMEOUT_NAMES or c.__name__.endswith("TimeoutError")
        for c in type(exc).__mro__
    )


def outcome_of(exc: BaseException | None) -> str:
    """The end event for an action that ended with ``exc`` (None: it returned)."""
    if exc is None:
        return EXIT
    if _is_cancellation(exc):
        return CANCEL
    if _is_timeout(exc):
        return TIMEOUT
    return ERROR


def _value(value: Any) -> str:
    """One JSON value; str and numbers inline, anything else through json.dumps."""
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
        return repr(value)
    if type(value) is list or type(value) is tuple:
        return "[" + ", ".join(map(_value, value)) + "]"
    if type(value) is dict and all(type(k) is str for k in value):
        return "{" + ", ".join(f"{_quote(k)}: {_value(v)}" for k, v in value.items()) + "}"
    import json

    return json.dumps(value, default=str, ensure_ascii=True)


# (action, detail) -> the encoded parts every record of such an action repeats.
_parts_cache: dict[tuple[str, str], tuple[str, str, str]] = {}
_PARTS_CACHE_SIZE = 2048


def _action_parts(action: str, detail: str) -> tuple[str, str, str]:
    key = (action, detail)
    parts = _parts_cache.get(key)
    if parts is None:
        # JSON escaping is per character, so a quoted prefix can be completed later.
        parts = (
            '", "level": "TRACE", "message": ' + _quote(f"{action}: {detail} (")[:-1],
            ')", "action": ' + _quote(action) + ', "event": "',
            _quote(detail),
        )
        if len(_parts_cache) >= _PARTS_CACHE_SIZE:
            _parts_cache.clear()
        _parts_cache[key] = parts
    return parts


class ActionLines:
    """Builds the lines of one action: the parts every record repeats are encoded once."""

    __slots__ = ("_message_head", "_head", "_ids", "_tail")

    def __init__(
        self,
        action: str,
        detail: str,
        trace_id: str,
        *,
        pid: int,
        thread: str,
        task: str | None,
        parent_id: str | None,
    ) -> None:
        self._message_head, self._head, quoted_detail = _action_parts(action, detail)
        self._ids = f'", "trace_id": {_quote(trace_id)}, "detail": {quoted_detail}'
        tail = f', "pid": {pid}, "thread": {_quote(thread)}'
        if task is not None:
            tail += ', "task": ' + _quote(task)
        if parent_id is not None:
            tail += ', "parent_id": ' + _quote(parent_id)
        self._tail = tail

    def line(
        self,
        event: str,
        now: float,
        *,
        start_time: float | None = None,
        duration: float | None = None,
        error: BaseException | None = None,
        extra: dict[str, Any] | None = None,
    ) -> bytes:
        """One complete record (bytes ending in a newline) for ``event``."""
        middle = ""
        if start_time is not None:
            middle = f', "start_time": {start_time!r}'
        if duration is not None:
            middle += f', "duration": {duration!r}'
        if error is not None and event == ERROR:
            middle += (
                f', "error": {_quote(error_text(error))}'
                f', "error_type": {_quote(type(error).__name__)}'
                f', "stacktrace": {_quote(stacktrace_text(error))}'
            )
        end = self._tail
        if extra:  # the program's extras (trace_action(..., extra=)): redacted by name and text
            end += "".join(
                f", {_quote(str(k))}: {_value(redact_value(v, str(k)))}" for k, v in extra.items()
            )
        # iso_timestamp(now), inlined: this runs twice per action.
        sec = int(now)
        us = round((now - sec) * 1e6)
        if us >= 1_000_000:
            sec += 1
            us -= 1_000_000
        stamp = _ts_cache
        if stamp[0] != sec:
            stamp = _ts_parts(sec)
        return (
            f'{{"timestamp": "{stamp[1]}.{us:06d}{stamp[2]}{self._message_head}{event}'
            f'{self._head}{event}{self._ids}{middle}{end}, "source": "autotrace"}}\n'
        ).encode("ascii")


# Fields of the agent's own records that hold identifiers the agent or inspect made
# (trace ids, pids, the kind of record): written as they are, without a mask's cost.
ID_FIELDS = frozenset({"trace_id", "parent_id", "event_kind", "pid", "child_pid"})


def message_line(message: str, now: float, fields: dict[str, Any] | None = None) -> bytes:
    """A record that is not an action (no ``action`` key): process start, stacks, warnings.

    The message and every field are redacted here, whoever built them (ID_FIELDS: when
    an identifier, a string or a number).
    """
    record: dict[str, Any] = {
        "timestamp": iso_timestamp(now),
        "level": LEVEL,
        "message": redact_text(message),
    }
    if fields:
        record.update(
            (k, v if k in ID_FIELDS and isinstance(v, (str, int)) else redact_value(v, k))
            for k, v in fields.items()
            if k not in record and k != "action"
        )
    record["source"] = SOURCE
    return (_value(record) + "\n").encode("ascii")


def error_text(exc: BaseException) -> str:
    """What inspect writes as ``error``: the exception's message, else its repr."""
    try:
        message = getattr(exc, "message", None)
        text = message if isinstance(message, str) else str(exc)
        return redact_text(text or repr(exc))
    except Exception:
        return type(exc).__name__


def stacktrace_text(exc: BaseException) -> str:
    """The formatted traceback of ``exc``, redacted."""
    try:
        import traceback

        return redact_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    except Exception:
        return ""
