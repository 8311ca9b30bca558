"""`inspect-trace list | dump | anomalies`: output, defaults, escaping, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from autotrace.cli.main import main

T0 = 1_795_700_000.0


def line(**record: object) -> str:
    base: dict[str, object] = {
        "timestamp": "2026-11-27T03:00:00.000000+00:00",
        "level": "TRACE",
    }
    base.update(record)
    return json.dumps(base) + "\n"


def action(event: str, tid: str, detail: str, **extra: object) -> str:
    fields: dict[str, object] = {
        "message": f"Model: {detail} ({event})",
        "action": "Model",
        "event": event,
        "trace_id": tid,
        "detail": detail,
    }
    if event == "enter":
        fields["start_time"] = extra.pop("start_time", T0)
    else:
        fields["duration"] = extra.pop("duration", 2.0)
    if event == "error":
        fields.update(error="it broke", error_type="ValueError", stacktrace="Traceback...")
    fields.update(extra)
    return line(**fields)


HEADER = line(
    message="[autotrace] process start",
    event_kind="process",
    run_id="run-42",
    pid=321,
    parent_pid=None,
    argv=["python", "eval.py", "--limit", "3"],
)
BODY = (
    HEADER
    + action("enter", "r1", "still going", pid=321)
    + action("enter", "c1", "was cancelled", pid=321)
    + action("cancel", "c1", "was cancelled", pid=321)
    + action("enter", "e1", "failed call", pid=321)
    + action("error", "e1", "failed call", pid=321)
    + action("enter", "t1", "too slow", pid=321)
    + action("timeout", "t1", "too slow", pid=321)
    + action("enter", "x1", "fine", pid=321)
    + action("exit", "x1", "fine", pid=321)
)


@pytest.fixture
def traces(tmp_path: Path) -> Path:
    directory = tmp_path / "traces"
    directory.mkdir()
    (directory / "trace-100.log").write_text(action("enter", "old", "older file"))
    os.utime(directory / "trace-100.log", (1000, 1000))
    (directory / "trace-321.log").write_text(BODY)
    return directory


def run(*args: str) -> Result:
    # A wide terminal, so that table cells are not folded.
    return CliRunner(env={"COLUMNS": "250"}).invoke(main, list(args), catch_exceptions=False)


def test_every_verb_has_help() -> None:
    for verb in ("list", "dump", "anomalies"):
        result = run(verb, "--help")
        assert result.exit_code == 0 and "--trace-dir" in result.output
    assert run("--help").exit_code == 0


def test_list_json_newest_first_with_process_info(traces: Path) -> None:
    result = run("list", "--json", "--trace-dir", str(traces))
    assert result.exit_code == 0
    files = json.loads(result.stdout)
    assert [Path(f["file"]).name for f in files] == ["trace-321.log", "trace-100.log"]
    newest = files[0]
    assert (newest["pid"], newest["run_id"]) == (321, "run-42")
    assert newest["argv"] == ["python", "eval.py", "--limit", "3"]
    assert newest["size"] == len(BODY) and newest["mtime"] > 1000
    assert files[1]["pid"] == 100 and files[1]["run_id"] is None


def test_list_table_for_people(traces: Path) -> None:
    result = run("list", "--trace-dir", str(traces))
    assert result.exit_code == 0
    assert "trace-321.log" in result.stdout and "run-42" in result.stdout
    assert result.stdout.index("trace-321.log") < result.stdout.index("trace-100.log")


def test_trace_dir_defaults_to_autotrace_dir(traces: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTRACE_DIR", str(traces))
    files = json.loads(run("list", "--json").stdout)
    assert len(files) == 2


def test_dump_is_a_json_array_and_filters(traces: Path) -> None:
    result = run("dump", "--trace-dir", str(traces))
    records = json.loads(result.stdout)
    assert len(records) == BODY.count("\n") and records[0]["run_id"] == "run-42"
    filtered = json.loads(
        run("dump", "trace-321.log", "--filter", "FAILED", "--trace-dir", str(traces)).stdout
    )
    assert [r["event"] for r in filtered] == ["enter", "error"]
    empty = json.loads(run("dump", "--filter", "no such text", "--trace-dir", str(traces)).stdout)
    assert empty == []


def test_anomalies_json_envelope(traces: Path) -> None:
    result = run("anomalies", "--json", "--trace-dir", str(traces))
    assert result.exit_code == 0
    envelope = json.loads(result.stdout)
    assert set(envelope) >= {"trace_file", "as_of", "running", "cancelled", "errors", "timeouts"}
    assert envelope["trace_file"] == (traces / "trace-321.log").as_posix()
    ids = {
        k: [r["trace_id"] for r in envelope[k]]
        for k in ("running", "cancelled", "errors", "timeouts")
    }
    assert ids == {"running": ["r1"], "cancelled": ["c1"], "errors": ["e1"], "timeouts": ["t1"]}
    row = envelope["errors"][0]
    assert {
        "action",
        "detail",
        "start_time",
        "duration",
        "error",
        "trace_id",
        "pid",
        "parent_id",
    } <= set(row)
    assert (row["detail"], row["error"], row["start_time"], row["pid"]) == (
        "failed call",
        "it broke",
        T0,
        321,
    )
    running = envelope["running"][0]
    assert running["duration"] == pytest.approx(envelope["as_of"] - T0)


def test_anomalies_table_hides_errors_unless_all(traces: Path) -> None:
    default = run("anomalies", "--trace-dir", str(traces)).stdout
    assert "still going" in default and "was cancelled" in default
    assert "failed call" not in default and "too slow" not in default
    everything = run("anomalies", "--all", "--trace-dir", str(traces)).stdout
    assert "failed call" in everything and "it broke" in everything and "too slow" in everything
    assert "321" in everything


def test_anomalies_without_any_says_so(tmp_path: Path) -> None:
    path = tmp_path / "trace-5.log"
    path.write_text(action("enter", "a", "ok") + action("exit", "a", "ok"))
    assert "No running or cancelled actions" in run("anomalies", str(path)).stdout
    assert "No anomalies found" in run("anomalies", str(path), "--all").stdout


def test_record_text_is_printed_literally_not_as_markup(tmp_path: Path) -> None:
    path = tmp_path / "trace-6.log"
    detail = "[bold]not bold[/bold] [red]x[/red] [link=http://e]y"
    path.write_text(action("enter", "m", detail))
    result = run("anomalies", str(path))
    assert result.exit_code == 0
    assert detail in result.stdout.replace("\n", "")


def test_bad_lines_give_one_note_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "trace-7.log"
    path.write_text(action("enter", "m", "kept") + "garbage\n\n" + '{"timestamp": "x", "le')
    result = run("anomalies", str(path), "--json")
    assert [r["detail"] for r in json.loads(result.stdout)["running"]] == ["kept"]
    notes = result.stderr.strip().splitlines()
    assert len(notes) == 1 and "skipped 3 line(s) in trace-7.log" in notes[0]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty_dir", "no trace files"),
        ("missing", "does not exist"),
        ("directory", "is a directory"),
        ("bad_gzip", "not a gzip file"),
    ],
)
def test_errors_are_one_line_exit_1_no_traceback(tmp_path: Path, setup: str, message: str) -> None:
    directory = tmp_path / "traces"
    directory.mkdir()
    args = ["anomalies", "--trace-dir", str(directory)]
    if setup == "missing":
        args.append("trace-999.log")
    elif setup == "directory":
        (directory / "sub").mkdir()
        args.append(str(directory / "sub"))
    elif setup.endswith("gzip"):
        gz = directory / "trace-1.log.gz"
        gz.write_bytes(b"plain text")
    for verb in ("anomalies", "dump"):
        result = CliRunner().invoke(main, [verb, *args[1:]])
        assert result.exit_code == 1, result.output
        assert message in result.stderr
        assert "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_unreadable_file_is_one_line_error(tmp_path: Path) -> None:
    # Root reads any file: then the command runs with nobody's effective uid.
    directory = Path(tempfile.mkdtemp(prefix="autotrace-perm-"))
    try:
        directory.chmod(0o755)
        path = directory / "trace-8.log"
        path.write_text(action("enter", "a", "x"))
        path.chmod(0)
        # (Not setpriv + a new interpreter: a pyenv Python under /root, 0700, cannot
        # load its libpython as nobody.) The effective uid alone decides file access.
        dropped = os.geteuid() == 0
        if dropped:
            # Every module the command imports is loaded first: nobody cannot read them.
            readable = directory / "trace-9.log"
            readable.write_text(action("enter", "a", "x"))
            CliRunner().invoke(main, ["anomalies", str(readable)])
            os.setegid(65534)
            os.seteuid(65534)
        try:
            result = CliRunner().invoke(main, ["anomalies", str(path)])
        finally:
            if dropped:
                os.seteuid(0)
                os.setegid(0)
        code, stderr = result.exit_code, result.stderr
        assert code == 1 and "permission denied" in stderr
        assert len(stderr.strip().splitlines()) == 1
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_console_script_and_module_entry_point(traces: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "autotrace", "anomalies", "--json", "--trace-dir", str(traces)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert [r["trace_id"] for r in json.loads(out.stdout)["running"]] == ["r1"]
    missing = subprocess.run(
        [sys.executable, "-m", "autotrace", "dump", "nope.log", "--trace-dir", str(traces)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and missing.stderr.startswith("Error: ")
    assert len(missing.stderr.strip().splitlines()) == 1
