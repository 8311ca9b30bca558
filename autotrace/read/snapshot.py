"""The client of a traced process's stacks channel (``inspect-trace stacks PID``).

The watchdog of every traced process answers on a Unix socket (see autotrace.channel).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from autotrace.channel import REQUEST, socket_address


class SnapshotError(Exception):
    """The process cannot be asked, or gave no snapshot (the message is one line)."""


def request_snapshot(pid: int, timeout: float = 5.0) -> dict[str, Any]:
    """Ask process ``pid`` for its stacks; SnapshotError (one line) when it cannot answer."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise SnapshotError(f"no process with pid {pid}") from None
    except PermissionError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(socket_address(pid))
        except (ConnectionRefusedError, FileNotFoundError):
            raise SnapshotError(
                f"process {pid} is not traced (or has not opened any action yet)"
            ) from None
        sock.sendall(REQUEST)
        chunks = []
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except TimeoutError:
        raise SnapshotError(
            f"process {pid} did not answer within {timeout:g}s "
            "(a call that holds the GIL may be blocking it)"
        ) from None
    except OSError as exc:
        raise SnapshotError(f"cannot ask process {pid}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        return json.loads(b"".join(chunks))  # type: ignore[no-any-return]
    except ValueError:
        raise SnapshotError(f"process {pid} gave no snapshot (refused or ended)") from None
