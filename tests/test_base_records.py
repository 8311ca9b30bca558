"""Records: the line format inspect's reader accepts, timestamps, outcome classification."""

from __future__ import annotations

import asyncio
import datetime
import json
import random
import subprocess

import anyio
import pytest

from autotrace import records


def _lines(**kwargs: object) -> records.ActionLines:
    defaults: dict[str, object] = dict(pid=42, thread="MainThread", task=None, parent_id=None)
    defaults.update(kwargs)
    return records.ActionLines("Model", "generate (openai/gpt-4o)", "tid-1", **defaults)  # type: ignore[arg-type]


def _inspect_stamp(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).astimezone().isoformat(timespec="microseconds")


def test_timestamp_matches_datetime_isoformat_with_microseconds() -> None:
    rng = random.Random(3)
    samples = [rng.uniform(1.6e9, 1.9e9) for _ in range(20_000)]
    # Rounding edges: just below a whole second, exact seconds, half microseconds.
    samples += [1_795_745_979.9999996, 1_795_745_979.0, 1_795_745_979.0000005, 1_700_000_000.5]
    for t in samples:
        assert records.iso_timestamp(t) == _inspect_stamp(t), t


def test_timestamp_always_carries_microseconds_and_offset() -> None:
    stamp = records.iso_timestamp(1_795_745_979.0)
    date_time, _, rest = stamp.partition(".")
    assert len(date_time) == 19 and rest[:6] == "000000"
    assert rest[6] in "+-" and datetime.datetime.fromisoformat(stamp).tzinfo is not None


def test_action_line_has_inspect_keys_message_and_our_keys() -> None:
    line = _lines(task="Task-7", parent_id="p-1").line("enter", 1_795_745_979.25, start_time=1.5)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = json.loads(line)
    assert record["timestamp"] == _inspect_stamp(1_795_745_979.25)
    assert record["level"] == "TRACE"
    assert record["message"] == "Model: generate (openai/gpt-4o) (enter)"
    assert (record["action"], record["event"], record["trace_id"]) == ("Model", "enter", "tid-1")
    assert record["detail"] == "generate (openai/gpt-4o)"
    assert record["start_time"] == 1.5
    assert (record["pid"], record["thread"], record["task"]) == (42, "MainThread", "Task-7")
    assert record["parent_id"] == "p-1" and record["source"] == "autotrace"


def test_end_line_carries_duration_and_extra_keys() -> None:
    record = json.loads(
        _lines().line("exit", 2.0, duration=0.125, extra={"returncode": 3, "argv": ["a", "b"]})
    )
    assert record["duration"] == 0.125 and "start_time" not in record
    assert record["returncode"] == 3 and record["argv"] == ["a", "b"]
    assert "task" not in record and "parent_id" not in record


def test_error_line_carries_error_type_and_stacktrace() -> None:
    try:
        raise ValueError("disk said no")
    except ValueError as exc:
        line = _lines().line("error", 2.0, duration=1.0, error=exc)
    record = json.loads(line)
    assert record["error"] == "disk said no" and record["error_type"] == "ValueError"
    assert "Traceback" in record["stacktrace"] and "disk said no" in record["stacktrace"]


def test_text_with_quotes_newlines_and_unicode_is_escaped_into_one_ascii_line() -> None:
    detail = 'echo "hi" \\ \n done \u00e9 \u2603 \x00'
    lines = records.ActionLines(
        "Subprocess", detail, "t", pid=1, thread="w\u00e9", task=None, parent_id=None
    )
    line = lines.line("enter", 3.0, start_time=3.0)
    assert line.isascii() and line.count(b"\n") == 1
    record = json.loads(line)
    assert record["detail"] == detail
    assert record["message"] == f"Subprocess: {detail} (enter)"
    assert record["thread"] == "w\u00e9"


def test_message_line_is_not_an_action_and_keeps_fields() -> None:
    record = json.loads(
        records.message_line("[autotrace] process start", 5.0, {"pid": 9, "action": "x"})
    )
    assert "action" not in record
    assert record["message"].startswith(records.MESSAGE_PREFIX)
    assert record["pid"] == 9 and record["level"] == "TRACE"


@pytest.mark.parametrize(
    ("exc", "event"),
    [
        (None, "exit"),
        (ValueError("x"), "error"),
        (RuntimeError("x"), "error"),
        (TimeoutError(), "timeout"),
        (asyncio.TimeoutError(), "timeout"),
        (subprocess.TimeoutExpired(["sleep", "9"], 1.0), "timeout"),
        (asyncio.CancelledError(), "cancel"),
        (KeyboardInterrupt(), "cancel"),
    ],
)
def test_outcome_of_classifies_like_inspect(exc: BaseException | None, event: str) -> None:
    assert records.outcome_of(exc) == event


def test_outcome_of_anyio_cancellation_is_cancel() -> None:
    async def main() -> str:
        return records.outcome_of(anyio.get_cancelled_exc_class()())

    assert anyio.run(main) == "cancel"
