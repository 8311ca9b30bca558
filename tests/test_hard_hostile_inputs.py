"""Hostile input to every verb of the real `inspect-trace` console script.

Each case runs the installed command in a subprocess and asserts, whatever it was fed:
no Python traceback, the exit code the README defines (0 done, 1 one ``Error:`` line,
2 click's usage block, 126/127 from ``run``), at most one line on stderr unless it is
click's usage block, strict JSON for ``--json`` (no NaN), no raw control character,
escape sequence or bidi override from a record on stdout or stderr, and the trace file
byte for byte as it was.

Classes (see tests/README.md for the figures): terminal control in record text, per
verb; malformed lines; files that are not regular files; bad option values; malformed
AUTOTRACE_* numbers under a real traced program; a reader that goes away (a real pipe
to ``head -n 1``); streams that cannot encode the text; a live traced process whose
thread name, detail and source line carry escapes (``stacks``); a third-party patch
whose entry point names carry them (``patches``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import untraced_env
from hard_support.traces import report

INSPECT_TRACE = str(Path(sys.executable).parent / "inspect-trace")
TIMEOUT = 60  # a case that takes longer has hung (a FIFO read, an endless /dev/zero)

# What must never reach a terminal raw: C0 controls but tab and newline, DEL, C1,
# bidi controls, and lone surrogates / undecodable bytes (surrogateescape below).
RAW_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)

PAYLOADS = {
    "ESC[2J clear screen": "\x1b[2J\x1b[H",
    "OSC 52 clipboard write": "\x1b]52;c;ZXZpbCBjbGlwYm9hcmQ=\x07",
    "OSC 8 hyperlink": "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "OSC 0 window title": "\x1b]0;pwned\x07",
    "DCS request": "\x1bP+q544e\x1b\\",
    "BEL": "\x07\x07\x07",
    "C1 CSI": "\x9b31mred\x9b0m",
    "C1 OSC and ST": "\x9d0;title\x9c",
    "CR overwrite": "looks safe\rEVIL",
    "backspaces": "abc\b\b\bXYZ",
    "DEL": "a\x7fb",
    "NUL": "a\x00b",
    "bidi override": "\u202eevil\u202c",
    "bidi isolate": "\u2066\u2067x\u2069",
    "lone surrogate": "a\ud800b",
}
VERBS = {
    "list": ["list", "--trace-dir", "{dir}"],
    "dump": ["dump", "{file}"],
    "anomalies --all": ["anomalies", "--all", "{file}"],
    "anomalies --json": ["anomalies", "--json", "{file}"],
    "anomalies --run": ["anomalies", "{file}", "--run"],
    "anomalies --run --json": ["anomalies", "{file}", "--run", "--json"],
}
T0 = 1795748400.0
STAMP = "2026-11-27T03:00:00.000000+00:00"
ENTER = {
    "timestamp": STAMP,
    "level": "TRACE",
    "message": "Tool Call: VALID-OPEN (enter)",
    "action": "Tool Call",
    "event": "enter",
    "trace_id": "valid-1",
    "detail": "VALID-OPEN",
    "start_time": T0,
    "pid": 1,
}


def _line(record: dict[str, Any]) -> bytes:
    # ensure_ascii: a lone surrogate is written as its JSON escape, as a real writer would.
    return json.dumps(record).encode() + b"\n"


def hostile_records(p: str, n: int = 1) -> bytes:
    """A header, a running action, an error and a stack record, ``p`` in every text field
    (trace ids numbered by ``n``)."""
    header = {
        "timestamp": STAMP,
        "level": "TRACE",
        "message": "[autotrace] process start",
        "event_kind": "process",
        "run_id": f"run-{p}",
        "pid": 1,
        "argv": ["python", f"arg-{p}"],
    }
    running = dict(
        ENTER,
        action=f"Act{p}",
        detail=f"DETAIL-{p}",
        message=f"Act{p}: DETAIL-{p} (enter)",
        trace_id=f"valid-{n}",
        thread=f"thread-{p}",
        task=f"task-{p}",
        parent_id=f"parent-{p}",
    )
    failed = dict(ENTER, trace_id=f"failed-{n}", detail=f"ERR-DETAIL-{p}", message="m (enter)")
    error = dict(
        failed,
        event="error",
        message="m (error)",
        error=f"boom-{p}",
        error_type=f"Type{p}",
        stacktrace=f"tb-{p}",
        duration=1.0,
    )
    frame = {"file": f"/src/file-{p}.py", "line": 3, "function": f"fn-{p}", "code": f"code-{p}"}
    stack = {
        "timestamp": STAMP,
        "level": "TRACE",
        "message": "[autotrace] Tool Call still running",
        "event_kind": "stack",
        "trace_id": f"valid-{n}",
        "stack": [frame],
        "where": f"/src/file-{p}.py:3 in fn-{p}",
    }
    return b"".join(_line(r) for r in (header, running, failed, error, stack))


# -- running the command ------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = untraced_env(COLUMNS="200", NO_COLOR="1", TERM="xterm-256color")
    env.update(extra)
    return env


def cli(
    *args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*(prefix or []), INSPECT_TRACE, *args],
        capture_output=True,
        timeout=TIMEOUT,
        env=env or _env(),
        stdin=subprocess.DEVNULL,
    )


def _without_permission() -> list[str]:
    """A command prefix under which file permissions hold (root reads any file): root
    without its capabilities. Staying root, not becoming another user, keeps an
    interpreter that lives under /root (pyenv's) runnable."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root without setpriv (util-linux): cannot drop capabilities")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-all", "--"]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def check(
    done: subprocess.CompletedProcess[bytes],
    code: int,
    *,
    json_out: bool = False,
    unchanged: dict[Path, str] | None = None,
) -> tuple[str, str]:
    """The common promise of every case; returns (stdout, stderr) as text."""
    out, err = _text(done.stdout), _text(done.stderr)
    assert "Traceback (most recent call last)" not in out + err, err[-3000:]
    assert done.returncode == code, (done.returncode, err[-2000:])
    assert not RAW_CONTROL.search(out), repr(RAW_CONTROL.search(out))
    assert not RAW_CONTROL.search(err), repr(err[-500:])
    assert "unexpected" not in err, err  # the last-resort net is for bugs, not inputs
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 2:
        assert "Usage:" in err and lines[-1].startswith("Error:"), err
    else:
        assert len(lines) <= 1, err
    if code == 1:
        assert lines and lines[0].startswith("Error:"), err
    if json_out and code == 0:
        _strict_json(out)
    for path, digest in (unchanged or {}).items():
        assert _digest(path) == digest, f"{path} changed"
    return out, err


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _argv(template: list[str], file: Path) -> list[str]:
    return [
        str(file) if a == "{file}" else str(file.parent) if a == "{dir}" else a for a in template
    ]


# -- 1. terminal control in record text --------------------------------------------------


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("hostile")
    files = {}
    for n, (name, payload) in enumerate(PAYLOADS.items()):
        directory = base / f"p{n}"
        directory.mkdir()
        path = directory / "trace-1.log"
        path.write_bytes(hostile_records(payload))
        files[name] = path
    return files


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_record_text_cannot_drive_the_terminal(
    hostile_files: dict[str, Path], verb: str, payload: str
) -> None:
    path = hostile_files[payload]
    before = {path: _digest(path)}
    done = cli(*_argv(VERBS[verb], path))
    out, _ = check(done, 0, json_out="json" in verb or verb == "dump", unchanged=before)
    if "json" in verb or verb == "dump":
        return
    # Shown, as visible escapes, not dropped: the user still sees what was there.
    flat = "".join(out.split())
    first = next(c for c in PAYLOADS[payload] if RAW_CONTROL.match(c))
    escaped = f"\\x{ord(first):02x}" if ord(first) < 0x100 else f"\\u{ord(first):04x}"
    assert escaped in flat, (escaped, out[:3000])
    assert "run-" in out or verb == "anomalies --all"


def test_watch_view_shows_escapes_not_controls(tmp_path: Path) -> None:
    path = tmp_path / "trace-1.log"
    path.write_bytes(b"".join(hostile_records(p, n) for n, p in enumerate(PAYLOADS.values())))
    before = _digest(path)
    watch = subprocess.Popen(
        [INSPECT_TRACE, "anomalies", str(path), "--watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    try:
        time.sleep(2.5)  # the first frame is drawn at once; rich prints it when Live stops
        watch.send_signal(signal.SIGINT)
        stdout, stderr = watch.communicate(timeout=TIMEOUT)
    finally:
        watch.kill()
    done = subprocess.CompletedProcess(watch.args, watch.returncode, stdout, stderr)
    out, _ = check(done, 0, unchanged={path: before})
    assert "\\x1b[2J" in "".join(out.split()) and "\\u202e" in out, out[:2000]


def test_watch_view_on_a_terminal_emits_only_its_own_sequences(tmp_path: Path) -> None:
    """On a real terminal (a pty) rich draws with escapes of its own: none of the record's."""
    import pty

    path = tmp_path / "trace-1.log"
    path.write_bytes(b"".join(hostile_records(p, n) for n, p in enumerate(PAYLOADS.values())))
    leader, follower = pty.openpty()
    env = _env()
    env.pop("NO_COLOR")
    watch = subprocess.Popen(
        [INSPECT_TRACE, "anomalies", str(path), "--watch"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        start_new_session=True,
    )
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"VALID-OPEN" not in seen.replace(b"\r\n", b"") and time.monotonic() < deadline:
            try:
                seen += os.read(leader, 1 << 16)
            except OSError:
                break
        watch.send_signal(signal.SIGINT)
        while True:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        assert watch.wait(timeout=TIMEOUT) == 0
    finally:
        watch.kill()
        os.close(leader)
    text = _text(seen)
    assert "Traceback" not in text
    for raw in ("\x1b[2J", "\x1b]52", "\x1b]8;;https", "\x1b]0;pwned", "\x1bP", "\x07", "\x9b"):
        assert raw not in text, repr(raw)
    for raw in ("\x9d", "\x9c", "\x7f", "\x00", "\u202e", "\u2066", "\b"):
        assert raw not in text, repr(raw)
    assert "\\x1b]52" in text and "\\u202e" in text


STACKS_PROGRAM = """\
import threading, time
from autotrace import trace_action
threading.current_thread().name = "thread-" + {payload!r}
with trace_action("Tool Call", "DETAIL-" + {payload!r}):
    print("ready", flush=True)
    time.sleep(120)  # code-{raw_comment}
"""


@pytest.mark.slow
def test_stacks_of_a_live_process_show_escapes_not_controls(tmp_path: Path) -> None:
    # The source line itself carries raw escapes (a comment may hold any but NUL and CR).
    raw = "".join(p for p in PAYLOADS.values() if "\x00" not in p and "\r" not in p)
    raw = raw.replace("\ud800", "")
    payload = "".join(PAYLOADS.values()).replace("\ud800", "")
    script = tmp_path / "hang.py"
    script.write_bytes(
        STACKS_PROGRAM.format(payload=payload, raw_comment=raw).encode("utf-8", "surrogatepass")
    )
    program = subprocess.Popen(
        [INSPECT_TRACE, "run", "--trace-dir", str(tmp_path / "traces"), "--"]
        + [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        start_new_session=True,
    )
    try:
        assert program.stdout is not None
        assert program.stdout.readline() == b"ready\n"
        done = cli("stacks", str(program.pid))
        out, _ = check(done, 0)
        flat = "".join(out.split())
        assert "DETAIL-" in out and "thread-" in out and "code-" in out, out[:3000]
        assert "\\x1b]52" in flat and "\\u202e" in flat, out[:3000]
        check(cli("stacks", str(program.pid), "--json"), 0, json_out=True)
    finally:
        os.killpg(program.pid, signal.SIGKILL)
        program.wait()


def test_patches_shows_a_hostile_entry_point_as_text(tmp_path: Path) -> None:
    dist = tmp_path / "evil_patch-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-patch\nVersion: 0.1\n")
    name = "evil\x1b[2J\x07\x9b31m\u202e"
    (dist / "entry_points.txt").write_text(
        f"[autotrace.patches]\n{name} = no_such_module_\x1b]52;c;ZXZp\x07:PATCH\n"
    )
    env = _env(PYTHONPATH=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    out, _ = check(cli("patches", env=env), 0)
    assert "evil\\x1b[2J" in "".join(out.split()), out[:3000]
    listed = _strict_json(check(cli("patches", "--json", env=env), 0, json_out=True)[0])
    assert any(row["name"] == name for row in listed)


NAME_PAYLOADS = [n for n, p in PAYLOADS.items() if not {"\x00", "/", "\ud800"} & set(p)]
NAME_VERBS = {
    "list": ["list"],
    "anomalies (newest file)": ["anomalies"],
    "dump (newest file, note line)": ["dump"],
    "anomalies --run (newest run)": ["anomalies", "--run"],
}


@pytest.mark.parametrize("payload", [*NAME_PAYLOADS, "invalid UTF-8 bytes"])
@pytest.mark.parametrize("verb", sorted(NAME_VERBS))
def test_a_hostile_file_name_is_shown_as_text(tmp_path: Path, verb: str, payload: str) -> None:
    name = b"trace-1-" + (
        b"\xff\xfe" if payload not in PAYLOADS else PAYLOADS[payload].encode("utf-8")
    )
    path = os.path.join(os.fsencode(tmp_path), name + b".log")
    with open(path, "wb") as f:
        f.write(hostile_records("x") + b"not json\n")
    done = cli(*NAME_VERBS[verb], "--trace-dir", str(tmp_path))
    out, err = check(done, 0)
    if "--run" not in verb:  # the run view names processes, not files
        assert "trace-1-" in out + err, (out, err)


def test_a_hostile_snapshot_renders_as_text() -> None:
    """The snapshot renderer takes whatever a process answered: wrong types, escapes."""
    import io

    from rich.console import Console

    from autotrace.cli.render import render_snapshot

    p = "".join(PAYLOADS.values())
    for snap in (
        {"pid": p, "trace_file": p, "actions": p, "threads": 7},
        {"actions": [1, None, {"age": "soon", "stack": "x", "detail": p}], "threads": [p]},
        {"actions": [{"age": float("nan"), "stuck_action": p, "where": p, "stack": [p, {}]}]},
        {"threads": [{"name": p, "stack": [{"file": 1, "line": p, "function": p, "code": p}]}]},
    ):
        out = io.StringIO()
        console = Console(file=out, width=120, color_system=None)
        for part in render_snapshot(snap):  # type: ignore[arg-type]
            console.print(part)
        assert not RAW_CONTROL.search(out.getvalue()), repr(out.getvalue()[:500])


def test_visible_escapes_controls_and_leaves_text_alone() -> None:
    """Over-escaping is a bug too: ordinary text, tabs, backslashes, accents, CJK, emoji
    and zero-width joiners in emoji come out as they went in."""
    from autotrace.cli.render import visible

    benign = [
        "pytest tests/test_x.py::test_a[param-1]",
        "caf\u00e9 \u4e2d\u6587 \U0001f600 \U0001f469\u200d\U0001f4bb \u05e9\u05dc\u05d5\u05dd",
        "C:\\Users\\x1b\\path\twith tab",
        "[bold]markup[/bold] stays",
    ]
    for text in benign:
        assert visible(text) == text
    assert visible("a\nb") == "a\\x0ab" and visible("a\nb", newlines=True) == "a\nb"
    for payload in PAYLOADS.values():
        shown = visible(payload)
        assert not RAW_CONTROL.search(shown), repr(shown)
        assert visible(shown) == shown  # escaping twice changes nothing


# -- 2. malformed lines ----------------------------------------------------------------

VALID = _line(ENTER)
DEEP = 200_000


def _with_start(value: str) -> bytes:
    text = json.dumps(dict(ENTER, trace_id="odd", detail="ODD")).replace(
        f'"start_time": {T0}', f'"start_time": {value}'
    )
    assert value in text
    return text.encode() + b"\n"


LINES: dict[str, bytes] = {
    "deeply nested arrays": b"[" * DEEP + b"]" * DEEP + b"\n",
    "deeply nested objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"\n",
    "deep nesting inside a record": b'{"timestamp": "x", "level": "TRACE", "message": "m", "x": '
    + b"[" * DEEP
    + b"]" * DEEP
    + b"}\n",
    "start_time NaN": _with_start("NaN"),
    "start_time Infinity": _with_start("Infinity"),
    "start_time -Infinity": _with_start("-Infinity"),
    "start_time 1e309": _with_start("1e309"),
    "start_time 1e308": _with_start("1e308"),
    "start_time -1e308": _with_start("-1e308"),
    "start_time 5000 digits": _with_start("9" * 5000),
    "start_time 1e18 (year 3e10)": _with_start("1e18"),
    "duration NaN on an error": _line(
        dict(ENTER, trace_id="e", event="error", error="x", error_type="E", detail="ODD")
    ).replace(b'"pid": 1', b'"duration": NaN'),
    "lone surrogate in detail": b'{"timestamp": "x", "level": "TRACE", "message": "m", '
    b'"action": "A", "event": "enter", "trace_id": "s", "detail": "ODD\\ud800"}\n',
    "invalid UTF-8": b'{"timestamp": "x", "level": "TRACE", "message": "\xff\xfe\x80"}\n',
    "NUL bytes": b"\x00" * 100 + b"\n",
    "BOM then a record": b"\xef\xbb\xbf" + VALID,
    "CRLF line end": VALID.replace(b"\n", b"\r\n"),
    "huge unterminated last line": b"[" * (4 << 20),
}
LINE_VERBS = {
    "dump": (["dump"], True),
    "anomalies --all": (["anomalies", "--all"], False),
    "anomalies --json": (["anomalies", "--json"], True),
    "anomalies --run --json": (["anomalies", "{file}", "--run", "--json"], True),
    "anomalies --run": (["anomalies", "{file}", "--run"], False),
}


@pytest.fixture(scope="module")
def malformed_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("malformed")
    files = {}
    for n, (name, line) in enumerate(LINES.items()):
        directory = base / f"m{n}"
        directory.mkdir()
        path = directory / "trace-1.log"
        # The valid record first and (for whole lines) after, so both sides are read.
        after = VALID.replace(b"valid-1", b"valid-after") if line.endswith(b"\n") else b""
        path.write_bytes(VALID + line + after)
        files[name] = path
    return files


@pytest.mark.parametrize("line", sorted(LINES))
@pytest.mark.parametrize("verb", sorted(LINE_VERBS))
def test_a_malformed_line_is_skipped_or_shown_never_fatal(
    malformed_files: dict[str, Path], verb: str, line: str
) -> None:
    path = malformed_files[line]
    template, as_json = LINE_VERBS[verb]
    args = _argv(template, path) if "{file}" in template else [*template, str(path)]
    done = cli(*args)
    out, err = check(done, 0, json_out=as_json, unchanged={path: _digest(path)})
    assert "VALID-OPEN" in out, out[:2000]
    if as_json:
        text = json.dumps(_strict_json(out))
        assert "NaN" not in text and "Infinity" not in text


def test_list_over_malformed_files(malformed_files: dict[str, Path]) -> None:
    base = next(iter(malformed_files.values())).parent.parent
    for path in malformed_files.values():
        check(cli("list", "--trace-dir", str(path.parent)), 0)
        check(cli("list", "--json", "--trace-dir", str(path.parent)), 0, json_out=True)
    assert base.is_dir()


# -- 3. files that are not regular files -----------------------------------------------


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    base = tmp_path_factory.mktemp("odd")
    fifo = base / "trace-2.log"
    os.mkfifo(fifo)
    (base / "trace-3.log").symlink_to(fifo)
    (base / "trace-4.log").symlink_to("/dev/zero")
    (base / "trace-5.log").symlink_to(base / "nowhere")
    (base / "trace-6.log").symlink_to(base / "trace-6.log")
    directory = base / "trace-7.log"
    directory.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(base / "trace-8.log"))
    files = {
        "a FIFO": fifo,
        "a symlink to a FIFO": base / "trace-3.log",
        "/dev/zero": Path("/dev/zero"),
        "/dev/null": Path("/dev/null"),
        "a symlink to /dev/zero": base / "trace-4.log",
        "a dangling symlink": base / "trace-5.log",
        "a symlink loop": base / "trace-6.log",
        "a directory": directory,
        "a unix socket": base / "trace-8.log",
        "a missing file with escapes in its name": base / "trace-\x1b[2J\x07\u202e.log",
    }
    yield files
    sock.close()


FILE_VERBS = {
    "dump": ["dump"],
    "anomalies": ["anomalies"],
    "anomalies --json": ["anomalies", "--json"],
    "anomalies --run": ["anomalies", "{file}", "--run"],
}
ODD = [
    "a FIFO",
    "a symlink to a FIFO",
    "/dev/zero",
    "/dev/null",
    "a symlink to /dev/zero",
    "a dangling symlink",
    "a symlink loop",
    "a directory",
    "a unix socket",
    "a missing file with escapes in its name",
]


@pytest.mark.parametrize("what", ODD)
@pytest.mark.parametrize("verb", sorted(FILE_VERBS))
def test_what_is_not_a_regular_file_is_refused_in_one_line(
    odd_files: dict[str, Path], verb: str, what: str
) -> None:
    path = odd_files[what]
    template = FILE_VERBS[verb]
    args = _argv(template, path) if "{file}" in template else [*template, str(path)]
    started = time.monotonic()
    check(cli(*args), 1)
    assert time.monotonic() - started < TIMEOUT / 2


def test_a_run_directory_holding_a_fifo_and_a_device_is_read_without_them(
    odd_files: dict[str, Path], tmp_path: Path
) -> None:
    """`--run` discovers every trace-*.log of the directory: the FIFO and the symlink to
    /dev/zero among them are passed over, not opened."""
    directory = odd_files["a FIFO"].parent
    header = {
        "timestamp": STAMP,
        "level": "TRACE",
        "message": "[autotrace] process start",
        "event_kind": "process",
        "run_id": "R1",
        "pid": 1,
        "argv": ["python"],
    }
    path = directory / "trace-1.log"
    path.write_bytes(_line(header) + VALID)
    try:
        for args in (["anomalies", "--run", "R1"], ["anomalies", str(path), "--run", "--json"]):
            out, _ = check(cli(*args, "--trace-dir", str(directory)), 0, json_out="--json" in args)
            assert "VALID-OPEN" in out
        out, _ = check(cli("list", "--trace-dir", str(directory)), 0)
        assert "trace-1.log" in out
    finally:
        path.unlink()


@pytest.mark.parametrize("verb", sorted(FILE_VERBS))
def test_an_unreadable_file_is_one_line_for_a_user_without_permission(verb: str) -> None:
    base = Path(tempfile.mkdtemp(prefix="autotrace-perm-"))
    try:
        os.chmod(base, 0o711)
        path = base / "trace-1.log"
        path.write_bytes(VALID)
        os.chmod(path, 0)
        template = FILE_VERBS[verb]
        args = _argv(template, path) if "{file}" in template else [*template, str(path)]
        _, err = check(cli(*args, prefix=_without_permission()), 1)
        assert "permission denied" in err.lower(), err
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- 4. bad option values and arguments -----------------------------------------------

USAGE = [
    ["stacks", "0"],
    ["stacks", "--", "-1"],
    ["stacks", str(2**31)],
    ["stacks", str(2**64)],
    ["stacks", "abc"],
    ["stacks", "1.5"],
    *[["stacks", "1", "--timeout", t] for t in ("-1", "0", "nan", "inf", "-inf", "1e309", "ten")],
    *[["cancel", p, "x"] for p in ("0", str(2**31), str(2**64), "abc", "1.5")],
    ["cancel", "--", "-1", "x"],
    *[["cancel", "1", "x", "--timeout", t] for t in ("-1", "0", "nan", "inf", "1e309", "ten")],
    ["cancel", "1"],
    *[
        ["anomalies", "--run", "--stuck-after", s]
        for s in ("-1", "nan", "inf", "1e309", "-0.5", "soon")
    ],
    *[["anomalies", "--watch", "--stuck-after", s] for s in ("nan", "-1")],
    ["anomalies", "--watch", "--json"],
    *[["run", "--stuck-after", s, "--", "true"] for s in ("-1", "nan", "1e309")],
    ["list", "--trace-dir", ""],
    ["dump", "--trace-dir", ""],
    ["anomalies", "--trace-dir", ""],
    ["anomalies", "--run", "--trace-dir", ""],
    ["run", "--trace-dir", "", "--", "true"],
    ["dump", ""],
    ["anomalies", ""],
    ["run"],
    ["run", "--"],
    ["patches", "--no-such-option"],
    ["no-such-verb"],
]


@pytest.mark.parametrize("args", USAGE, ids=lambda a: " ".join(a).replace("\x00", "NUL") or "''")
def test_a_bad_option_value_is_clicks_usage_error(args: list[str], tmp_path: Path) -> None:
    env = _env(AUTOTRACE_DIR=str(tmp_path))
    check(cli(*args, env=env), 2)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["stacks", str(2**31 - 1)], 1),  # in range, no such process
        (["stacks", "999999999"], 1),
        (["cancel", "999999999", "x"], 1),
        (["cancel", "1", "a\x1b[2J\u202eb"], 1),  # not a trace id: shown escaped
        (["run", "--", "/nonexistent/program\x1b[2J"], 127),
        (["run", "--", "/"], 126),
        (["run", "--", "prog\x1b]52;c;eA==\x07"], 127),
    ],
    ids=[
        "stacks max pid",
        "stacks no such pid",
        "cancel no such pid",
        "cancel escapes in trace id",
        "run missing program",
        "run a directory",
        "run escapes in name",
    ],
)
def test_a_command_that_cannot_go_on_says_so_in_one_line(
    args: list[str], code: int, tmp_path: Path
) -> None:
    check(cli(*args, env=_env(AUTOTRACE_DIR=str(tmp_path))), code)


@pytest.mark.parametrize("json_out", [False, True], ids=["table", "json"])
@pytest.mark.parametrize("header", [False, True], ids=["no header", "with run id"])
@pytest.mark.parametrize("name", ["weird.log", "trace-abc.log", "trace-.log", "notes.txt"])
def test_run_view_of_a_file_not_named_trace_pid(
    tmp_path: Path, name: str, header: bool, json_out: bool
) -> None:
    """`anomalies FILE --run` reads FILE whatever its name, with the files of its run."""
    process = {
        "timestamp": STAMP,
        "level": "TRACE",
        "message": "[autotrace] process start",
        "event_kind": "process",
        "run_id": "R-named",
        "pid": 7,
        "argv": ["python"],
    }
    path = tmp_path / name
    path.write_bytes((_line(process) if header else b"") + VALID)
    if header:  # another file of the same run, found by its name
        (tmp_path / "trace-8.log").write_bytes(
            _line(dict(process, pid=8)) + _line(dict(ENTER, trace_id="other", detail="OTHER-PROC"))
        )
    args = ["anomalies", str(path), "--run", *(["--json"] if json_out else [])]
    out, _ = check(cli(*args), 0, json_out=json_out, unchanged={path: _digest(path)})
    assert "VALID-OPEN" in out
    if header:
        assert "OTHER-PROC" in out


UNDECODABLE = "\udcff\udcfe"  # the bytes 0xff 0xfe in an argument (os.fsencode)


@pytest.mark.parametrize(
    ("args", "code", "as_json"),
    [
        (["anomalies", "--filter", UNDECODABLE, "{file}"], 0, False),
        (["anomalies", "--json", "--filter", UNDECODABLE, "{file}"], 0, True),
        (["dump", "--filter", UNDECODABLE, "{file}"], 0, True),
        (["anomalies", "--run", UNDECODABLE, "--trace-dir", "{dir}"], 1, False),
        (["dump", f"trace-{UNDECODABLE}.log", "--trace-dir", "{dir}"], 1, False),
        (["list", "--trace-dir", f"{{dir}}/{UNDECODABLE}"], 1, False),
    ],
    ids=["anomalies filter", "anomalies json filter", "dump filter", "run id", "file", "dir"],
)
def test_undecodable_bytes_in_arguments(
    hostile_files: dict[str, Path], args: list[str], code: int, as_json: bool
) -> None:
    path = hostile_files["BEL"]
    argv = [a.replace("{file}", str(path)).replace("{dir}", str(path.parent)) for a in args]
    check(cli(*argv), code, json_out=as_json, unchanged={path: _digest(path)})


def test_stacks_of_a_process_that_is_not_traced(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        check(cli("stacks", str(sleeper.pid), "--timeout", "0.5"), 1)
    finally:
        sleeper.kill()
        sleeper.wait()


# -- 5. malformed AUTOTRACE_* numbers (a real traced program) ---------------------------

ENV_CASES = [
    ("AUTOTRACE_KEEP", "nan"),
    ("AUTOTRACE_KEEP", "-1"),
    ("AUTOTRACE_KEEP", "0"),
    ("AUTOTRACE_KEEP", "2.5"),
    ("AUTOTRACE_KEEP", "inf"),
    ("AUTOTRACE_KEEP", "ten"),
    ("AUTOTRACE_STUCK_AFTER", "nan"),
    ("AUTOTRACE_STUCK_AFTER", "-1"),
    ("AUTOTRACE_STUCK_AFTER", "1e309"),
]
PROGRAM = """\
import subprocess, sys
subprocess.run([sys.executable, "-c", "print('child ran')"], check=True)
print("program ran")
"""


@pytest.mark.slow
@pytest.mark.parametrize(("name", "value"), ENV_CASES)
def test_a_malformed_number_warns_once_and_tracing_goes_on(
    tmp_path: Path, name: str, value: str
) -> None:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    traces = tmp_path / "traces"
    done = subprocess.run(
        [INSPECT_TRACE, "run", "--trace-dir", str(traces), "--", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(**{name: value}),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["child ran", "program ran"]
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and name in warnings[0] and "using" in warnings[0], done.stderr
    records = [
        json.loads(line) for f in traces.glob("trace-*.log") for line in f.read_text().splitlines()
    ]
    assert any(r.get("action") == "Subprocess" for r in records), "tracing was turned off"


def test_a_malformed_stuck_threshold_in_the_views_warns_and_uses_the_default(
    hostile_files: dict[str, Path],
) -> None:
    path = hostile_files["BEL"]
    done = cli("anomalies", str(path), "--run", env=_env(AUTOTRACE_STUCK_AFTER="nan"))
    out, err = _text(done.stdout), _text(done.stderr)
    assert done.returncode == 0 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and "AUTOTRACE_STUCK_AFTER" in err, err
    assert "DETAIL-" in out


# -- 6. the reader of our output goes away, streams that cannot encode -------------------

PIPE_VERBS = {
    "dump": ["dump", "{big}"],
    "anomalies": ["anomalies", "{big}"],
    "anomalies --json": ["anomalies", "--json", "{big}"],
    "anomalies --run": ["anomalies", "{big}", "--run"],
    "anomalies --run --json": ["anomalies", "{big}", "--run", "--json"],
    "list": ["list", "--trace-dir", "{dir}"],
    "patches": ["patches"],
}


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "trace-1.log"
    with open(path, "wb") as f:
        for i in range(20_000):
            f.write(_line(dict(ENTER, trace_id=f"t{i}", detail="x" * 200)))
    for i in range(400):  # enough files for `list` to fill a pipe buffer
        (path.parent / f"trace-{1000 + i}.log").write_bytes(VALID)
    return path


@pytest.mark.parametrize("verb", sorted(PIPE_VERBS))
def test_a_reader_that_goes_away_ends_the_verb_quietly(big_file: Path, verb: str) -> None:
    args = [
        str(big_file) if a == "{big}" else str(big_file.parent) if a == "{dir}" else a
        for a in PIPE_VERBS[verb]
    ]
    before = _digest(big_file)
    verb_proc = subprocess.Popen(
        [INSPECT_TRACE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
    )
    head = subprocess.run(
        ["head", "-n", "1"], stdin=verb_proc.stdout, capture_output=True, timeout=TIMEOUT
    )
    assert verb_proc.stdout is not None and verb_proc.stderr is not None
    verb_proc.stdout.close()
    err = verb_proc.stderr.read()
    verb_proc.stderr.close()
    code = verb_proc.wait(timeout=TIMEOUT)
    assert head.stdout.count(b"\n") == 1, head.stdout
    done = subprocess.CompletedProcess(verb_proc.args, code, b"", err)
    check(done, 0, unchanged={big_file: before})
    assert err == b"", err


@pytest.mark.parametrize(
    "verb", ["anomalies --all", "anomalies --run", "list"], ids=lambda v: f"ascii-{v}"
)
def test_an_ascii_only_stream_gets_escapes_not_an_encoding_error(
    hostile_files: dict[str, Path], verb: str
) -> None:
    path = hostile_files["lone surrogate"]
    path.parent.joinpath("trace-2.log").write_bytes(
        _line(dict(ENTER, detail="caf\u00e9 \u2603 \u4e2d\u6587 \U0001f600"))
    )
    template = {
        "anomalies --all": ["anomalies", "--all", "{file}"],
        "anomalies --run": ["anomalies", "{file}", "--run"],
        "list": ["list", "--trace-dir", "{dir}"],
    }[verb]
    for target in (path, path.parent / "trace-2.log"):
        done = cli(*_argv(template, target), env=_env(PYTHONIOENCODING="ascii", LC_ALL="C"))
        check(done, 0)
    path.parent.joinpath("trace-2.log").unlink()


TERMINAL_ENV = {
    "COLUMNS=0": {"COLUMNS": "0"},
    "COLUMNS=-1": {"COLUMNS": "-1"},
    "COLUMNS=abc": {"COLUMNS": "abc"},
    "COLUMNS=1": {"COLUMNS": "1"},
    "COLUMNS=99999999": {"COLUMNS": "99999999"},
    "LINES=0": {"LINES": "0"},
    "TERM=dumb": {"TERM": "dumb"},
}


@pytest.mark.parametrize("setting", sorted(TERMINAL_ENV))
@pytest.mark.parametrize("verb", ["anomalies --all", "anomalies --run"])
def test_an_odd_terminal_setting_still_prints_the_view(
    hostile_files: dict[str, Path], verb: str, setting: str
) -> None:
    """COLUMNS=0 used to print nothing at all, COLUMNS=99999999 to build tables for minutes."""
    path = hostile_files["BEL"]
    template = VERBS[verb] if verb in VERBS else ["anomalies", "--all", "{file}"]
    started = time.monotonic()
    out, _ = check(cli(*_argv(template, path), env=_env(**TERMINAL_ENV[setting])), 0)
    assert "DETAIL-" in out, out[:2000]
    assert time.monotonic() - started < 20


def test_figures(request: pytest.FixtureRequest) -> None:
    """The counts of this suite for tests/README.md."""
    counts = {
        "terminal_control": len(PAYLOADS) * len(VERBS)
        + (len(NAME_PAYLOADS) + 1) * len(NAME_VERBS)
        + 8,  # --watch piped and on a pty, a live process's stacks, patches, 4 snapshots
        "malformed_lines": len(LINES) * len(LINE_VERBS) + 2 * len(LINES),
        "not_regular_files": len(ODD) * len(FILE_VERBS) + 1 + len(FILE_VERBS),
        "bad_options": len(USAGE) + 6 + 6,  # + undecodable bytes in arguments
        "run_view_file_names": 16,
        "malformed_env": len(ENV_CASES) + 1,
        "broken_pipe_and_encoding": len(PIPE_VERBS) + 6,
        "terminal_settings": len(TERMINAL_ENV) * 2,
    }
    report(request.config, "hostile inputs", total=sum(counts.values()), **counts)
    assert sum(counts.values()) >= 100
