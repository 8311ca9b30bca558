"""Compatibility with the real inspect-ai: its reader accepts our lines; both CLIs agree.

`inspect trace anomalies FILE --json` (inspect's own CLI, run as a subprocess) and
`inspect-trace anomalies FILE --json` must put the same actions in each bucket, on
files we write and on files inspect writes. inspect's rows carry no trace_id, so
every action here has a unique detail, and buckets are compared by detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from inspect_ai._util.trace import ActionTraceRecord, read_trace_file

from autotrace.runtime import actions
from autotrace.runtime.actions import start_action, trace_action, trace_message

BIN = Path(sys.executable).parent
BUCKETS = ("running", "cancelled", "errors", "timeouts")


def _child_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("AUTOTRACE_", "INSPECT_TRACE"))
    }


def inspect_buckets(path: Path, *extra: str) -> dict[str, list[str]]:
    out = subprocess.run(
        [str(BIN / "inspect"), "trace", "anomalies", str(path), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=_child_env(),
    )
    assert out.returncode == 0, out.stderr
    assert "skipped" not in out.stderr, out.stderr
    data = json.loads(out.stdout)
    return {k: sorted(row["detail"] for row in data[k]) for k in BUCKETS}


def our_buckets(path: Path, *extra: str) -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-m", "autotrace", "anomalies", str(path), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=_child_env(),
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return {k: sorted(row["detail"] for row in data[k]) for k in BUCKETS}


def write_every_outcome() -> None:
    """Our API writes exit, error, cancel (three ways), timeout and running actions."""
    with trace_action("Model", "returns normally"):
        pass
    with contextlib.suppress(ValueError):
        with trace_action("Tool Call", 'raises ValueError with "quotes" and \u00e9'):
            raise ValueError("no such tool")
    with contextlib.suppress(TimeoutError):
        with trace_action("Subprocess", "sleep 100 (timed out)"):
            raise TimeoutError
    with contextlib.suppress(subprocess.TimeoutExpired):
        with trace_action("Subprocess", "docker compose exec (TimeoutExpired)"):
            raise subprocess.TimeoutExpired(["docker"], 1.0)
    with contextlib.suppress(KeyboardInterrupt):
        with trace_action("Model", "interrupted by ctrl-c"):
            raise KeyboardInterrupt

    async def cancelled() -> None:
        async def work() -> None:
            async with trace_action("Model", "asyncio task cancelled"):
                await asyncio.sleep(60)

        task = asyncio.create_task(work())
        await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    with trace_action("Subtask", "outer finished"):
        with contextlib.suppress(RuntimeError):
            with trace_action("S3", "PutObject s3://bucket/inner-error"):
                raise RuntimeError("access denied")
    trace_message("autotrace", "a plain message between actions", extra_key=[1, 2])
    start_action("Docker", "docker run --rm busybox sleep 600 (left running)")
    start_action("Model", "generate (openai/gpt-4o) [bold]left running[/bold]")


EXPECTED_OURS = {
    "running": sorted(
        [
            "docker run --rm busybox sleep 600 (left running)",
            "generate (openai/gpt-4o) [bold]left running[/bold]",
        ]
    ),
    "cancelled": sorted(["interrupted by ctrl-c", "asyncio task cancelled"]),
    "errors": sorted(
        ['raises ValueError with "quotes" and \u00e9', "PutObject s3://bucket/inner-error"]
    ),
    "timeouts": sorted(["sleep 100 (timed out)", "docker compose exec (TimeoutExpired)"]),
}


@pytest.fixture
def our_file(trace_dir: Path) -> Path:
    write_every_outcome()
    actions.open_actions.clear()
    path = trace_dir / f"trace-{os.getpid()}.log"
    assert path.exists()
    return path


def test_inspect_reader_accepts_every_line_we_write(our_file: Path) -> None:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        parsed = read_trace_file(our_file)
    assert stderr.getvalue() == ""  # no "skipped N trace record(s)" note
    lines = [line for line in our_file.read_text().splitlines() if line.strip()]
    assert len(parsed) == len(lines)
    assert sum(isinstance(r, ActionTraceRecord) for r in parsed) == sum(
        '"action": ' in line for line in lines
    )


@pytest.mark.slow
def test_both_clis_agree_on_a_file_we_write(our_file: Path) -> None:
    ours = our_buckets(our_file)
    assert ours == EXPECTED_OURS
    assert inspect_buckets(our_file) == ours


@pytest.mark.slow
def test_both_clis_agree_with_a_filter(our_file: Path) -> None:
    for text in ("LEFT RUNNING", "(enter)"):
        assert inspect_buckets(our_file, "--filter", text) == our_buckets(
            our_file, "--filter", text
        )


INSPECT_WRITER = textwrap.dedent(
    """
    import asyncio, contextlib, logging, subprocess, sys
    from inspect_ai._util.logger import init_logger
    from inspect_ai._util.trace import trace_action, trace_message

    init_logger("warning")
    log = logging.getLogger("inspect_ai.compat")

    class SamplePrefix(logging.Filter):
        # As inspect's SampleContextFilter does inside a sample.
        def filter(self, record):
            if "sample" in str(record.msg):
                record.msg = "sample=3\\n" + record.getMessage()
                record.args = None
                record.sample_id, record.epoch = 3, 1
            return True

    log.addFilter(SamplePrefix())
    with trace_action(log, "Model", "inspect exit"):
        pass
    with contextlib.suppress(ValueError):
        with trace_action(log, "Tool Call", "inspect error %s", "with arg"):
            raise ValueError("bad tool")
    with contextlib.suppress(TimeoutError):
        with trace_action(log, "Subprocess", "inspect timeout"):
            raise TimeoutError()
    with contextlib.suppress(KeyboardInterrupt):
        with trace_action(log, "Model", "inspect cancel"):
            raise KeyboardInterrupt()
    with contextlib.suppress(ValueError):
        with trace_action(log, "Model", "inspect sample error"):
            raise ValueError("in a sample")
    trace_message(log, "HTTP", "POST https://api 200 OK")
    log.log(logging.INFO, "an info record with module and line keys")
    running = trace_action(log, "Subprocess", "inspect sample left running")
    running.__enter__()
    sys.stdout.write("ok\\n")
    """
)


@pytest.fixture(scope="module")
def inspect_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trace file written by inspect itself (gzipped at exit, as inspect does)."""
    directory = tmp_path_factory.mktemp("inspect-traces")
    path = directory / "trace-inspect.log"
    env = {**_child_env(), "INSPECT_TRACE_FILE": str(path)}
    out = subprocess.run(
        [sys.executable, "-c", INSPECT_WRITER],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr
    gz = path.with_suffix(".log.gz")
    assert gz.exists() and not path.exists()
    return gz


@pytest.mark.slow
def test_both_clis_agree_on_a_file_inspect_writes(inspect_file: Path) -> None:
    ours = our_buckets(inspect_file)
    assert ours == {
        "running": ["inspect sample left running"],
        "cancelled": ["inspect cancel"],
        "errors": ["inspect error with arg", "inspect sample error"],
        "timeouts": ["inspect timeout"],
    }
    assert inspect_buckets(inspect_file) == ours
    for text in ("SAMPLE=3",):
        assert inspect_buckets(inspect_file, "--filter", text) == our_buckets(
            inspect_file, "--filter", text
        )


def test_we_read_inspect_sample_prefixed_messages(inspect_file: Path) -> None:
    from autotrace.read.model import anomalies_of
    from autotrace.read.reader import iter_records, read_file

    scanner = read_file(inspect_file)
    assert scanner.problems.total() == 0
    (record,) = scanner.running.values()
    assert record.message.startswith("sample=3\n")
    (running,) = anomalies_of(scanner, as_of=0.0).running
    assert running.trace_id == record.trace_id and running.detail == record.detail
    # The extra keys inspect adds (sample_id, epoch, ...) are kept where records are shown whole.
    [enter] = [r for r in iter_records(inspect_file) if r.get("trace_id") == record.trace_id]
    assert enter["sample_id"] == 3
