"""The streaming reader: inspect's anomaly semantics, tolerance of bad lines, hostile input."""

from __future__ import annotations

import gzip
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from autotrace.read import files, reader
from autotrace.read.files import TraceReadError
from autotrace.read.model import anomalies_of
from autotrace.read.reader import TraceReader, read_file

T0 = 1_795_700_000.0


def rec(event: str, tid: str, detail: str = "", action: str = "Model", **extra: Any) -> dict:
    """A record as inspect's TraceFormatter orders its keys."""
    detail = detail or f"detail {tid}"
    out: dict[str, Any] = {
        "timestamp": "2026-11-27T03:00:00.000000+00:00",
        "level": "TRACE",
        "message": f"{action}: {detail} ({event})",
        "action": action,
        "detail": detail,
        "event": event,
        "trace_id": tid,
    }
    if event == "enter":
        out["start_time"] = extra.pop("start_time", T0)
    else:
        out["duration"] = extra.pop("duration", 1.0)
    if event == "error":
        out.update(error="bad", error_type="ValueError", stacktrace="Traceback...")
    out.update(extra)
    return out


def plain(message: str, **extra: Any) -> dict:
    return {"timestamp": "2026-11-27T03:00:00+00:00", "level": "HTTP", "message": message, **extra}


def to_bytes(records: list[dict], **dumps: Any) -> bytes:
    return b"".join(json.dumps(r, **dumps).encode() + b"\n" for r in records)


def scan_bytes(data: bytes, filter: str | None = None) -> TraceReader:
    scanner = TraceReader("test.log", filter)
    scanner.feed(data)
    scanner.close()
    return scanner


def anomalies(scanner: TraceReader, as_of: float = T0 + 100):  # type: ignore[no-untyped-def]
    return anomalies_of(scanner, as_of=as_of)


def buckets(scanner: TraceReader) -> dict[str, list[str]]:
    a = anomalies(scanner)
    return {
        "running": sorted(r.trace_id for r in a.running),
        "cancelled": sorted(r.trace_id for r in a.cancelled),
        "errors": sorted(r.trace_id for r in a.errors),
        "timeouts": sorted(r.trace_id for r in a.timeouts),
    }


MIXED = [
    rec("enter", "a", start_time=T0 + 1),
    rec("enter", "b", start_time=T0 + 2),
    plain("POST https://api 200 OK"),
    rec("enter", "c", start_time=T0 + 3),
    rec("enter", "d", start_time=T0 + 4),
    rec("enter", "e", start_time=T0 + 5),
    rec("exit", "a"),
    rec("error", "b", duration=10.0),
    rec("cancel", "c", duration=1.0),
    rec("timeout", "d", duration=2.0),
    rec("timeout", "orphan", duration=3.0),  # end without enter: still bucketed
]
EXPECTED = {
    "running": ["e"],
    "cancelled": ["c"],
    "errors": ["b"],
    "timeouts": ["d", "orphan"],
}


def test_buckets_follow_inspect() -> None:
    scanner = scan_bytes(to_bytes(MIXED))
    assert buckets(scanner) == EXPECTED
    assert scanner.problems.total() == 0
    a = anomalies(scanner)
    error = a.errors[0]
    assert (error.start, error.duration, error.error) == (T0 + 2, 10.0, "bad")
    # Sorted most recently finished first: d ended at T0+6, orphan at 0+3.
    assert [r.trace_id for r in a.timeouts] == ["d", "orphan"]
    assert a.timeouts[1].start is None


def test_json_rows_have_inspect_keys_and_ours() -> None:
    data = to_bytes([rec("enter", "x", pid=7, parent_id="p"), rec("error", "y")])
    a = anomalies_of(scan_bytes(data), as_of=T0 + 30)
    envelope = {name: [r.as_json() for r in rows] for name, rows in a.buckets().items()}
    (running,) = envelope["running"]
    assert running["action"] == "Model" and running["detail"] == "detail x"
    assert running["start_time"] == T0 and running["duration"] == 30.0
    assert (running["trace_id"], running["pid"], running["parent_id"]) == ("x", 7, "p")
    (error,) = envelope["errors"]
    assert error["error"] == "bad" and error["start_time"] is None


def test_other_spacing_and_key_order_give_the_same_answer() -> None:
    compact = to_bytes(MIXED, separators=(",", ":"))
    reordered = b"".join(
        json.dumps(dict(reversed(list(r.items())))).encode() + b"\n" for r in MIXED
    )
    for data in (compact, reordered):
        assert buckets(scan_bytes(data)) == EXPECTED


def test_bad_lines_are_counted_and_reported_once() -> None:
    data = (
        to_bytes(MIXED[:3])
        + b"\n   \n"
        + b"not json at all\n"
        + b'{"timestamp": "t", "level": "TRACE"}\n'  # no message: invalid
        + to_bytes([rec("finish", "zz")])  # an event inspect does not know
        + b"[1, 2]\n"
        + to_bytes(MIXED[3:])
        + b'{"timestamp": "2026-11-27T03:00:00+00:00", "level": "TRACE", "mess'
    )
    scanner = scan_bytes(data)
    assert buckets(scanner) == EXPECTED
    p = scanner.problems
    assert (p.blank, p.garbage, p.invalid, p.unknown_event, p.torn) == (2, 2, 1, 1, 1)
    summary = p.summary("test.log")
    assert summary is not None and "\n" not in summary
    assert summary.startswith("note: skipped 7 line(s) in test.log")


def test_complete_last_line_without_newline_is_read() -> None:
    data = to_bytes(MIXED).rstrip(b"\n")
    scanner = scan_bytes(data)
    assert buckets(scanner) == EXPECTED and scanner.problems.total() == 0


def test_torn_line_in_the_middle_does_not_end_an_action() -> None:
    exit_line = json.dumps(rec("exit", "e")).encode()
    data = to_bytes(MIXED) + exit_line[:-1] + b"\n"  # no closing brace
    scanner = scan_bytes(data)
    assert buckets(scanner)["running"] == ["e"]
    assert scanner.problems.garbage == 1


@pytest.mark.parametrize(
    "trap",
    [
        # Text that looks like keys, inside strings: escaped, never read as keys.
        rec("enter", "t", detail='x", "event": "exit", "trace_id": "e'),
        plain('", "action": "Model", "event": "exit", "trace_id": "e"'),
        # A nested object with the keys of an end record.
        plain("stack", frame={"action": "Model", "event": "exit", "trace_id": "e"}),
        plain("stack", **{"a": 1, "nested": [{"event": "exit", "trace_id": "e"}]}),
        # A key that ends in "event".
        {"timestamp": "t", "level": "TRACE", "message": "m", 'x", "event': "exit"},
        # An event record without an action key is not an action (as in inspect).
        {"timestamp": "t", "level": "TRACE", "message": "m", "event": "exit", "trace_id": "e"},
    ],
)
def test_key_lookalikes_are_not_read_as_keys(trap: dict) -> None:
    scanner = scan_bytes(to_bytes([*MIXED, trap]))
    assert "e" in buckets(scanner)["running"]


def test_filter_is_applied_before_pairing_like_inspect() -> None:
    data = to_bytes(MIXED)
    # Only enter messages match: every entered action looks running.
    assert buckets(scan_bytes(data, filter="(ENTER)"))["running"] == ["a", "b", "c", "d", "e"]
    only_c = buckets(scan_bytes(data, filter="detail c"))
    assert only_c == {"running": [], "cancelled": ["c"], "errors": [], "timeouts": []}


@pytest.mark.parametrize(
    ("detail", "needle"),
    [
        ("caf\u00e9 order", "CAF\u00c9"),
        ('say "hi" now', '"HI"'),
        ("path a/b", "A/B"),
        ("line one\nline two", "one\nline"),
        ("tab\there", "b\th"),
        ("kelvin 5\u212a", "5k"),  # the Kelvin sign lowers to an ASCII k
    ],
)
def test_filter_matches_the_decoded_message(detail: str, needle: str) -> None:
    data = to_bytes([rec("enter", "hit", detail=detail), rec("enter", "miss", detail="other")])
    assert buckets(scan_bytes(data, filter=needle))["running"] == ["hit"]


def test_inspect_sample_prefix_and_extra_keys_are_read() -> None:
    enter = rec("enter", "s", sample_id=3, epoch=1, task="t")
    enter["message"] = "sample=3\n" + enter["message"]
    scanner = scan_bytes(to_bytes([enter]))
    (running,) = anomalies(scanner).running
    assert running.detail == "detail s" and running.task == "t"
    assert buckets(scan_bytes(to_bytes([enter]), filter="sample=3"))["running"] == ["s"]


def test_feeding_in_any_chunks_gives_the_same_result() -> None:
    data = to_bytes(MIXED) + b"garbage\n" + to_bytes([rec("enter", "late")])
    whole = scan_bytes(data)
    rng = random.Random(5)
    for _ in range(20):
        scanner = TraceReader("chunks")
        pos = 0
        while pos < len(data):
            step = rng.randint(1, 90)
            scanner.feed(data[pos : pos + step])
            pos += step
            assert scanner.offset == min(pos, len(data))
        scanner.close()
        assert buckets(scanner) == buckets(whole)
        assert scanner.problems == whole.problems


def test_memory_holds_open_actions_not_the_file() -> None:
    scanner = TraceReader("big")
    for n in range(200):
        chunk = to_bytes(
            [r for i in range(50) for r in (rec("enter", f"{n}-{i}"), rec("exit", f"{n}-{i}"))]
        )
        scanner.feed(chunk)
    scanner.feed(to_bytes([rec("enter", "open")]))
    scanner.close()
    assert scanner.lines == 20_001
    assert list(scanner.running) == ["open"]
    assert all(not bucket for bucket in scanner.ended.values())


def test_stacks_are_kept_whatever_the_filter_and_only_for_open_actions() -> None:
    frame = {"file": "/w/x.py", "line": 4, "function": "hang", "code": "time.sleep(9)"}
    stack = {
        "timestamp": "t",
        "level": "TRACE",
        "message": "[autotrace] stuck action: Model",
        "event_kind": "stack",
        "trace_id": "e",
        "stack": [{"file": "/w/main.py", "line": 1, "function": "<module>"}, frame],
        "where": "/w/x.py:4 in hang",
    }
    ended = dict(stack, trace_id="a")  # for an action that ends: dropped at its end
    scanner = scan_bytes(to_bytes([*MIXED[:6], stack, ended, *MIXED[6:]]), filter="detail e")
    assert list(scanner.stacks) == ["e"]
    (row,) = anomalies(scanner).running
    assert row.trace_id == "e" and row.where == "/w/x.py:4 in hang"
    assert row.frames[row.blamed or 0].function == "hang" and row.blamed == 1
    assert row.frames[1].code == "time.sleep(9)"


def test_reads_gzip_and_reports_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "trace-1.log.gz"
    payload = gzip.compress(to_bytes(MIXED))
    path.write_bytes(payload)
    assert buckets(read_file(path)) == EXPECTED
    # A gzip cut short (kill -9 or a full disk while compressing) is a torn tail: the
    # records before the cut are still read, and the cut is counted once.
    full = gzip.compress(to_bytes(MIXED * 200))
    path.write_bytes(full[: len(full) // 2])
    scanner = read_file(path)
    assert scanner.problems.torn == 1
    assert 0 < scanner.lines < len(MIXED) * 200
    path.write_bytes(b"not gzip at all")
    with pytest.raises(TraceReadError, match="not a gzip file"):
        read_file(path)


def test_gzip_members_appended_after_compression_are_read(tmp_path: Path) -> None:
    path = tmp_path / "trace-1.log.gz"
    path.write_bytes(gzip.compress(to_bytes(MIXED[:6])) + gzip.compress(to_bytes(MIXED[6:])))
    assert buckets(read_file(path)) == EXPECTED


def test_missing_file_and_directory_are_read_errors(tmp_path: Path) -> None:
    with pytest.raises(TraceReadError, match="does not exist"):
        read_file(tmp_path / "nope.log")
    with pytest.raises(TraceReadError, match="directory"):
        read_file(tmp_path)


def test_iter_records_streams_valid_records_and_filters(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(to_bytes(MIXED) + b"junk\n")
    problems = reader.ReadProblems()
    records = list(reader.iter_records(path, None, problems))
    assert records == MIXED and problems.garbage == 1
    assert [r["trace_id"] for r in reader.iter_records(path, "DETAIL B")] == ["b", "b"]


def test_list_resolve_and_header(tmp_path: Path) -> None:
    import os

    header = {
        "timestamp": "t",
        "level": "TRACE",
        "message": "[autotrace] process start",
        "event_kind": "process",
        "run_id": "r-9",
        "pid": 21,
        "parent_pid": 20,
        "argv": ["inspect", "eval", "task.py"],
    }
    old, new = tmp_path / "trace-20.log", tmp_path / "trace-21.log"
    old.write_bytes(to_bytes(MIXED))
    new.write_bytes(to_bytes([header]))
    os.utime(old, (1000, 1000))
    listed = files.list_trace_files(tmp_path, headers=True)
    assert [f.path for f in listed] == [new, old]
    info = listed[0].header
    assert info is not None and listed[1].header is None
    assert (info.pid, info.run_id, info.parent_pid) == (21, "r-9", 20)
    assert info.argv == ("inspect", "eval", "task.py")
    assert files.read_header(new) == info
    assert files.resolve_trace_file(None, tmp_path) == new
    assert files.resolve_trace_file("trace-20.log", tmp_path) == old
    assert files.resolve_trace_file(str(old), tmp_path / "elsewhere") == old
    with pytest.raises(TraceReadError, match="no trace files"):
        files.resolve_trace_file(None, tmp_path / "empty")
    with pytest.raises(TraceReadError, match="does not exist"):
        files.resolve_trace_file("trace-99.log", tmp_path)


def test_feed_stream_reads_a_binary_stream() -> None:
    scanner = TraceReader("stream")
    scanner.feed_stream(io.BytesIO(to_bytes(MIXED)))
    scanner.close()
    assert buckets(scanner) == EXPECTED


@pytest.mark.parametrize("step", [4096, 1 << 20])
def test_overlong_line_is_dropped_and_counted(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    monkeypatch.setattr(reader, "MAX_LINE", 1 << 20)
    data = to_bytes(MIXED[:5]) + b'{"x": "' + b"y" * (3 << 20) + b'"}\n' + to_bytes(MIXED[5:])
    scanner = TraceReader("long")
    for pos in range(0, len(data), step):
        scanner.feed(data[pos : pos + step])
    scanner.close()
    assert buckets(scanner) == EXPECTED
    assert scanner.problems.garbage == 1 and scanner.problems.total() == 1
    # Cut at the end of the file: dropped too, and counted once.
    tail = TraceReader("tail")
    tail.feed(to_bytes(MIXED) + b"z" * (2 << 20))
    tail.close()
    assert buckets(tail) == EXPECTED and tail.problems.total() == 1


# -- the msgspec path: chunks with bad lines, hostile values ----------------------------


def test_a_chunk_with_a_bad_line_keeps_its_good_lines(tmp_path: Path) -> None:
    """A chunk msgspec rejects is read line by line: only the bad lines are lost."""
    good = to_bytes(MIXED)
    data = good[: len(good) // 2]
    cut = data.rfind(b"\n") + 1
    data = good[:cut] + b"garbage in the middle\n\n" + good[cut:]
    path = tmp_path / "trace-1.log"
    path.write_bytes(data + to_bytes([rec("enter", "tail")]))
    for chunk in (64, 200, 1 << 20):  # the bad line in the first, a middle or the only chunk
        scanner = TraceReader("t")
        with open(path, "rb") as f:
            scanner.feed_stream(f, chunk)
        scanner.close()
        assert buckets(scanner)["running"] == ["e", "tail"]
        assert buckets(scanner)["errors"] == ["b"]
        p = scanner.problems
        assert (p.garbage, p.blank, p.total()) == (1, 1, 2)
        assert scanner.lines == len(MIXED) + 3


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1e300"])
def test_non_finite_or_huge_times_make_an_action_record_invalid(value: str) -> None:
    line = json.dumps(rec("enter", "h")).replace(f'"start_time": {T0}', f'"start_time": {value}')
    assert value in line
    scanner = scan_bytes(line.encode() + b"\n" + to_bytes(MIXED))
    assert buckets(scanner) == EXPECTED
    p = scanner.problems
    assert p.total() == 1 and (p.invalid or p.garbage) == 1
    # A huge but allowed time gives finite figures only.
    big = scan_bytes(to_bytes([rec("enter", "old", start_time=-reader.LIMIT)]))
    (row,) = anomalies(big).running
    assert row.duration == T0 + 100 + reader.LIMIT and json.dumps(row.as_json(), allow_nan=False)


@pytest.mark.parametrize("opener", [b"[", b'{"a": '])
def test_deeply_nested_json_is_counted_invalid_without_recursion_error(opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    deep = b'{"timestamp": "t", "level": "HTTP", "message": "m", "x": '
    deep += opener * 100_000 + (b"1" if opener != b"[" else b"") + closer * 100_000 + b"}\n"
    scanner = scan_bytes(to_bytes(MIXED[:4]) + deep + to_bytes(MIXED[4:]))
    assert buckets(scanner) == EXPECTED
    assert (scanner.problems.invalid, scanner.problems.total()) == (1, 1)
    assert reader.decode_line(deep) == (None, "invalid")


def test_a_lone_surrogate_escape_is_read_as_inspect_reads_it() -> None:
    """msgspec rejects a lone surrogate; the stdlib parser (inspect's) takes it."""
    odd = rec("enter", "s", detail="python bad-\udcff-name.py")
    line = json.dumps(odd).encode()
    assert b"\\udcff" in line
    scanner = scan_bytes(line + b"\n" + to_bytes(MIXED))
    assert buckets(scanner)["running"] == ["e", "s"] and scanner.problems.total() == 0


def test_our_keys_of_the_wrong_type_are_ignored_like_inspect_ignores_them() -> None:
    odd = rec("enter", "w", pid="not a pid", parent_id=5, thread=["x"])
    scanner = scan_bytes(to_bytes([odd, *MIXED]))
    assert scanner.problems.total() == 0
    (row,) = [r for r in anomalies(scanner).running if r.trace_id == "w"]
    assert (row.pid, row.parent_id, row.thread) == (None, None, None)


def test_non_action_records_are_not_held_to_action_rules() -> None:
    """inspect checks only timestamp, level and message of a record without "action"."""
    odd = plain("free", event=7, trace_id=["x"], detail=None, start_time="soon")
    scanner = scan_bytes(to_bytes([odd, *MIXED]))
    assert scanner.problems.total() == 0 and buckets(scanner) == EXPECTED


def test_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "trace-1.log"
    os.mkfifo(fifo)
    with pytest.raises(TraceReadError, match="not a regular file"):
        read_file(fifo)  # returns at once: no wait for a writer
    with pytest.raises(TraceReadError, match="not a regular file"):
        read_file(Path("/dev/zero"))
    assert files.read_header(fifo) is None


def test_dump_drops_an_overlong_line_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "MAX_LINE", 1 << 10)
    monkeypatch.setattr(reader, "CHUNK", 1 << 9)
    path = tmp_path / "t.log"
    path.write_bytes(to_bytes(MIXED[:5]) + b'{"x": "' + b"y" * 5000 + b'"}\n' + to_bytes(MIXED[5:]))
    problems = reader.ReadProblems()
    assert list(reader.iter_records(path, None, problems)) == MIXED
    assert (problems.garbage, problems.total()) == (1, 1)


def test_invalid_utf8_in_a_string_is_a_counted_line_not_an_error() -> None:
    """msgspec raises UnicodeDecodeError there (not DecodeError): the line is garbage."""
    bad = b'{"timestamp": "x", "level": "TRACE", "message": "\xff\xfe\x80"}\n'
    scanner = scan_bytes(to_bytes(MIXED[:3]) + bad + to_bytes(MIXED[3:]))
    assert buckets(scanner) == EXPECTED
    assert (scanner.problems.garbage, scanner.problems.total()) == (1, 1)


@pytest.mark.parametrize("actions", [5, "text", {"trace_id": "e"}, None, [7, "x"]])
def test_a_snapshot_record_whose_actions_is_not_a_list_is_ignored(actions: Any) -> None:
    snapshot = plain("[autotrace] snapshot", event_kind="snapshot", actions=actions)
    scanner = scan_bytes(to_bytes([*MIXED, snapshot]))
    assert buckets(scanner) == EXPECTED and scanner.stacks == {}
    assert scanner.problems.total() == 0
