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
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hard_support.secrets_corpus import SECRETS, windows
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
    with LLMServer(script) as server:
        yield server


def _trace_bytes(directory: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(directory.iterdir()):
        data = path.read_bytes()
        out[path.name] = gzip.decompress(data) if path.name.endswith(".gz") else data
    return out


def _leaks(files: dict[str, bytes]) -> list[str]:
    """Corpus forms one of whose 12-character windows is in some file (raw or JSON-escaped)."""
    found = []
    for form, secret in SECRETS.items():
        needles = set()
        for window in windows(secret):
            needles.add(window.encode())
            needles.add(json.dumps(window)[1:-1].encode())
        if any(needle in data for data in files.values() for needle in needles):
            found.append(form)
    return found


@pytest.mark.slow
def test_no_secret_of_the_corpus_reaches_a_trace_file(
    tmp_path: Path,
    llm: LLMServer,
    s3_server,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    assert len(SECRETS) >= 30
    trace_dir = tmp_path / "traces"
    env = {
        **os.environ,
        **s3_server.env,
        "LLM_URL": llm.base_url,
        "SECRETS_WORK_DIR": str(tmp_path),
        "MY_SERVICE_SECRET": SECRETS["env MY_SERVICE_SECRET"],
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
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "[autotrace]" not in done.stderr, done.stderr

    # The calls were really traced (otherwise the search below proves nothing).
    scan = scan_dir(trace_dir)
    assert scan.torn == 0
    actions = scan.actions()
    by_action = Counter((r["action"], r["event"]) for r in actions)
    assert by_action[("Subprocess", "enter")] >= 3  # python child, missing program, shell
    assert by_action[("Docker", "enter")] == 1
    assert by_action[("Model", "enter")] == 4 and by_action[("Model", "error")] == 2
    assert by_action[("S3", "enter")] >= 2 and by_action[("S3", "error")] >= 1
    assert by_action[("Tool Call", "error")] == 7
    assert pairing(scan.records).unpaired == []
    processes = [r for r in scan.records if r["message"].startswith("[autotrace] process start")]
    assert len(processes) >= 2  # the program and its traced Python child
    assert sum(1 for r in scan.records if r["message"].startswith("[db]")) == 2

    # Every file of the run is private, and so is the directory the run created.
    assert stat.S_IMODE(trace_dir.stat().st_mode) == 0o700
    for path in trace_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    files = _trace_bytes(trace_dir)
    leaks = _leaks(files)
    report(
        request.config,
        "secrets",
        forms=len(SECRETS),
        trace_files=len(files),
        records=len(scan.records),
        secrets_found=len(leaks),
    )
    assert leaks == []


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
