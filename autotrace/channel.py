"""The local channel into a traced process: where its watchdog listens and what it is asked.

Shared by the watchdog (runtime, the server) and the snapshot client (read side).
"""

from __future__ import annotations

import os
import sys

from autotrace import config

REQUEST = b"stacks\n"


def socket_address(pid: int) -> str | bytes:
    """Where process ``pid`` listens: an abstract socket on Linux, else a file in the trace dir."""
    if sys.platform.startswith("linux"):
        return f"\0autotrace-{pid}"
    return os.path.join(config.trace_dir(), f"trace-{pid}.sock")
