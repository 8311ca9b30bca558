"""The local channel into a traced process: where its watchdog listens and what it is asked.

Shared by the watchdog (runtime, the server) and the clients (read side: ``stacks``,
``cancel``). Both ends check the other with ``SO_PEERCRED``: the server answers only its
own user (or root), the client trusts only the process it asked for.
"""

from __future__ import annotations

import os
import sys

from autotrace import config

TYPE_CHECKING = False  # typing costs milliseconds at start-up
if TYPE_CHECKING:
    from typing import Any

REQUEST = b"stacks\n"
CANCEL_VERB = b"cancel "  # followed by the trace id and a newline
MAX_REQUEST = 512
# Seconds an action is open before the watchdog binds its socket: an action over
# sooner (most are) costs the process no socket; the client retries a little past it.
LISTEN_AFTER = 0.2


def socket_address(pid: int) -> str | bytes:
    """Where process ``pid`` listens: an abstract socket on Linux, else a file in the trace dir."""
    if sys.platform.startswith("linux"):
        return f"\0autotrace-{pid}"
    return os.path.join(config.trace_dir(), f"trace-{pid}.sock")


def cancel_request(trace_id: str) -> bytes:
    """The request that asks a process to end its open action ``trace_id``."""
    return CANCEL_VERB + trace_id.encode("ascii", "replace") + b"\n"


def peer_credentials(sock: Any) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process at the other end, or None where the OS cannot say."""
    import socket  # only when the channel is used: never at start-up
    import struct

    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return pid, uid, gid
