"""Who this process is: run id, parent, command line; the first record of every file.

``claim`` runs at start-up (from the bootstrap): it keeps the parent pid this process
inherited and puts its own pid in the environment for its children. Everything heavy
(records, redaction) is imported when the first file is opened.
"""

from __future__ import annotations

import os
import sys
import time

from autotrace import config

PROCESS_START = "[autotrace] process start"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (another user's counts; so does a zombie)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


# (pid that read it, AUTOTRACE_PARENT_PID as inherited): a forked child, whose pid
# differs, takes its parent's value from the environment instead.
_inherited: tuple[int, str | None] = (-1, None)


def claim() -> None:
    """Remember the inherited parent pid, then name this process the parent of its children.

    Also fixes the run id now, so children started before the first record share it.
    """
    global _inherited
    pid = os.getpid()
    if _inherited[0] == pid:
        return
    _inherited = (pid, os.environ.get(config.ENV_PARENT_PID))
    os.environ[config.ENV_PARENT_PID] = str(pid)
    run_id()


def parent_pid() -> int | None:
    """The pid of the traced process that started this one (None for the first of a run)."""
    pid = os.getpid()
    value = _inherited[1] if _inherited[0] == pid else os.environ.get(config.ENV_PARENT_PID)
    if value and value.isdigit() and int(value) != pid:
        return int(value)
    return None


def run_id() -> str:
    """The run this process belongs to: set by `inspect-trace run` or the first traced process."""
    value = os.environ.get(config.ENV_RUN_ID)
    if not value:
        value = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        os.environ[config.ENV_RUN_ID] = value
    return value


def command_line() -> list[str]:
    """This interpreter's command line, redacted."""
    from autotrace.redact import redact_argv

    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    return redact_argv(argv)


def header_line(now: float) -> bytes:
    """The process record that opens each trace file."""
    from autotrace import records

    return records.message_line(
        PROCESS_START,
        now,
        {
            "event_kind": "process",
            "run_id": run_id(),
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "parent_pid": parent_pid(),
            "argv": command_line(),
            "cwd": os.getcwd(),
            "python": sys.version.split()[0],
        },
    )
