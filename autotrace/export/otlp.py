"""Sending a run to a tracing backend over OTLP, from outside the traced program.

The trace files are the buffer: this exporter (``inspect-trace export``, or started in
the background by ``inspect-trace run --otlp``) reads them from saved offsets, maps
records to spans (``autotrace.export.spans``) and sends them with the official
OpenTelemetry SDK's OTLP exporter, configured by the standard ``OTEL_*`` variables.
It reads no further while the backend refuses (the files keep what is not sent), so
its memory stays bounded and nothing is lost; it retries with backoff, and saves its
offsets after each accepted batch, so a restarted exporter resumes where it stopped.
Nothing here is imported by the traced program; the SDK is imported only to send.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autotrace import config
from autotrace.export.follow import (
    FollowedFile,
    RunFollower,
    StateFile,
    first_timestamp,
    process_alive,
    safe_name,
)
from autotrace.export.spans import OtlpSpan, ProcessInfo, SpanMapper
from autotrace.read.files import read_header

DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
TRACES_PATH = "/v1/traces"
PROTOCOLS = ("http/protobuf", "grpc")
DEFAULT_SERVICE = "inspect-trace"
BATCH = 512  # spans per export request
POLL = 0.25  # seconds between looks at the files when following
LINGER = 2.0  # seconds the run's other processes get after the command exits
MAX_BACKOFF = 30.0
SAVE_EVERY = 1.0  # seconds between saves of the state while reading
ENV_ENDPOINT = "AUTOTRACE_OTLP_ENDPOINT"  # `export --endpoint`, as `run --otlp URL` passes it
ENV_DRAIN_TIMEOUT = "AUTOTRACE_OTLP_DRAIN_TIMEOUT"  # seconds of retrying after the run ended
DEFAULT_DRAIN_TIMEOUT = 600.0


class ExportError(Exception):
    """Bad settings or input: the CLI prints the message (one line) and exits 1."""


class GiveUp(Exception):
    """Stopped (signal or drain deadline) with spans not yet accepted."""


# -- settings -----------------------------------------------------------------------


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true``: send nothing, as every OpenTelemetry SDK does."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def sdk_missing() -> str | None:
    """What to install when the OpenTelemetry SDK or the OTLP exporter is missing."""
    for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        try:
            if importlib.util.find_spec(module) is None:
                raise ImportError
        except (ImportError, ValueError):
            return (
                "sending over OTLP needs the OpenTelemetry SDK and OTLP exporter: "
                "pip install 'inspect-autotrace[otlp]'"
            )
    return None


@dataclass
class Settings:
    """Where and how spans go; headers and timeouts are read by the SDK from OTEL_*."""

    endpoint: str
    protocol: str

    def shown(self) -> str:
        """The endpoint without userinfo or query (what may appear in a log line)."""
        parts = urlsplit(self.endpoint)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else host

    def key(self) -> str:
        return hashlib.blake2b(self.shown().encode(), digest_size=4).hexdigest()


def settings(endpoint: str | None = None, protocol: str | None = None) -> Settings:
    """The OTLP settings: arguments first, then the standard variables, then defaults."""
    env = os.environ
    protocol = (
        protocol
        or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol not in PROTOCOLS:
        raise ExportError(
            f"OTLP protocol {protocol!r} is not supported (use {' or '.join(PROTOCOLS)})"
        )
    grpc = protocol == "grpc"
    if endpoint:
        base, signal_url = endpoint, None
    elif env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        base, signal_url = None, env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    else:
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or (
            DEFAULT_GRPC_ENDPOINT if grpc else DEFAULT_HTTP_ENDPOINT
        )
        signal_url = None
    if signal_url is None:
        assert base is not None
        base = base.strip()
        if "://" not in base and not grpc:
            base = "http://" + base
        # A base endpoint gets the traces path (as OTEL_EXPORTER_OTLP_ENDPOINT does);
        # one that already names it is taken as it is.
        if grpc or base.rstrip("/").endswith(TRACES_PATH):
            signal_url = base
        else:
            signal_url = base.rstrip("/") + TRACES_PATH
    parts = urlsplit(signal_url if "://" in signal_url else "http://" + signal_url)
    if not parts.hostname:
        raise ExportError(f"OTLP endpoint {Settings(signal_url, protocol).shown()!r} has no host")
    return Settings(signal_url, protocol)


def make_exporter(s: Settings) -> Any:
    """The SDK's OTLP span exporter for ``s`` (headers, timeout, TLS from OTEL_*)."""
    if s.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError as exc:
            raise ExportError(
                "OTLP over gRPC needs opentelemetry-exporter-otlp-proto-grpc: "
                "pip install 'inspect-autotrace[otlp]'"
            ) from exc
        # http:// means plaintext; otherwise OTEL_EXPORTER_OTLP_INSECURE decides, as usual.
        insecure = True if s.endpoint.startswith("http://") else None
        return GrpcExporter(endpoint=s.endpoint, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=s.endpoint)


# -- spans as the SDK's ReadableSpan ---------------------------------------------------


class Converter:
    """``OtlpSpan`` -> the SDK's ``ReadableSpan``, one Resource per process."""

    def __init__(self) -> None:
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        from autotrace import __version__

        self._Resource, self._Event, self._ReadableSpan = Resource, Event, ReadableSpan
        self._SpanContext, self._SpanKind = SpanContext, SpanKind
        self._Status, self._StatusCode = Status, StatusCode
        self._flags = TraceFlags(TraceFlags.SAMPLED)
        self._scope = InstrumentationScope("autotrace", __version__)
        self._env_resource = dict(OTELResourceDetector().detect().attributes)
        self._host = socket.gethostname()
        self._resources: dict[str, Any] = {}

    def resource(self, info: ProcessInfo) -> Any:
        resource = self._resources.get(info.key)
        if resource is None:
            attrs: dict[str, Any] = {
                "service.name": DEFAULT_SERVICE,
                "host.name": self._host,
                "autotrace.run_id": info.run_id,
            }
            if info.pid is not None:
                attrs["process.pid"] = info.pid
            if info.parent_pid is not None:
                attrs["process.parent_pid"] = info.parent_pid
            if info.argv:
                attrs["process.command_args"] = info.argv  # redacted by the writer
            attrs.update(self._env_resource)  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
            resource = self._resources[info.key] = self._Resource.create(attrs)
        return resource

    def convert(self, span: OtlpSpan) -> Any:
        context = self._SpanContext(span.trace_id, span.span_id, False, self._flags)
        parent = (
            self._SpanContext(span.trace_id, span.parent_span_id, False, self._flags)
            if span.parent_span_id
            else None
        )
        status = (
            self._Status(self._StatusCode.ERROR, span.error)
            if span.error is not None
            else self._Status(self._StatusCode.UNSET)
        )
        return self._ReadableSpan(
            name=span.name,
            context=context,
            parent=parent,
            resource=self.resource(span.process),
            attributes=span.attributes,
            events=[self._Event(e.name, e.attributes, e.time_ns) for e in span.events],
            kind=self._SpanKind.CLIENT if span.client else self._SpanKind.INTERNAL,
            status=status,
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=self._scope,
        )


# -- sending with retry -------------------------------------------------------------


class Sender:
    """Sends spans in batches; a refused batch is retried with backoff until accepted."""

    def __init__(
        self,
        exporter: Any,
        log: Callable[[str], None],
        stop: threading.Event,
        where: str = "the backend",
        converter: Converter | None = None,
    ) -> None:
        self.exporter = exporter
        self.converter = converter or Converter()
        self.log = log
        self.stop = stop
        self.where = where
        self.deadline: float | None = None  # give up retrying after this (time.monotonic)
        self.on_retry: Callable[[], object] = lambda: None  # may set the deadline
        self.sent = 0
        self.pending_sent = 0
        self._failing = False

    def send(self, spans: Sequence[OtlpSpan]) -> None:
        """Send ``spans``; returns once the backend accepted them all (raises GiveUp)."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        for i in range(0, len(spans), BATCH):
            part = spans[i : i + BATCH]
            batch = [self.converter.convert(s) for s in part]
            delay = 0.5
            while True:
                try:
                    ok = self.exporter.export(batch) == SpanExportResult.SUCCESS
                    problem = "refused, unreachable or too slow"
                except Exception as exc:  # an exporter bug must not stop the follower
                    ok, problem = False, type(exc).__name__
                if ok:
                    break
                if not self._failing:
                    self._failing = True
                    self.log(
                        f"cannot send to {self.where} ({problem}); retrying with backoff, "
                        "the records wait in the trace files"
                    )
                self.on_retry()
                if self.stop.is_set() or (
                    self.deadline is not None and time.monotonic() + delay > self.deadline
                ):
                    raise GiveUp
                self.stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            if self._failing:
                self._failing = False
                self.log(f"sending to {self.where} again")
            self.sent += len(part)
            self.pending_sent += sum(1 for s in part if s.pending)


# -- the export loop -----------------------------------------------------------------


@dataclass
class Pipeline:
    """One run's files, its span mapper and its saved state."""

    follower: RunFollower
    mapper: SpanMapper
    state: StateFile | None
    processes_added: set[str] = field(default_factory=set)
    saved_at: float = 0.0
    unsaved: bool = False

    def save(self, force: bool = True) -> None:
        """Save offsets and open actions (after spans were accepted); at most once a
        second unless ``force``: a crash in between re-sends spans with the same ids."""
        if self.state is None:
            return
        if not force and time.monotonic() - self.saved_at < SAVE_EVERY:
            self.unsaved = True  # saved at the next idle turn
            return
        self.saved_at = time.monotonic()
        self.unsaved = False
        try:
            self.state.save(
                {
                    "version": 1,
                    "run_id": self.mapper.run_id,
                    "files": self.follower.offsets(),
                    "mapper": self.mapper.state(),
                }
            )
        except OSError:
            self.state = None  # a read-only directory: no resume, still exporting


def pipeline(
    run_id: str,
    directory: Path | None,
    paths: Sequence[Path],
    state_dir: Path | None,
    endpoint_key: str,
    pending_after: float,
    from_start: bool,
) -> Pipeline:
    """A pipeline for one run, with its saved state loaded (unless ``from_start``)."""
    state = (
        StateFile(state_dir / StateFile.name_for(run_id, endpoint_key))
        if state_dir is not None and state_dir.is_dir()
        else None
    )
    saved = state.load() if state is not None and not from_start else {}
    mapper = SpanMapper(run_id, pending_after)
    mapper.restore(saved.get("mapper") or {})
    follower = RunFollower(directory, run_id, paths, saved.get("files") or {})
    return Pipeline(follower, mapper, state)


@dataclass
class Summary:
    spans: int = 0
    pending: int = 0
    files: int = 0
    problems: int = 0
    gave_up: bool = False


def _step(p: Pipeline, sender: Sender, now: float) -> bool:
    """One turn over a run's files: read what is new, send its spans. True: read something."""
    p.follower.discover()
    progressed = False
    caught_up: set[str] = set()  # live processes whose file is read to its end
    for f in p.follower.ordered(p.mapper.spawner):
        if f.key not in p.processes_added:
            p.mapper.add_process(f.info)
            p.processes_added.add(f.key)
        records = f.read()
        if records is None:
            if f.alive():
                caught_up.add(f.key)
            else:
                # Its process is gone and its file read to the end: what is still open
                # was abandoned.
                sender.send(p.mapper.records(f.key, f.finish(), now))
                end = _mtime(f)  # its last write, where `anomalies` ends it too
                sender.send(p.mapper.abandon(f.key, end))
                f.done = True
                f.close()
                p.save()
            continue
        sender.send(p.mapper.records(f.key, records, now))
        p.save(force=False)
        progressed = True
    due = p.mapper.pending(now, caught_up)
    if due:
        sender.send(due)
        p.save(force=False)
    return progressed


def _mtime(f: FollowedFile) -> float:
    for path in (f.plain, f.plain.with_name(f.plain.name + ".gz")):
        try:
            return path.stat().st_mtime
        except OSError:
            continue
    return time.time()


def run_export(
    pipelines: list[Pipeline],
    sender: Sender,
    *,
    follow: bool,
    until_pid: int | None = None,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
) -> Summary:
    """Export until every file is read (or, following, until stopped or until ``until_pid``
    has exited and the run's files are drained)."""
    ended_at: float | None = None
    summary = Summary()
    clean = False
    if not follow:  # a one-shot export against a backend that stays down gives up
        sender.deadline = time.monotonic() + drain_timeout

    def command_ended() -> bool:
        """Whether ``until_pid`` has exited (then retrying ends ``drain_timeout`` later)."""
        nonlocal ended_at
        if ended_at is None and until_pid is not None and not process_alive(until_pid):
            ended_at = time.monotonic()
            sender.deadline = ended_at + drain_timeout
        return ended_at is not None

    sender.on_retry = command_ended  # checked while a send is being retried, too
    try:
        while not sender.stop.is_set():  # SIGTERM / Ctrl-C: stop after the current send
            now = time.time()
            progressed = False
            for p in pipelines:
                progressed |= _step(p, sender, now)
            if progressed:
                continue
            for p in pipelines:  # idle: what was accepted is saved now
                if p.unsaved:
                    p.save()
            all_done = all(f.done for p in pipelines for f in p.follower.files.values())
            if not follow:
                break
            if command_ended() and (all_done or time.monotonic() - (ended_at or 0.0) > LINGER):
                break
            if sender.stop.wait(POLL):
                break
        clean = True
    except GiveUp:
        summary.gave_up = True
        clean = False
    finally:
        for p in pipelines:
            # Offsets run ahead of what the backend accepted only when a send did not
            # finish: then the last save (made after an accepted send) stands.
            if clean:
                p.save()
            for f in p.follower.files.values():
                f.close()
                summary.problems += f.problems.total()
            summary.files += len(p.follower.files)
    summary.spans, summary.pending = sender.sent, sender.pending_sent
    return summary


# -- entry points (the CLI calls these) --------------------------------------------------


def group_files(paths: Sequence[Path]) -> dict[str, list[Path]]:
    """Files by run: the run id of their process record, else one run per file."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        header = read_header(path)
        run_id = header.run_id if header else None
        if not run_id:
            run_id = f"file:{path.name.removesuffix('.gz')}:{first_timestamp(path)}"
        groups.setdefault(run_id, []).append(path)
    return groups


def _log_to(stream: Any) -> Callable[[str], None]:
    def log(message: str) -> None:
        try:
            stream.write(f"[autotrace otlp] {time.strftime('%H:%M:%S')} {message}\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    return log


def export(
    *,
    paths: Sequence[Path],
    directory: Path | None,
    run_id: str | None,
    follow: bool,
    endpoint: str | None = None,
    protocol: str | None = None,
    pending_after: float = 1.0,
    from_start: bool = False,
    until_pid: int | None = None,
    log: Callable[[str], None] | None = None,
    exporter: Any = None,
) -> Summary:
    """Send a run's files (or the files named) over OTLP; ``exporter`` replaces the
    OTLP exporter (tests pass the SDK's in-memory one)."""
    log = log or _log_to(sys.stderr)
    s = settings(endpoint, protocol)
    if exporter is None:
        missing = sdk_missing()
        if missing:
            raise ExportError(missing)
        exporter = make_exporter(s)
    if paths:
        groups = group_files(paths)
        state_dir = paths[0].parent
        pipelines = [
            pipeline(run, None, files, state_dir, s.key(), pending_after, from_start)
            for run, files in groups.items()
        ]
    else:
        assert directory is not None and run_id is not None
        pipelines = [pipeline(run_id, directory, [], directory, s.key(), pending_after, from_start)]
    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    sender = Sender(exporter, log, stop, s.shown())
    try:
        summary = run_export(
            pipelines,
            sender,
            follow=follow,
            until_pid=until_pid,
            drain_timeout=_drain_timeout(),
        )
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        try:
            exporter.shutdown()
        except Exception:
            pass
    if summary.gave_up:
        log(
            f"stopped with spans not sent to {s.shown()}: "
            f"`inspect-trace export --run {pipelines[0].mapper.run_id}` sends the rest"
        )
    return summary


def _drain_timeout() -> float:
    try:
        return float(os.environ.get(ENV_DRAIN_TIMEOUT, DEFAULT_DRAIN_TIMEOUT))
    except ValueError:
        return DEFAULT_DRAIN_TIMEOUT


def start_background(run_id: str, directory: Path, endpoint: str | None) -> Path:
    """Start ``inspect-trace export --follow`` for the run, detached (double fork, own
    process group, nice 10), to stop once this process (about to exec the command) has exited and the
    files are drained. Returns the exporter's log file."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = directory / f"otlp-{safe_name(run_id)}.log"
    argv = [
        sys.executable,
        "-m",
        "autotrace",
        "export",
        "--follow",
        "--run",
        run_id,
        "--trace-dir",
        str(directory),
        "--until-pid",
        str(os.getpid()),
    ]
    env = dict(os.environ)
    env[config.ENV_DISABLE] = "1"  # the exporter itself is not traced
    if endpoint:  # in the environment, not argv: a URL may carry credentials (ps shows argv)
        env[ENV_ENDPOINT] = endpoint
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child execs or exits)
        try:
            # A process group of its own: the terminal's Ctrl-C and a kill of the command's
            # group leave it to drain. The same session (not setsid): with the kernel's
            # session autogroups, nice only ranks processes within one session.
            os.setpgid(0, 0)
            if os.fork() != 0:
                os._exit(0)
            os.nice(10)  # the program comes first on a busy machine
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal: still drain
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    os.close(log_fd)
    os.waitpid(pid, 0)
    return log_path
