"""Arize Phoenix, a real OTLP backend, on 127.0.0.1 for the exporter's end-to-end tests.

Phoenix lives in its own venv (its dependency set stays away from the project's):
``tests/components.py`` installs it at ~/.cache/autotrace-phoenix (or $AUTOTRACE_PHOENIX_VENV)
when it is missing; ``.ci/run`` does so ahead of time. It takes
OTLP/HTTP at ``/v1/traces`` and gives spans back at ``/v1/projects/<name>/spans``. Its data
lives in a working directory, so a killed server restarted on the same ports still has
what it accepted before.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import components
import pytest

VENV = components.PHOENIX_VENV
START_DEADLINE = 240.0  # seconds: Phoenix migrates its database at first start (slow on 2 cores)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Phoenix:
    """One Phoenix server process; ``start`` / ``kill`` / ``start`` again on the same ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.grpc_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def otlp_endpoint(self) -> str:
        return self.url  # the exporter adds /v1/traces

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AUTOTRACE_"))}
        env.update(
            PHOENIX_WORKING_DIR=str(self.workdir),
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_PORT=str(self.port),
            PHOENIX_GRPC_PORT=str(self.grpc_port),
            PHOENIX_TELEMETRY_ENABLED="false",
        )
        log = open(self.workdir / "phoenix.log", "ab")  # noqa: SIM115 (the child holds it)
        self.proc = subprocess.Popen(
            [str(VENV / "bin" / "phoenix"), "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"phoenix exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                self.get("/v1/projects")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        raise RuntimeError(f"phoenix did not answer within {START_DEADLINE} s: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.workdir / "phoenix.log").read_text(errors="replace")[-2000:]

    def kill(self) -> None:
        """SIGKILL, as a backend that dies (nothing flushed, nothing answered)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.load(response)

    def spans(
        self, trace_id: int, project: str = "default", attribute: str | None = None
    ) -> list[dict[str, Any]]:
        """Every span Phoenix holds for ``trace_id`` (pages followed); ``attribute``:
        only those with this ``key:value`` (Phoenix's own filter)."""
        out: list[dict[str, Any]] = []
        cursor = ""
        while True:
            query = f"?limit=1000&trace_id={trace_id:032x}"
            if attribute:
                query += "&attribute=" + urllib.parse.quote(attribute)
            if cursor:
                query += f"&cursor={cursor}"
            try:
                page = self.get(f"/v1/projects/{project}/spans{query}")
            except urllib.error.HTTPError as exc:
                if exc.code == 404:  # no project yet: nothing received
                    return out
                raise
            out.extend(page["data"])
            cursor = page.get("next_cursor") or ""
            if not cursor:
                return out


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    """A Phoenix server for the session (installed in its own venv when missing)."""
    components.phoenix_venv()
    server = Phoenix(tmp_path_factory.mktemp("phoenix"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class FaultyLink:
    """A TCP port in front of a backend that refuses (closed), swallows (accepts, never
    answers: a slow backend) or forwards to the backend, switched while a test runs."""

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self.upstream_port = upstream_port
        self.mode = "refuse"
        self._server: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        """ "refuse", "swallow" or "forward"; connections swallowed so far stay silent."""
        assert mode in ("refuse", "swallow", "forward")
        self.mode = mode
        if mode == "refuse":
            self._close_server()
        elif self._server is None:
            server = socket.socket()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", self.port))
            server.listen(16)
            self._server = server
            threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if self.mode == "forward":
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                except OSError:
                    conn.close()
                    continue
                for a, b in ((conn, upstream), (upstream, conn)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
            else:
                with self._lock:
                    self._held.append(conn)  # read nothing, answer nothing

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _close_server(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def close(self) -> None:
        self._close_server()
        with self._lock:
            for conn in self._held:
                conn.close()
            self._held.clear()
