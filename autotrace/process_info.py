"""Who this process is: run id, parent, command line; the first record of every file."""

from __future__ import annotations

import os
import sys
import time

from autotrace import config, records
from autotrace.redact import redact_argv

PROCESS_START = f"{records.MESSAGE_PREFIX} process start"


def run_id() -> str:
    """The run this process belongs to: set by `inspect-trace run` or the first traced process."""
    value = os.environ.get(config.ENV_RUN_ID)
    if not value:
        value = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        os.environ[config.ENV_RUN_ID] = value
    return value


def command_line() -> list[str]:
    """This interpreter's command line, redacted."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    return redact_argv(argv)


def header_line(now: float) -> bytes:
    """The process record that opens each trace file."""
    parent = os.environ.get(config.ENV_PARENT_PID)
    return records.message_line(
        PROCESS_START,
        now,
        {
            "event_kind": "process",
            "run_id": run_id(),
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "parent_pid": int(parent) if parent and parent.isdigit() else None,
            "argv": command_line(),
            "cwd": os.getcwd(),
            "python": sys.version.split()[0],
        },
    )
