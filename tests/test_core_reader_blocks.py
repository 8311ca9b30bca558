"""The block path of the reader (plain files, no filter) keeps exactly the state the
line-by-line path keeps, whatever the lines and however the bytes are cut."""

from __future__ import annotations

import json
import random

import pytest

from autotrace.reader import TraceScanner

STAMP = '"timestamp": "2026-11-27T02:57:07.135829+00:00"'


class LineByLine(TraceScanner):
    """The reference: every block read line by line (the path a filter takes)."""

    def _scan_block(self, block: bytes) -> None:
        self._scan_lines(block.split(b"\n")[:-1])


def _action(rng: random.Random, ids: list[str], ours: bool) -> str:
    tid = rng.choice(ids)
    event = rng.choice(["enter", "enter", "exit", "exit", "error", "cancel", "timeout"])
    detail = rng.choice(["bash", "ls -la", "PutObject s3://b/k"])
    head = f'{{{STAMP}, "level": "TRACE", "message": "A: {detail} ({event})", "action": "A"'
    if ours:
        return f'{head}, "event": "{event}", "trace_id": "{tid}", "detail": "{detail}", "pid": 3}}'
    return (
        f'{head}, "detail": "{detail}", "event": "{event}", "trace_id": "{tid}", "start_time": 5}}'
    )


def _odd(rng: random.Random, ids: list[str]) -> str:
    tid = rng.choice(ids)
    base = f'{{{STAMP}, "level": "TRACE", "message": "m"'
    if rng.random() < 0.7:  # lines a block path reads in place, between action lines
        return rng.choice(
            [
                f'{base}, "action": "A", "event": "exit", "trace_id":"{tid}"}}',
                f'{base}, "action": "A", "event": "enter", "trace_id":"{tid}"}}',
                f'{base}, "action": "A", "event": "error", "trace_id":"{tid}"}}',
                f'{base}, "\\u0061ction": "A", "event": "enter", "trace_id": "{tid}"}}',
            ]
        )
    return rng.choice(
        [
            "",
            "  ",
            "not json",
            f'{base}, "event": "exit", "trace_id": "{tid}"}}',  # no action key: not an action
            # Action records in another shape (read by json.loads, in their place).
            f'{base}, "action": "A", "event": "exit", "trace_id":"{tid}"}}',
            f'{base}, "action": "A", "event": "enter", "trace_id":"{tid}"}}',
            f'{base}, "action": "A", "event": "exit", "trace_id": "{tid}", "x": {{"a": 1}}}}',
            f'{base}, "action": "A", "event": "exit", "trace_id": "{tid}"}}tail',
            f'{base}, "\\u0061ction": "A", "event": "enter", "trace_id": "{tid}"}}',
            f'{base}, "action": "A", "event": "enter", "trace_id": "a\\"b"}}',
            f'{base}, "action": "A", "event": "bogus", "trace_id": "{tid}"}}',
            f'{base}, "action": "A", "event": "enter", "trace_id": "{tid}", "trace_id": "z"}}',
            f'{base}, "action": "A", "event": "enter", "trace_id": "{tid}", "start_time": "x"}}',
            f'{base}, "action": "A", "event": "enter", "trace_id": "{tid}"}}{{{STAMP}}}',
            f'{base}, "action": "A", "detail": "caf\u00e9", "event": "enter", "trace_id": "{tid}"}}',
        ]
    )


def _file(seed: int) -> bytes:
    rng = random.Random(seed)
    # Few trace ids: ids are reused, ended before entered, entered twice.
    ids = [f"id{i}" for i in range(rng.choice([3, 12, 400]))]
    odd_rate = rng.choice([0.0, 0.002, 0.05])
    lines = []
    for _ in range(rng.choice([40, 600, 4000])):
        r = rng.random()
        if r < odd_rate:
            lines.append(_odd(rng, ids))
        elif r < 0.06:
            lines.append(f'{{{STAMP}, "level": "HTTP", "message": "POST {rng.random()}"}}')
        elif r < 0.07:
            record = {"timestamp": "t", "level": "INFO", "message": "[autotrace] process start"}
            lines.append(json.dumps({**record, "event_kind": "process", "pid": 1}))
        else:
            lines.append(_action(rng, ids, ours=seed % 2 == 0))
    data = "\n".join(lines).encode()
    if seed % 3:
        data += b"\n"
    if seed % 5 == 0:
        data = data[: rng.randrange(len(data) + 1)]  # torn
    return data


def _state(scanner: TraceScanner, data: bytes, seed: int) -> tuple[object, ...]:
    rng = random.Random(seed)
    scanner.orphans = []
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 97, 4096, 1 << 17, 1 << 20])
        scanner.feed(data[pos : pos + step])
        pos += step
    scanner.close()
    orphans = [(t, e, None if e == "exit" else line) for t, e, line in scanner.orphans]
    return (
        list(scanner.running.items()),
        {name: list(bucket.items()) for name, bucket in scanner.finished.items()},
        orphans,
        scanner.agent_records,
        vars(scanner.problems),
        scanner.lines,
    )


@pytest.mark.parametrize("seed", range(80))
def test_block_path_keeps_the_state_the_line_path_keeps(seed: int) -> None:
    data = _file(seed)
    assert _state(TraceScanner("f"), data, seed) == _state(LineByLine("f"), data, seed)
