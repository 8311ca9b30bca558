"""The client of a traced process's channel: ``inspect-trace stacks PID`` and ``cancel``.

The watchdog of every traced process answers on a Unix socket (see autotrace.channel).
The client trusts only its target: the answering socket's peer must be process PID,
running as the user that owns PID (SO_PEERCRED), else nothing it says is read.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from autotrace.channel import (
    LISTEN_AFTER,
    REQUEST,
    cancel_request,
    peer_credentials,
    socket_address,
)


class SnapshotError(Exception):
    """The process cannot be asked, or gave no answer (the message is one line)."""


def _owner_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _check_peer(sock: socket.socket, pid: int) -> None:
    """Refuse an answer from anyone but process ``pid`` running as its owner (or as us)."""
    creds = peer_credentials(sock)
    if creds is None:
        return  # no SO_PEERCRED here: the socket is a 0600 file in our trace directory
    peer_pid, peer_uid, _gid = creds
    owner = _owner_uid(pid)
    expected = {os.getuid()} if owner is None else {owner}
    if peer_pid != pid or peer_uid not in expected:
        raise SnapshotError(
            f"refusing the answer for process {pid}: the channel is held by "
            f"process {peer_pid} (uid {peer_uid}), not by process {pid}"
        )


def _connect(pid: int, timeout: float) -> socket.socket:
    """A connection to ``pid``'s watchdog; tried again for a moment when nothing listens
    yet (the watchdog binds its socket once an action has been open LISTEN_AFTER)."""
    deadline = time.monotonic() + min(timeout, 2 * LISTEN_AFTER)
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(socket_address(pid))
            return sock
        except (ConnectionRefusedError, FileNotFoundError):
            sock.close()
            if time.monotonic() >= deadline:
                raise SnapshotError(
                    f"process {pid} is not traced (or has had no action open long enough "
                    "for its watchdog to listen)"
                ) from None
            time.sleep(0.05)
        except BaseException:
            sock.close()
            raise


def _ask(pid: int, request: bytes, timeout: float) -> bytes:
    """Send ``request`` to process ``pid``'s channel and read the whole answer."""
    if not 0 < timeout < float("inf"):  # also NaN
        raise SnapshotError(f"timeout must be a positive number of seconds, not {timeout}")
    if pid <= 0:
        raise SnapshotError(f"{pid} is not a process id")
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        raise SnapshotError(f"no process with pid {pid}") from None
    except PermissionError:
        pass
    sock = _connect(pid, timeout)
    try:
        _check_peer(sock, pid)
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except TimeoutError:
        raise SnapshotError(
            f"process {pid} did not answer within {timeout:g}s (it has no open action: "
            "its watchdog runs only while one is; or a call that holds the GIL blocks it)"
        ) from None
    except OSError as exc:
        raise SnapshotError(f"cannot ask process {pid}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    return b"".join(chunks)


def request_snapshot(pid: int, timeout: float = 5.0) -> dict[str, Any]:
    """Ask process ``pid`` for its stacks; SnapshotError (one line) when it cannot answer."""
    answer = _ask(pid, REQUEST, timeout)
    try:
        snap = json.loads(answer)
    except (ValueError, RecursionError):
        raise SnapshotError(f"process {pid} gave no snapshot (refused or ended)") from None
    if not isinstance(snap, dict):
        raise SnapshotError(f"process {pid} gave no snapshot (not a JSON object)")
    return snap


def request_cancel(pid: int, trace_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """Ask process ``pid`` to end its open action ``trace_id``: its answer
    (``ok``, ``message``, ``action``, ``detail``, ``ended``); SnapshotError when none."""
    if not trace_id or len(trace_id) > 200 or not trace_id.isprintable() or " " in trace_id:
        raise SnapshotError(f"not a trace id: {trace_id[:60]!r}")
    answer = _ask(pid, cancel_request(trace_id), timeout)
    # JSON lines: a first one once the process acted, then the outcome. A program that
    # ends right after its action may not live to send the outcome: the last line counts.
    result: Any = None
    for line in answer.splitlines():
        try:
            result = json.loads(line)
        except (ValueError, RecursionError):
            break  # cut short: the process ended while writing
    if not isinstance(result, dict) or "ok" not in result:
        raise SnapshotError(f"process {pid} gave no answer (refused or ended)")
    return result  # type: ignore[no-any-return]
