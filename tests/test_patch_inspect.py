"""The inspect_ai patch with the installed (newest) inspect, in traced child processes.

inspect binds names with ``from ... import ...`` when it is imported, so the agent must be
active before that: each test runs a program from tests/inspect_tasks/scenarios.py under
the bootstrap (PYTHONPATH=sitecustomize_example), as `inspect-trace run` does.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from autotrace.patches._tool_call import call_detail as function_call

ROOT = Path(__file__).parent.parent
SCENARIOS = Path(__file__).parent / "inspect_tasks" / "scenarios.py"
BIN = Path(sys.executable).parent


def run_scenario(python: Path | str, args: list[str], env_extra: dict[str, str]) -> dict[str, Any]:
    """Run a scenario under the bootstrap; its one line of facts, parsed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOTRACE_", "INSPECT_"))}
    env.update(PYTHONPATH=str(ROOT / "sitecustomize_example"), **env_extra)
    result = subprocess.run(
        [str(python), str(SCENARIOS), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[autotrace]" not in result.stderr, result.stderr  # no patch turned itself off
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def records_of(directory: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(directory.glob("trace-*")):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt") as f:  # type: ignore[operator]
            out.extend(json.loads(line) for line in f if line.strip())
    return out


def enters(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["action"], r["detail"]) for r in records if r.get("event") == "enter"]


def outside_eval_actions(python: Path | str, tmp_path: Path, url: str) -> list[dict[str, Any]]:
    """Run the outside_eval scenario; check its results are as without us; its records."""
    directory = tmp_path / "traces"
    facts = run_scenario(python, ["outside_eval", url], {"AUTOTRACE_DIR": str(directory)})
    assert facts == {
        "completion": "Hello! This is the local test model.",
        "subtasks": ["A", "b!"],
        "sandbox": "sandboxed",
        "subtask_is_coroutine": True,
    }
    records = [r for r in records_of(directory) if "action" in r]
    ended = {r["trace_id"] for r in records if r["event"] != "enter"}
    assert all(r["trace_id"] in ended for r in records)
    return records


def assert_one_action_per_call(records: list[dict[str, Any]]) -> None:
    seen = enters(records)
    # one generate is one Model action (the client call inside is not a second one)
    assert seen.count(("Model", "generate (openai/test)")) == 1, seen
    assert ("Subtask", "bare_subtask") in seen and ("Subtask", "named_subtask") in seen
    # sandbox exec and the process it starts are the same work: one Subprocess
    assert seen.count(("Subprocess", "echo sandboxed")) == 1, seen
    assert len([a for a, _ in seen if a == "Model"]) == 1, seen


def test_function_call_detail_is_readable_and_shortened() -> None:
    assert function_call("bash", {"cmd": "ls -la"}) == "bash(cmd='ls -la')"
    assert function_call("f", {}) == "f()"
    long = function_call("write", {"path": "/tmp/x", "text": "y" * 500})
    assert long.startswith("write(path='/tmp/x', text='yyy") and len(long) <= 200
    assert "..." in long


def test_calls_outside_an_eval_are_each_one_action(
    tmp_path: Path,
    llm: Any,
) -> None:
    """No inspect handler yet: inspect's own trace_action calls are written by us, once."""
    records = outside_eval_actions(sys.executable, tmp_path, llm.openai_url)
    assert_one_action_per_call(records)


def test_native_and_agent_records_share_one_file_and_survive_inspect_gzip(
    tmp_path: Path,
) -> None:
    """inspect's handler on: one file per process, gzipped at exit with nothing lost."""
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}  # inspect's default trace dir, isolated
    directory = tmp_path / "xdg" / "inspect_ai" / "traces"
    facts = run_scenario(sys.executable, ["native_at_exit"], env)

    assert facts["env"] is None
    files = sorted(p.name for p in directory.iterdir())
    pid = Path(facts["writer"]).name[len("trace-") : -len(".log")]
    assert files == [f"trace-{pid}.log.gz"]  # inspect gzipped our shared file, nothing else
    assert (directory / files[0]).stat().st_mode & 0o777 == 0o600
    records = records_of(directory)
    by_detail = {r["detail"]: r for r in records if r.get("event") == "enter"}
    native = by_detail["probe(x=1)"]
    assert "source" not in native  # written by inspect's handler
    assert by_detail["inside the native action"]["parent_id"] == native["trace_id"]
    # a native action inside one of ours: inspect's own enter line names its parent (no
    # line of ours is needed for it), and only the enter line
    inner = by_detail["native inside ours"]
    assert inner["parent_id"] == by_detail["ours, around a native action"]["trace_id"]
    assert "source" not in inner
    assert not [r for r in records if "action" not in r and r.get("trace_id") == inner["trace_id"]]
    inner_end = [r for r in records if r.get("trace_id") == inner["trace_id"] and r is not inner]
    assert inner_end and all("parent_id" not in r for r in inner_end)
    assert "parent_id" not in native  # at the top: no parent to name
    # the same work inside inspect's Subprocess is not traced twice; its secret is masked
    assert "same work, suppressed" not in by_detail
    assert "docker run --env OPENAI_API_KEY=*** img" in by_detail
    assert "call_tool (files): read(path='a')" in by_detail  # inspect's format arguments
    assert "the mcp patch's call, suppressed" not in by_detail
    decorated = [r for r in records if r.get("detail") == "decorated"]
    assert [r["event"] for r in decorated] == ["enter", "exit", "enter", "exit"]
    assert len({r["trace_id"] for r in decorated}) == 2
    # an end written after inspect's gzip (by an earlier atexit hook) is in the .gz too
    late = by_detail["ends after inspect gzipped the file"]
    assert any(r.get("trace_id") == late["trace_id"] and r["event"] == "exit" for r in records)

    cli_env = {**os.environ, **env}
    for command in (
        [str(BIN / "inspect"), "trace", "anomalies", "--json"],
        [str(BIN / "inspect-trace"), "anomalies", "--json"],
    ):
        result = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        shown = [(r["action"], r["detail"]) for r in json.loads(result.stdout)["running"]]
        assert shown == [("Subprocess", "still running at exit")], (command, shown)


NATIVE_SECRETS_PROGRAM = """
import logging, sys
from inspect_ai._util.logger import init_logger
from inspect_ai._util.trace import trace_action, trace_message
init_logger("warning")
logger = logging.getLogger("inspect_ai.test")
trace_message(logger, "db", "connect with password=%s", "NativePw-Zz81x")
try:
    with trace_action(logger, "Subprocess", "run --token %s", "NativeTok-q81x7"):
        raise RuntimeError("failed: api_key=NativeKey-77aa")
except RuntimeError:
    pass
"""


def test_inspects_own_records_are_masked_where_the_agent_sees_them(tmp_path: Path) -> None:
    trace_file = tmp_path / "native.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOTRACE_", "INSPECT_"))}
    env.update(
        PYTHONPATH=str(ROOT / "sitecustomize_example"),
        INSPECT_TRACE_FILE=str(trace_file),
        AUTOTRACE_DIR=str(tmp_path / "ours"),
    )
    # From a file, not `-c`: this is about inspect's own records, and the header's argv would
    # hold the program's source (its literals are masked by the same rules as any text, but
    # a bare literal with no name or known format beside it reads as a word).
    program = tmp_path / "native_secrets.py"
    program.write_text(NATIVE_SECRETS_PROGRAM)
    done = subprocess.run(
        [sys.executable, str(program)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[autotrace]" not in done.stderr, done.stderr
    text = "".join(
        path.read_text() if path.suffix != ".gz" else gzip.decompress(path.read_bytes()).decode()
        for path in [*tmp_path.glob("native.log*"), *(tmp_path / "ours").glob("trace-*")]
        if path.is_file()
    )
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    messages = [r["message"] for r in lines]
    assert "[db] connect with password=***" in messages  # inspect's own line, masked
    errors = [r for r in lines if r.get("event") == "error"]
    assert errors and errors[0]["detail"] == "run --token ***"
    assert errors[0]["error"] == "failed: api_key=***"
    assert any(r.get("message") == "[autotrace] process start" for r in lines)  # ours too
    for secret in ("NativePw-Zz81x", "NativeTok-q81x7", "NativeKey-77aa"):
        assert secret not in text


@pytest.mark.parametrize(
    ("head", "sample_id"),
    [("", None), ("sample=7\n", 7), ("task=t1 sample=abc epoch=2\n", "abc")],
)
def test_inspect_messages_are_masked_in_parts_as_the_whole_text_is(
    head: str, sample_id: object
) -> None:
    """inspect's messages after its sample-context line (trace_action's, and any other:
    its HTTP request lines) mask as the whole text does; the action and event words
    stay, the secrets go."""
    import logging

    from autotrace.patches.inspect_ai import _masked_message
    from autotrace.redact import redact_text

    secret = "ghp_" + "Zq8xW2vR7tY1uI3oP5aS6dF9gH0jK4lM2nB8"

    def record(message: str, **fields: str) -> logging.LogRecord:
        made = logging.LogRecord("inspect_ai.t", 5, __file__, 1, message, None, None)
        made.__dict__.update(fields)
        if sample_id is not None:
            made.sample_id = sample_id
        return made

    for action, detail in [
        ("Subprocess", f"git push https://user:{secret}@github.com/x.git"),
        ("Tool Call", f"run(token={secret})"),
        ("Model", "generate (openai/gpt-4o)"),
        ("Token", "abcdefgh-not-a-secret"),  # a secret-looking action: masked as one text
    ]:
        message = f"{head}{action}: {detail} (enter)"
        masked = _masked_message(record(message, action=action, detail=detail, event="enter"))
        assert masked == redact_text(message), (masked, redact_text(message))
        assert secret not in masked
        assert masked.endswith(" (enter)") and (not head or masked.startswith(head))
    for text in [
        f"POST https://api.x.test/v1/chat?key={secret} HTTP/1.1 200 OK",
        f"[db] connect with password={secret}",
        "POST http://127.0.0.1:8080/v1/chat/completions HTTP/1.1 200 OK",
    ]:
        message = f"{head}{text}"
        masked = _masked_message(record(message))
        assert masked == redact_text(message), (masked, redact_text(message))
        assert secret not in masked
    # A head of more than one line, or one that is not the record's sample: the whole
    # text, masked as one.
    for odd in (f"two\nlines\nSubprocess: echo {secret} (enter)", f"sample=other\nrun {secret}"):
        assert _masked_message(
            record(odd, action="Subprocess", detail=f"echo {secret}", event="enter")
        ) == redact_text(odd)


def test_the_enter_line_names_the_parent_only_when_it_is_a_json_object() -> None:
    """inspect's formatter writes a JSON object: the parent is added as its last field.
    Any other line is left as it is, and the wrapper says so (the agent then writes its
    own line naming the parent). Only the first enter record formatted while our wrapper
    enters a native action counts; every other record passes untouched."""
    import logging

    from autotrace.patches import inspect_ai as patch

    def record(event: str, trace_id: str) -> logging.LogRecord:
        made = logging.LogRecord("inspect_ai.t", 13, __file__, 1, f"Model: x ({event})", None, None)
        made.action, made.detail, made.event, made.trace_id = "Model", "x", event, trace_id
        return made

    captured = patch._captured

    def format_with(line: str, rec: logging.LogRecord) -> str:
        result: str = patch._format_wrapper(lambda r: line, None, (rec,), {})
        return result

    assert patch.PATCH.enabled
    try:
        captured.armed, captured.id, captured.parent, captured.parent_written = (
            True,
            None,
            'p-"1',
            False,
        )
        line = format_with('{"message": "Model: x (enter)"}', record("enter", "T1"))
        assert json.loads(line) == {"message": "Model: x (enter)", "parent_id": 'p-"1'}
        assert (captured.id, captured.parent_written) == ("T1", True)
        # a second record while armed (not inspect's enter): untouched
        assert format_with('{"a": 1}', record("enter", "T2")) == '{"a": 1}'
        assert captured.id == "T1"

        captured.id, captured.parent_written = None, False
        assert format_with("Model: x (enter)", record("enter", "T3")) == "Model: x (enter)"
        assert (captured.id, captured.parent_written) == ("T3", False)

        captured.armed, captured.id = False, None  # not ours to name
        assert format_with('{"a": 1}', record("enter", "T4")) == '{"a": 1}'
        assert captured.id is None
    finally:
        captured.armed, captured.id, captured.parent = False, None, None
