"""Moto's S3 server for tests, on 127.0.0.1, plus endpoints that stop answering.

Import both fixtures into a test module (tests/ is on sys.path under pytest)::

    from s3_server import moto_endpoint, s3_server  # noqa: F401  (pytest fixtures)

    def test_put(s3_server):
        s3 = s3_server.client()                 # boto3 S3 client pointed at moto
        s3.create_bucket(Bucket="b")            # or: s3_server.bucket("b")
        fs = s3_server.filesystem()             # s3fs.S3FileSystem pointed at moto
        env = s3_server.env                     # AWS_* variables for a subprocess
                                                # (AWS_ENDPOINT_URL points at moto)
        proxy = s3_server.stallable()           # TCP proxy to moto ...
        proxy.endpoint_url                      #   ... use it like the real endpoint,
        env = s3_server.env_for(proxy.endpoint_url)  # (a child pointed at the proxy)
        proxy.stall()                           #   then it stops answering (hangs)
        dead = s3_server.silent()               # accepts connections, never answers

What the fixtures do:

- ``moto_endpoint`` (session): one ``moto.server.ThreadedMotoServer`` bound to
  127.0.0.1 on a free port, stopped at the end of the session.
- ``s3_server`` (function): resets moto's state, sets fake credentials and region in
  ``os.environ`` (monkeypatch: restored after the test) so boto3, aiobotocore and
  s3fs never read the user's AWS config, and stops every proxy/silent server it made.
- ``s3_patches`` (function, opt-in): installs the S3 patches (botocore, aiobotocore,
  s3transfer, s3fs, aioboto3) in this process and uninstalls them after the test.
  End-to-end tests that trace a child process through the bootstrap do not need it.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}


class StallingProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``target`` until ``stall()`` is called.

    Once stalled, it stops moving bytes on every connection, old and new (new ones
    are still accepted): a client sees a server that accepted and never answers.
    With ``target=None`` it is stalled from the start (a server that never answers).
    """

    def __init__(self, target: tuple[str, int] | None, *, stalled: bool = False) -> None:
        self.target = target
        self._flowing = threading.Event()
        if not stalled and target is not None:
            self._flowing.set()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.accepted = threading.Semaphore(0)  # released once per accepted connection
        self._thread = threading.Thread(target=self._accept_loop, name="s3-proxy", daemon=True)
        self._thread.start()

    def stall(self) -> None:
        """Stop answering: no byte moves any more, in either direction."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again (only when there is a target)."""
        if self.target is not None:
            self._flowing.set()

    def wait_accepted(self, timeout: float = 10.0) -> bool:
        """Block until the proxy has accepted one more connection (False on timeout)."""
        return self.accepted.acquire(timeout=timeout)

    def close(self) -> None:
        """Close the listener and every connection (clients see a reset/EOF)."""
        self._closed = True
        self._flowing.set()  # wake pumps so they exit
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [self._listener, *sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._thread.join(timeout=5)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            self.accepted.release()
            if self.target is None:
                continue  # hold the connection open, never read it
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self._track(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst), name="s3-proxy-pump", daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self._closed:
                self._flowing.wait()
                if self._closed:
                    return
                ready, _, _ = select.select([src], [], [], 0.2)
                if not ready or not self._flowing.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
        except OSError:
            return

    def __enter__(self) -> StallingProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MotoS3:
    """Handles for one test: moto's endpoint, clients pointed at it, hanging endpoints."""

    def __init__(self, endpoint_url: str, host_port: tuple[str, int]) -> None:
        self.endpoint_url = endpoint_url
        self.host_port = host_port
        self.region = REGION
        self._proxies: list[StallingProxy] = []

    @property
    def env(self) -> dict[str, str]:
        """AWS_* variables that point a child process (boto3, s3fs, inspect) at moto."""
        return self.env_for(self.endpoint_url)

    def env_for(self, endpoint_url: str) -> dict[str, str]:
        """AWS_* variables pointing at ``endpoint_url`` (e.g. a ``stallable()`` proxy's)."""
        return {
            **FAKE_CREDENTIALS,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_ENDPOINT_URL_S3": endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        }

    def client(self, endpoint_url: str | None = None, **config: Any) -> Any:
        """A boto3 S3 client for moto (or ``endpoint_url``); ``config`` goes to botocore Config."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint_url,
            region_name=REGION,
            config=Config(**config) if config else None,
        )

    def filesystem(self, endpoint_url: str | None = None, **kwargs: Any) -> Any:
        """A fresh (uncached) s3fs.S3FileSystem for moto (or ``endpoint_url``)."""
        import s3fs

        client_kwargs = {"endpoint_url": endpoint_url or self.endpoint_url, "region_name": REGION}
        client_kwargs.update(kwargs.pop("client_kwargs", {}))
        return s3fs.S3FileSystem(
            client_kwargs=client_kwargs,
            skip_instance_cache=True,
            use_listings_cache=False,
            **kwargs,
        )

    def bucket(self, name: str = "test-bucket") -> str:
        """Create ``name`` on moto (directly, untraced by intent of the caller) and return it."""
        self.client().create_bucket(Bucket=name)
        return name

    def stallable(self) -> StallingProxy:
        """A proxy to moto that answers until ``.stall()``; closed after the test."""
        proxy = StallingProxy(self.host_port)
        self._proxies.append(proxy)
        return proxy

    def silent(self) -> StallingProxy:
        """A server on 127.0.0.1 that accepts connections and never answers; closed after the test."""
        proxy = StallingProxy(None, stalled=True)
        self._proxies.append(proxy)
        return proxy

    def reset(self) -> None:
        """Forget every bucket and object in moto (retried: under load werkzeug has, rarely,
        answered this request with a bare error page)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        for attempt in range(3):
            try:
                with urllib.request.urlopen(request, timeout=10):
                    return
            except (OSError, http.client.HTTPException):
                if attempt == 2:
                    raise

    def close_proxies(self) -> None:
        """Close every proxy and silent server made for this test."""
        while self._proxies:
            self._proxies.pop().close()


S3_PATCHES = ("botocore", "aiobotocore", "s3transfer", "s3fs", "aioboto3")


@pytest.fixture
def s3_patches() -> Iterator[dict[str, Any]]:
    """The S3 patches installed in-process for one test ({name: Patch}), removed afterwards."""
    from autotrace.startup import agent

    installed = {}
    try:
        for name in S3_PATCHES:
            patch = agent.load_patch(name)
            agent.install_patch(patch)
            installed[name] = patch
        yield installed
    finally:
        for patch in installed.values():
            agent.uninstall_patch(patch)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[tuple[str, tuple[str, int]]]:
    """(endpoint_url, (host, port)) of a moto server on 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}", (host, port)
    finally:
        server.stop()


@pytest.fixture
def s3_server(
    moto_endpoint: tuple[str, tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[MotoS3]:
    """A clean moto S3 with fake credentials in the environment (see the module docstring)."""
    endpoint_url, host_port = moto_endpoint
    handle = MotoS3(endpoint_url, host_port)
    for name, value in handle.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    handle.reset()
    try:
        yield handle
    finally:
        handle.close_proxies()
