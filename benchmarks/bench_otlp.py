"""What the OTLP exporter does at scale, measured in this run.

    python benchmarks/bench_otlp.py            # 64 processes, 1M actions (~2-4 min)
    python benchmarks/bench_otlp.py --quick    # 64 processes, 100k actions

(a) spans per second sent by `inspect-trace export` from a generated run of 64 processes
    (one file each, the shape the agent writes: nested actions, Model / Subprocess / S3 /
    Tool Call, child processes under the Subprocess that started them), its CPU per
    1,000 spans and its peak memory;
(b) a real traced run (`inspect-trace run --otlp`, 8 Python processes starting
    subprocesses) against the same sink: the program's time with and without --otlp,
    and how long after the program ended its last span arrived;
(c) lag from ``enter`` written to the pending span received, and from the end written
    to the final span received, for actions of a real traced program.

The backend is an OTLP/HTTP sink in its own process (it decodes each request with the
OTLP protobuf types, counts spans and notes when each arrived), so what is measured is
the exporter's own cost: reading, mapping, encoding, HTTP.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
RUN = "bench-otlp-run"
PROCESSES = 64
LAG_SPAN = "Subprocess sleep"  # the sink notes when spans of this name arrive


# -- the sink (a separate process) ---------------------------------------------------------


def sink(port_file: str, log_file: str) -> None:
    """An OTLP/HTTP traces endpoint that counts spans; on GET writes what it saw."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    seen: dict[str, Any] = {"spans": 0, "requests": 0, "first": None, "last": None}
    arrivals: dict[str, list[float]] = {}  # our trace id -> arrival times (pending, final)
    lock = threading.Lock()
    ok = ExportTraceServiceResponse().SerializeToString()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            now = time.time()
            request = ExportTraceServiceRequest.FromString(body)
            n = 0
            with lock:
                for rs in request.resource_spans:
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            n += 1
                            if span.name != LAG_SPAN:
                                continue
                            for kv in span.attributes:
                                if kv.key == "autotrace.trace_id":
                                    arrivals.setdefault(kv.value.string_value, []).append(now)
                seen["spans"] += n
                seen["requests"] += 1
                seen["first"] = seen["first"] or now
                seen["last"] = now
                with open(log_file + ".tmp", "w") as f:
                    json.dump({**seen, "arrivals": arrivals}, f)
                os.replace(log_file + ".tmp", log_file)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(ok)))
            self.end_headers()
            self.wfile.write(ok)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


class Sink:
    def __init__(self, directory: Path) -> None:
        self.log = directory / "sink.json"
        port_file = directory / "sink.port"
        port_file.unlink(missing_ok=True)  # an earlier sink's port would be read as this one's
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "sink", str(port_file), str(self.log)]
        )
        deadline = time.time() + 60
        while not (port_file.exists() and port_file.read_text()):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the OTLP sink did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}"

    def seen(self) -> dict[str, Any]:
        try:
            return json.loads(self.log.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {"spans": 0, "requests": 0, "first": None, "last": None, "arrivals": {}}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- (a) a generated run -------------------------------------------------------------------


def generate(directory: Path, actions: int) -> int:
    """64 trace files of one run, ``actions`` actions in all; returns the records written."""
    from autotrace import records

    directory.mkdir(parents=True, exist_ok=True)
    per = actions // PROCESSES
    t = time.time() - 3600
    pids = [1_000_000 + i for i in range(PROCESSES)]  # not live processes: their files are done
    lines_written = 0
    for i, pid in enumerate(pids):
        parent = pids[0] if i else None
        out: list[bytes] = []
        header = {"event_kind": "process", "run_id": RUN, "pid": pid, "parent_pid": parent}
        header["argv"] = ["python", "worker.py", str(i)]
        out.append(records.message_line("[autotrace] process start", t, header))
        kinds = [
            ("Model", "generate (openai/gpt-4o)"),
            ("Subprocess", "git status --porcelain"),
            ("S3", "PutObject s3://bucket/run/sample-1.json (1.2 kB)"),
        ]
        n = 0
        children = iter(pids[1:]) if i == 0 else iter(())
        while n < per:
            tool = records.ActionLines(
                "Tool Call", f"bash(cmd='step {n}')", f"{pid}-{n}", pid=pid,
                thread="MainThread", task="sample-1", parent_id=None,
            )  # fmt: skip
            out.append(tool.line("enter", t, start_time=t))
            tool_id = f"{pid}-{n}"
            n += 1
            for action, detail in kinds:
                if n >= per:
                    break
                child = next(children, None) if action == "Subprocess" else None
                inner = records.ActionLines(
                    action, detail, f"{pid}-{n}", pid=pid, thread="MainThread",
                    task="sample-1", parent_id=tool_id,
                )  # fmt: skip
                extra = {"child_pid": child} if child else None
                out.append(inner.line("enter", t, start_time=t, extra=extra))
                t += 0.001
                end_extra = {"returncode": 0} if action == "Subprocess" else None
                out.append(inner.line("exit", t, duration=0.001, extra=end_extra))
                n += 1
            t += 0.0005
            out.append(tool.line("exit", t, duration=0.004))
            if len(out) > 20_000:
                lines_written += len(out)
                with open(directory / f"trace-{pid}.log", "ab") as f:
                    f.write(b"".join(out))
                out = []
        lines_written += len(out)
        with open(directory / f"trace-{pid}.log", "ab") as f:
            f.write(b"".join(out))
    return lines_written


def export_generated(work: Path, sink: Sink, actions: int) -> dict[str, Any]:
    traces = work / "generated"
    t0 = time.perf_counter()
    lines = generate(traces, actions)
    size = sum(p.stat().st_size for p in traces.iterdir())
    print(
        f"generated {actions:,} actions ({lines:,} records, {size / 1e6:.0f} MB) in "
        f"{PROCESSES} files in {time.perf_counter() - t0:.1f} s"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "inspect-trace"), "export", "--run", RUN, "--trace-dir", str(traces),
         "--endpoint", sink.url],
        capture_output=True, text=True, env=_env(),
    )  # fmt: skip
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    spans = sink.seen()["spans"]
    peak_mb = after.ru_maxrss / 1024
    print(
        f"(a) export: {spans:,} spans in {wall:.1f} s = {spans / wall:,.0f} spans/s; "
        f"CPU {cpu:.1f} s = {cpu / spans * 1000 * 1000:.1f} ms per 1,000 spans; "
        f"peak RSS {peak_mb:.0f} MB (the largest child so far)"
    )
    return {"spans": spans, "wall": wall, "cpu": cpu, "peak_mb": peak_mb}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOTRACE_", "OTEL_"))}
    env.update(extra)
    return env


# -- (b) a real run -------------------------------------------------------------------------

REAL_PROGRAM = """
import subprocess, sys, time
if sys.argv[1] == "worker":
    for _ in range(int(sys.argv[2])):
        subprocess.run(["true"])
    sys.exit(0)
t = time.perf_counter()
workers = [subprocess.Popen([sys.executable, __file__, "worker", sys.argv[2]]) for _ in range(8)]
for w in workers:
    w.wait()
print(f"{time.perf_counter() - t:.3f}")
"""


def real_run(work: Path, sink: Sink, per_worker: int) -> dict[str, Any]:
    script = work / "real.py"
    script.write_text(REAL_PROGRAM)
    times: dict[str, float] = {}
    drained = 0.0
    for mode in ("plain", "otlp") * 3:
        traces = work / f"real-{mode}-{time.monotonic_ns()}"
        command = [str(BIN / "inspect-trace"), "run", "--trace-dir", str(traces)]
        if mode == "otlp":
            command += ["--otlp", sink.url]
        before = sink.seen()["spans"]
        out = subprocess.run(
            [*command, "--", sys.executable, str(script), "main", str(per_worker)],
            capture_output=True, text=True, env=_env(AUTOTRACE_KEEP="100"), check=True,
        )  # fmt: skip
        ended = time.time()
        times[mode] = min(times.get(mode, 1e9), float(out.stdout.split()[-1]))
        if mode == "otlp":
            expected = 8 * per_worker + 8  # one Subprocess per `true`, one per worker
            deadline = time.time() + 120
            while sink.seen()["spans"] - before < expected and time.time() < deadline:
                time.sleep(0.05)
            got = sink.seen()["spans"] - before
            drained = max(drained, (sink.seen()["last"] or ended) - ended)
            assert got >= expected, (got, expected)
    print(
        f"(b) real run, 9 processes, {8 * per_worker:,} subprocess actions: program "
        f"{times['plain']:.2f} s traced, {times['otlp']:.2f} s traced with --otlp "
        f"({times['otlp'] / times['plain']:.2f}x); last span arrived {drained:.2f} s "
        "after the program ended"
    )
    return {"plain": times["plain"], "otlp": times["otlp"], "drained": drained}


# -- (c) lag ------------------------------------------------------------------------------------

LAG_PROGRAM = """
import subprocess
for i in range(5):
    subprocess.run(["sleep", "2"])
"""


def lag(work: Path, sink: Sink) -> dict[str, Any]:
    script = work / "lag.py"
    script.write_text(LAG_PROGRAM)
    traces = work / "lag"
    subprocess.run(
        [str(BIN / "inspect-trace"), "run", "--trace-dir", str(traces), "--otlp", sink.url,
         "--", sys.executable, str(script)],
        env=_env(), check=True,
    )  # fmt: skip
    records = [
        json.loads(line) for p in traces.glob("trace-*.log") for line in p.read_text().splitlines()
    ]
    ends = {r["trace_id"]: r for r in records if r.get("event") == "exit"}
    enters = [r for r in records if r.get("event") == "enter" and r.get("detail") == "sleep 2"]
    deadline = time.time() + 30
    pending_lags, final_lags = [], []
    while time.time() < deadline:
        arrivals = sink.seen()["arrivals"]
        if all(len(arrivals.get(r["trace_id"], [])) >= 2 for r in enters):
            break
        time.sleep(0.1)
    arrivals = sink.seen()["arrivals"]
    for r in enters:
        got = sorted(arrivals.get(r["trace_id"], []))
        if len(got) >= 2:
            end = ends[r["trace_id"]]
            pending_lags.append(got[0] - r["start_time"])
            final_lags.append(got[1] - (r["start_time"] + end["duration"]))
    if not pending_lags:
        raise RuntimeError("no lag measured")
    print(
        f"(c) lag, enter written -> pending span received: median "
        f"{sorted(pending_lags)[len(pending_lags) // 2]:.2f} s (max {max(pending_lags):.2f} s; "
        "1 s of it is --pending-after); end written -> final span received: median "
        f"{sorted(final_lags)[len(final_lags) // 2]:.2f} s (max {max(final_lags):.2f} s)"
    )
    return {"pending": pending_lags, "final": final_lags}


def main(quick: bool = False) -> list[dict[str, object]]:
    work = Path(tempfile.mkdtemp(prefix="autotrace-bench-otlp-"))
    sink = Sink(work)
    try:
        a = export_generated(work, sink, 100_000 if quick else 1_000_000)
        b = real_run(work, sink, 100 if quick else 400)
        c = lag(work, sink)
    finally:
        sink.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    median = sorted(c["pending"])[len(c["pending"]) // 2]
    return [
        {
            "name": f"OTLP export, {a['spans']:,} spans from 64 files (spans/s)",
            "ours": f"{a['spans'] / a['wall']:,.0f}",
            "baseline": "",
            "ratio": "",
            "target": "",
            "ok": None,
        },
        {
            "name": "OTLP exporter CPU per 1,000 spans",
            "ours": f"{a['cpu'] / a['spans'] * 1e6:.1f} ms",
            "baseline": "",
            "ratio": "",
            "target": "",
            "ok": None,
        },
        {
            "name": "traced program with --otlp vs without (real run)",
            "ours": f"{b['otlp']:.2f} s",
            "baseline": f"{b['plain']:.2f} s",
            "ratio": f"{b['otlp'] / b['plain']:.2f}x",
            "target": "<= 1.2x",
            "ok": b["otlp"] / b["plain"] <= 1.2,
        },
        {
            "name": "lag: enter written -> pending span received",
            "ours": f"{median:.2f} s",
            "baseline": "",
            "ratio": "",
            "target": "<= 5 s",
            "ok": max(c["pending"]) <= 5.0,
        },
    ]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "sink":
        sink(sys.argv[2], sys.argv[3])
    else:
        rows = main(quick="--quick" in sys.argv)
        for row in rows:
            print(f"{row['name']}: {row['ours']}")
