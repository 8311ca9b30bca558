"""Bad input to every CLI verb that reads traces: one clear line, a defined exit code, no traceback.

Exit codes: 0 = the file was read (skipped lines are counted on one ``note:`` line on
stderr), 1 = it cannot be read at all (one ``Error:`` line), 2 = a usage error (click's
usage block ending in one ``Error:`` line). Wherever the file can be read, its valid
records are still reported. Record text with rich markup prints literally.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hard_support.traces import report

INSPECT_TRACE = Path(sys.executable).parent / "inspect-trace"

ENTER = {
    "timestamp": "2026-11-27T03:00:00.000000+00:00",
    "level": "TRACE",
    "message": "Tool Call: VALID-OPEN (enter)",
    "action": "Tool Call",
    "event": "enter",
    "trace_id": "valid-1",
    "detail": "VALID-OPEN",
    "start_time": 1795748400.0,
}
ERR_ENTER = dict(
    ENTER, trace_id="valid-2", detail="VALID-ERR", message="Tool Call: VALID-ERR (enter)"
)
ERR_END = dict(
    ERR_ENTER,
    event="error",
    message="Tool Call: VALID-ERR (error)",
    error="boom",
    error_type="ValueError",
    duration=1.5,
)
VALID = b"".join(json.dumps(r).encode() + b"\n" for r in (ENTER, ERR_ENTER, ERR_END))
WRONG_TYPES = [
    dict(ENTER, timestamp=5),
    dict(ENTER, trace_id=7),
    dict(ENTER, start_time="soon"),
    dict(ENTER, detail=["a", "list"]),
    dict(ENTER, message=None),
    dict(ERR_END, duration="long"),
    dict(ENTER, level={}),
    dict(ENTER, action=None, event=3),
]
HUGE_LINE = 100 * 1024 * 1024


def _lines(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def _make_inputs(base: Path) -> dict[str, Path]:
    """One file (or directory) per kind of bad input; those that can be read hold VALID."""
    rng = __import__("random").Random(6)
    garbage = bytes(rng.randrange(256) for _ in range(8192))
    inputs = {
        "missing file": base / "trace-404.log",
        "directory": base / "trace-dir.log",
        "empty file": base / "trace-1.log",
        "binary garbage": base / "trace-2.log",
        "truncated gzip": base / "trace-3.log.gz",
        "100 MB single line": base / "trace-4.log",
        "JSON array and number": base / "trace-5.log",
        "wrong types": base / "trace-6.log",
        "unknown events": base / "trace-7.log",
        "unreadable file": base / "trace-8.log",
        "FIFO": base / "trace-9.log",
        "device": Path("/dev/zero"),
        "hostile numbers and nesting": base / "trace-10.log",
    }
    os.mkfifo(inputs["FIFO"])  # opening it for reading would wait for a writer forever
    inputs["directory"].mkdir()
    inputs["empty file"].write_bytes(b"")
    inputs["binary garbage"].write_bytes(garbage + b"\n" + VALID + garbage[:300])
    compressed = gzip.compress(VALID + _lines([dict(ENTER, trace_id=f"x{i}") for i in range(2000)]))
    inputs["truncated gzip"].write_bytes(compressed[: len(compressed) // 2])
    with open(inputs["100 MB single line"], "wb") as f:
        f.write(VALID)
        f.write(b'{"timestamp": "' + b"x" * HUGE_LINE + b'", "level": "TRACE"}\n')
        f.write(VALID.replace(b"valid-", b"after-huge-"))
    inputs["JSON array and number"].write_bytes(
        b'[1, 2, 3]\n42\n"text"\nnull\n[{"a": 1}]\n' + VALID
    )
    inputs["wrong types"].write_bytes(_lines(WRONG_TYPES) + VALID)
    inputs["unknown events"].write_bytes(
        _lines([dict(ENTER, event="paused"), dict(ENTER, trace_id="u2", event="resumed")]) + VALID
    )
    inputs["unreadable file"].write_bytes(VALID)
    os.chmod(inputs["unreadable file"], 0)
    head = json.dumps(dict(ENTER, trace_id="h"))[:-1]
    inputs["hostile numbers and nesting"].write_bytes(
        b"".join(
            (head.replace('"start_time": 1795748400.0', f'"start_time": {value}') + "}\n").encode()
            for value in ("NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1e300")
        )
        + b'{"timestamp": "t", "level": "HTTP", "message": "m", "x": NaN}\n'
        + b'{"timestamp": "t", "level": "HTTP", "message": "m", "x": '
        + b"[" * 200_000
        + b"]" * 200_000
        + b"}\n"
        + b'{"timestamp": "t", "level": "HTTP", "message": "m", "x": '
        + b'{"a": ' * 100_000
        + b"1"
        + b"}" * 100_000
        + b"}\n"
        + VALID
    )
    return inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    base = tmp_path_factory.mktemp("bad-input")
    made = _make_inputs(base)
    yield made
    shutil.rmtree(base, ignore_errors=True)


def _unprivileged() -> list[str]:
    """A command prefix under which permission bits apply (root ignores them)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permission bits cannot be enforced")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def _cli(*args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    env.pop("AUTOTRACE_DIR", None)
    return subprocess.run(
        [*(prefix or []), str(INSPECT_TRACE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


VERBS = {
    "dump": (["dump"], ("VALID-OPEN", "VALID-ERR")),
    "anomalies": (["anomalies"], ("VALID-OPEN",)),
    "anomalies --all": (["anomalies", "--all"], ("VALID-OPEN", "VALID-ERR")),
    "anomalies --json": (["anomalies", "--json"], ("VALID-OPEN", "VALID-ERR")),
    # The file before --run: "--run FILE" would take FILE as the run id.
    "anomalies --run": (["anomalies", "{file}", "--run"], ("VALID-OPEN",)),
}


def _argv(args: list[str], file: Path) -> list[str]:
    """The verb's arguments with the file in its place (last unless placed by {file})."""
    if "{file}" in args:
        return [str(file) if a == "{file}" else a for a in args]
    return [*args, str(file)]


UNREADABLE = {"missing file", "directory", "unreadable file", "FIFO", "device"}
READABLE = [
    "empty file",
    "binary garbage",
    "truncated gzip",
    "100 MB single line",
    "JSON array and number",
    "wrong types",
    "unknown events",
    "hostile numbers and nesting",
]


def _assert_clean(done: subprocess.CompletedProcess[str], codes: set[int]) -> None:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr
    assert done.returncode in codes, (done.returncode, done.stderr)
    stderr = [line for line in done.stderr.splitlines() if line.strip()]
    if done.returncode == 2:
        assert stderr[-1].startswith("Error:"), stderr
    else:
        assert len(stderr) <= 1, stderr
    if done.returncode == 1:
        assert stderr and stderr[0].startswith("Error:"), stderr


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} in JSON output")


@pytest.mark.parametrize("case", sorted(UNREADABLE))
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_a_file_that_cannot_be_read_is_one_error_line_and_exit_1(
    inputs: dict[str, Path], verb: str, case: str
) -> None:
    args, _ = VERBS[verb]
    prefix = _unprivileged() if case == "unreadable file" else None
    done = _cli(*_argv(args, inputs[case]), prefix=prefix)
    _assert_clean(done, {1})
    name = inputs[case].name
    assert name in done.stderr


def _readable_params() -> list:
    return [
        pytest.param(verb, case, id=f"{verb}-{case}") for verb in sorted(VERBS) for case in READABLE
    ]


@pytest.mark.parametrize(("verb", "case"), _readable_params())
def test_bad_lines_are_one_note_and_valid_records_are_still_reported(
    inputs: dict[str, Path], verb: str, case: str
) -> None:
    args, expected = VERBS[verb]
    done = _cli(*_argv(args, inputs[case]))
    _assert_clean(done, {0})
    if case == "empty file":
        return
    for marker in expected:
        assert marker in done.stdout, (marker, done.stdout[:2000])
    if case == "100 MB single line" and verb in ("dump", "anomalies --json", "anomalies --all"):
        assert "after-huge-2" in done.stdout or "VALID-ERR" in done.stdout
    if verb in ("anomalies --json", "dump"):
        json.loads(done.stdout, parse_constant=_no_constant)  # strict JSON: no NaN/Infinity
    if verb == "dump":
        records = json.loads(done.stdout)
        assert all(isinstance(r, dict) for r in records)
    if verb == "anomalies --run":  # a run's view does not count skipped lines (yet)
        assert len(done.stderr.splitlines()) <= 1
    else:
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("note:")


def test_list_over_a_directory_of_bad_files_lists_them_all(
    inputs: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    directory = inputs["empty file"].parent
    for args in (["list"], ["list", "--json"]):
        done = _cli(*args, "--trace-dir", str(directory))
        _assert_clean(done, {0})
    listed = {
        Path(f["path"]).name if "path" in f else json.dumps(f) for f in json.loads(done.stdout)
    }
    for case in READABLE:
        assert any(inputs[case].name in entry for entry in listed), (case, listed)
    report(
        request.config, "cli bad input", verbs=len(VERBS) + 1, cases=len(READABLE) + len(UNREADABLE)
    )


@pytest.mark.parametrize(
    ("what", "target", "codes"),
    [
        ("a missing directory", "missing", {1}),
        ("a regular file", "file", {1}),
        ("a directory without permission", "unreadable", {1}),
    ],
)
def test_list_and_default_file_over_a_bad_trace_directory(
    tmp_path: Path, what: str, target: str, codes: set[int]
) -> None:
    directory = tmp_path / "traces"
    prefix = None
    if target == "file":
        directory.write_bytes(VALID)
    elif target == "unreadable":
        directory.mkdir()
        (directory / "trace-1.log").write_bytes(VALID)
        os.chmod(directory, 0)
        prefix = _unprivileged()
    try:
        for args in (["list"], ["list", "--json"], ["dump"], ["anomalies"], ["anomalies", "--run"]):
            done = _cli(*args, "--trace-dir", str(directory), prefix=prefix)
            if args == ["list", "--json"] and target == "missing":
                _assert_clean(done, {0})  # for programs: an empty listing
                assert json.loads(done.stdout) == []
                continue
            _assert_clean(done, codes)
    finally:
        if directory.is_dir():
            os.chmod(directory, stat.S_IRWXU)


MARKUP = "[bold]BOLD[/bold] [link=https://evil.example]click me[/link] [red]RED"


def test_rich_markup_in_record_text_prints_literally(tmp_path: Path) -> None:
    path = tmp_path / "trace-1.log"
    records = [
        dict(ENTER, detail=MARKUP, message=f"Tool Call: {MARKUP} (enter)"),
        dict(ERR_ENTER, detail=MARKUP, message=f"Tool Call: {MARKUP} (enter)"),
        dict(ERR_END, detail=MARKUP, message=f"Tool Call: {MARKUP} (error)", error=MARKUP),
    ]
    path.write_bytes(_lines(records))
    header = {
        "timestamp": ENTER["timestamp"],
        "level": "TRACE",
        "message": "[autotrace] process start",
        "event_kind": "process",
        "run_id": "[bold]RUN[/bold]",
        "pid": 1,
        "argv": ["python", "[bold]BOLD[/bold]", "[link=https://evil.example]click"],
    }
    path.write_bytes(_lines([header, *records]))
    for args in (
        ["anomalies"],
        ["anomalies", "--all"],
        ["anomalies", "{file}", "--run"],
        ["list", "--trace-dir", str(tmp_path)],
    ):
        done = _cli(*_argv(args, path)) if args[0] == "anomalies" else _cli(*args)
        _assert_clean(done, {0})
        text = " ".join(done.stdout.split())  # rich may wrap long cells
        assert "[bold]BOLD[/bold]" in text or "[bold]BOLD[/bo" in text, done.stdout
        if args[0] == "anomalies":
            assert "[link=https://evil.example]click" in text, done.stdout
        assert "\x1b]8;" not in done.stdout  # no terminal hyperlink escape
        assert "\x1b[1m" not in done.stdout  # nothing turned bold
