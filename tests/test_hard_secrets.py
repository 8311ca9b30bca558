"""Secrets never reach a trace file; trace files and directories are private.

A real program run by ``inspect-trace run`` hands a corpus of secret forms to real
patched calls (child processes with secrets in argv and environment, shell strings,
Docker, openai and anthropic clients against tests/llm_server.py, boto3 against
tests/s3_server.py, exceptions carrying request bodies inside traced actions, details
and messages); then every window of every secret is searched in the raw bytes of
every trace file.
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hard_support.secrets_corpus import BENIGN, FORMS, SECRETS, windows
from hard_support.traces import pairing, report, scan_dir
from llm_server import LLMServer
from s3_server import moto_endpoint, s3_server  # noqa: F401  (pytest fixtures)

HERE = Path(__file__).parent
PROGRAM = HERE / "hard_support" / "secrets_program.py"
INSPECT_TRACE = Path(sys.executable).parent / "inspect-trace"


@pytest.fixture
def llm() -> Iterator[LLMServer]:
    script = [
        {"do": "reply", "text": "ok"},
        {
            "do": "error",
            "status": 401,
            "message": "Incorrect API key provided: "
            + SECRETS["openai error body echoing the key"],
        },
        {"do": "reply", "text": "ok"},
        {
            "do": "error",
            "status": 400,
            "message": "invalid request: {'user': 'bob', 'password': '"
            + SECRETS["anthropic error body with password"]
            + "'}",
        },
    ]
    # Then one error per model-error form, the form echoed in the body.
    script += [
        {"do": "error", "status": 400, "message": f"bad request: {form.text}"}
        for form in FORMS
        if form.channel == "model-error"
    ]
    with LLMServer(script) as server:
        yield server


def _trace_bytes(directory: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(directory.iterdir()):
        data = path.read_bytes()
        out[path.name] = gzip.decompress(data) if path.name.endswith(".gz") else data
    return out


def _all_secrets() -> dict[str, tuple[str, ...]]:
    """Every form of the suite: the fixed calls' SECRETS and the corpus FORMS."""
    out = {name: (secret,) for name, secret in SECRETS.items()}
    out.update((form.name, form.secrets) for form in FORMS)
    return out


def _leaks(files: dict[str, bytes]) -> list[str]:
    """Forms one of whose secrets' 12-character windows is in some file (raw or JSON-escaped)."""
    found = []
    blob = b"\n".join(files.values())
    for form, secrets in _all_secrets().items():
        needles = set()
        for secret in secrets:
            for window in windows(secret):
                needles.add(window.encode())
                needles.add(json.dumps(window)[1:-1].encode())
        if any(needle in blob for needle in needles):
            found.append(form)
    return found


@pytest.mark.slow
def test_no_secret_of_the_corpus_reaches_a_trace_file(
    tmp_path: Path,
    llm: LLMServer,
    s3_server,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    assert len(FORMS) >= 150 and len(BENIGN) >= 30
    trace_dir = tmp_path / "traces"
    env = {
        **os.environ,
        **s3_server.env,
        "LLM_URL": llm.base_url,
        "SECRETS_WORK_DIR": str(tmp_path),
        "MY_SERVICE_SECRET": SECRETS["env MY_SERVICE_SECRET"],
        "AUTOTRACE_STUCK_AFTER": "0.5",
        "AUTOTRACE_KEEP": "1000",  # every file of the run stays to be searched
        "PYTHONPATH": str(PROGRAM.parent),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("AUTOTRACE_DIR", "AUTOTRACE_FILE", "INSPECT_TRACE_FILE"):
        env.pop(name, None)
    argv_secrets = [
        "--password",
        SECRETS["argv --password"],
        f"--token={SECRETS['argv --token=']}",
        SECRETS["argv sk- key"],
    ]
    done = subprocess.run(
        [str(INSPECT_TRACE), "run", "--trace-dir", str(trace_dir), "--"]
        + [sys.executable, str(PROGRAM), *argv_secrets],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "[autotrace]" not in done.stderr, done.stderr

    # The calls were really traced (otherwise the search below proves nothing).
    scan = scan_dir(trace_dir)
    assert scan.torn == 0
    actions = scan.actions()
    by_action = Counter((r["action"], r["event"]) for r in actions)
    channels = Counter(form.channel for form in FORMS)
    assert set(channels) >= {
        "argv", "python-argv", "called-process-error", "shell", "os.system", "env-set",
        "error", "model-error", "tool", "message", "message-field", "extra", "detail",
        "stack", "httpx-error", "s3-key",
    }  # fmt: skip
    subprocesses = by_action[("Subprocess", "enter")] + by_action[("Docker", "enter")]
    assert subprocesses >= (
        channels["argv"] + 2 * channels["python-argv"] + channels["called-process-error"]
        + channels["shell"] + channels["os.system"] + channels["env-set"]
    )  # fmt: skip
    assert by_action[("Model", "enter")] == 4 + channels["model-error"]
    assert by_action[("Model", "error")] == 2 + channels["model-error"]
    assert by_action[("S3", "enter")] >= 2 + channels["s3-key"]
    tool_calls = [r for r in actions if r["action"] == "Tool Call" and r["event"] == "enter"]
    assert sum(r["detail"].startswith("echo(") for r in tool_calls) == channels["tool"]
    assert pairing(scan.records).unpaired == []
    processes = [r for r in scan.records if r["message"].startswith("[autotrace] process start")]
    assert len(processes) >= 2 + channels["python-argv"]
    messages = [r for r in scan.records if r["message"].startswith("[corpus]")]
    assert len(messages) == channels["message"] + channels["message-field"]
    stacks = [r for r in scan.records if r.get("event_kind") == "stack"]
    assert stacks, "the stuck action was not reported"
    codes = " ".join(frame["code"] for r in stacks for frame in r["stack"])
    assert codes.count("; f") + codes.count("; threading") >= channels["stack"]

    # Over-masking: every benign detail is written exactly as given.
    details = {r["detail"] for r in tool_calls}
    damaged = [detail for detail in BENIGN if detail not in details]

    # One argv, one verdict: a traced child's own process record shows its command line
    # as its parent's Subprocess record does.
    header_by_pid = {r["pid"]: r["argv"] for r in processes}
    compared = 0
    for record in actions:
        if record["action"] != "Subprocess" or record["event"] != "enter":
            continue
        argv = header_by_pid.get(record.get("child_pid"))
        if argv is not None and len(record["detail"]) < 290:
            assert shlex.join(argv) == record["detail"]
            compared += 1
    assert compared >= channels["python-argv"]

    # Every file of the run is private, and so is the directory the run created.
    assert stat.S_IMODE(trace_dir.stat().st_mode) == 0o700
    for path in trace_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    files = _trace_bytes(trace_dir)
    leaks = _leaks(files)
    report(
        request.config,
        "secrets",
        forms=len(FORMS) + len(SECRETS),
        corpus_forms=len(FORMS),
        channels=len(channels),
        trace_files=len(files),
        records=len(scan.records),
        forms_leaked=len(leaks),
        benign=len(BENIGN),
        benign_damaged=len(damaged),
    )
    assert leaks == []
    assert damaged == []


def test_trace_files_are_0600_and_a_created_directory_0700(trace_dir: Path) -> None:
    from autotrace.runtime.actions import trace_action, writer

    with trace_action("Tool Call", "one"):
        pass
    assert stat.S_IMODE(trace_dir.stat().st_mode) == 0o700
    assert writer.path is not None
    assert stat.S_IMODE(Path(writer.path).stat().st_mode) == 0o600


def test_an_existing_directory_keeps_its_permissions(trace_dir: Path) -> None:
    from autotrace.runtime.actions import trace_action, writer

    trace_dir.mkdir(mode=0o755)
    os.chmod(trace_dir, 0o755)  # whatever the umask
    with trace_action("Tool Call", "one"):
        pass
    assert stat.S_IMODE(trace_dir.stat().st_mode) == 0o755
    assert writer.path is not None and Path(writer.path).parent == trace_dir
    assert stat.S_IMODE(Path(writer.path).stat().st_mode) == 0o600


def test_every_directory_the_writer_creates_is_0700_parents_included(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "c" / "traces"
    program = "import subprocess; subprocess.run(['true'])"
    old = os.umask(0o022)  # the usual umask, whatever the test runner's
    try:
        done = subprocess.run(
            [str(INSPECT_TRACE), "run", "--trace-dir", str(nested), "--"]
            + [sys.executable, "-c", program],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    assert list(nested.glob("trace-*.log"))
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c", nested):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_inspect_data_directory_parents_come_out_0700(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": ""}
    for name in ("AUTOTRACE_DIR", "AUTOTRACE_FILE", "INSPECT_TRACE_FILE", "AUTOTRACE_DISABLE"):
        env.pop(name, None)
    code = "from autotrace import trace_action\nwith trace_action('Tool Call', 'x'):\n    pass\n"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    created = [home / ".local", home / ".local" / "share", home / ".local" / "share" / "inspect_ai"]
    created.append(created[-1] / "traces")
    for path in created:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert stat.S_IMODE(home.stat().st_mode) == 0o755  # existing: left alone
