"""What the action API shares with its background: this process's trace writer, its open
actions, and the records the agent writes of its own.

The action API (``autotrace.runtime.actions``) fills ``open_actions`` and starts the
watchdog with the first action; the watchdog and ``cancel`` read the actions here. They
import this module, not the action API, so that no import runs in a circle.
"""

from __future__ import annotations

import time

from autotrace import records
from autotrace.runtime import forks, invisible
from autotrace.runtime.writer import TraceWriter

TYPE_CHECKING = False  # typing costs milliseconds before a process's first action
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from autotrace.runtime.actions import OpenAction

writer = TraceWriter()

# trace_id -> OpenAction, for the watchdog and live views. Plain dict operations
# are atomic under the GIL, so no lock is taken on the hot path.
open_actions: dict[str, OpenAction] = {}

# Work the watchdog's thread does for others while actions are open, each entry
# [interval, job, next due (monotonic) or None]: one thread of ours per process, not one
# per kind of background work.
periodic: list[list[Any]] = []


def every(interval: float, job: Callable[[], None]) -> None:
    """Call ``job()`` in the watchdog's thread every ``interval`` seconds while actions
    are open (first ``interval`` after the thread starts); once per job."""
    if not any(entry[1] is job for entry in periodic):
        periodic.append([interval, job, None])


def stop_every(job: Callable[[], None]) -> None:
    periodic[:] = [entry for entry in periodic if entry[1] is not job]


def internal_error(exc: BaseException) -> None:
    """An error of ours while writing: the writer turns itself off (one warning)."""
    writer.disable(f"internal error: {exc!r}")


def trace_message(category: str, message: str, **fields: Any) -> None:
    """Write a non-action record ``[category] message`` (as inspect's trace_message does)."""
    if writer.disabled:
        return
    try:
        line = records.message_line(
            f"[{category}] {message}",  # redacted, with the fields, by message_line
            time.time(),
            {"pid": forks.pid, "thread": invisible.thread_name(), **fields},
        )
        writer.write(line)
    except Exception as internal:
        internal_error(internal)


def agent_message(message: str, **fields: Any) -> None:
    """A record of the agent itself (``[autotrace] ...``): process start, stacks, patch errors."""
    trace_message("autotrace", message, **fields)
