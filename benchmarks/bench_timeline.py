"""The timeline page at 10k, 100k and 1M actions: file size, time to write it, time to
first paint and per-frame pan time measured in headless Chromium; and the README's
screenshot of a hung run.

    python benchmarks/bench_timeline.py                       # 10k, 100k, 1M actions
    python benchmarks/bench_timeline.py --sizes 10000         # one size
    python benchmarks/bench_timeline.py --screenshot docs/timeline.png

The runs are written as a real one is (``autotrace.records``, one file per process):
an evaluation-shaped parent and 7 child processes, each with 4 threads of samples
(Subtask > Model / Tool Call > Subprocess), 1% errors, 0.5% timeouts and cancels, and
one child hung in ``sleep 600`` with watchdog reports. The baseline, measured in the same
run on the same files, is ``inspect-trace anomalies --run --json`` (it reads the same
files with the fast reader, keeping only open and failed actions).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from components import CHROMIUM_ARGS, chromium  # noqa: E402

from autotrace import records  # noqa: E402

PROCESSES = 8
THREADS = 4
RUN_ID = "20260101T000000-bench"
STARTED = time.time()  # the hung process is this one: its file must not predate it


def write_run(directory: Path, actions: int, seed: int = 7) -> None:
    """``actions`` actions over PROCESSES files; the last process hangs."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    now = time.time()
    # Processes that are gone (exited) but for the hung one, which is this process:
    # "running" needs a live pid.
    pids = [os.getpid() if p == PROCESSES - 1 else 4_000_000 + p for p in range(PROCESSES)]
    per_process = actions // PROCESSES
    span = max(60.0, actions / 2000)  # seconds the run lasted
    t0 = now - span - 5
    for p, pid in enumerate(pids):
        parent_pid = None if p == 0 else pids[0]
        argv = ["python", "eval.py"] if p == 0 else ["python", "-m", "sandbox", f"--sample={p}"]
        out: list[bytes] = [
            records.message_line(
                "[autotrace] process start",
                STARTED + 0.5 if pid == os.getpid() else t0 + p * 0.01,
                {
                    "event_kind": "process",
                    "run_id": RUN_ID,
                    "pid": pid,
                    "ppid": parent_pid or 1,
                    "parent_pid": parent_pid,
                    "argv": argv,
                },
            )
        ]
        n = 0
        serial = 0
        for thread in range(THREADS):
            t = t0 + 0.05 + thread * 0.01
            name = "MainThread" if thread == 0 else f"ThreadPoolExecutor-0_{thread}"
            while n < per_process * (thread + 1) // THREADS:
                serial += 1
                sample = f"{pid}-{serial}"
                subtask = records.ActionLines(
                    "Subtask", f"sample {sample}", f"s-{sample}", pid=pid, thread=name,
                    task=None, parent_id=None,
                )  # fmt: skip
                out.append(subtask.line("enter", t, start_time=t))
                start = t
                n += 1
                for step in range(rng.randint(2, 6)):
                    if n >= per_process * (thread + 1) // THREADS:
                        break
                    kind = rng.random()
                    action, detail = (
                        ("Model", "generate (openai/gpt-4o)")
                        if kind < 0.5
                        else ("Tool Call", f"bash(cmd='pytest -k test_{step}')")
                    )
                    tid = f"a-{sample}-{step}"
                    lines = records.ActionLines(
                        action, detail, tid, pid=pid, thread=name, task=None,
                        parent_id=f"s-{sample}",
                    )  # fmt: skip
                    out.append(lines.line("enter", t, start_time=t))
                    n += 1
                    duration = rng.expovariate(1 / 0.02)
                    if action == "Tool Call" and n < per_process * (thread + 1) // THREADS:
                        sub = records.ActionLines(
                            "Subprocess", f"pytest -k test_{step}", tid + "-p", pid=pid,
                            thread=name, task=None, parent_id=tid,
                        )  # fmt: skip
                        out.append(sub.line("enter", t + 0.001, start_time=t + 0.001))
                        out.append(
                            sub.line("exit", t + duration - 0.001, duration=duration - 0.002)
                        )
                        n += 1
                    roll = rng.random()
                    event = (
                        "error"
                        if roll < 0.01
                        else "timeout"
                        if roll < 0.015
                        else "cancel"
                        if roll < 0.02
                        else "exit"
                    )
                    error = ConnectionError("connection reset") if event == "error" else None
                    out.append(lines.line(event, t + duration, duration=duration, error=error))
                    t += duration + 0.001
                out.append(subtask.line("exit", t, duration=t - start))
                t += 0.002
        if p == PROCESSES - 1:  # the hung one, with its watchdog reports
            hung = records.ActionLines(
                "Subprocess", "sleep 600", "hung-1", pid=pid, thread="MainThread", task=None,
                parent_id=None,
            )  # fmt: skip
            out.append(hung.line("enter", now - 4, start_time=now - 4))
            frame = {
                "file": "/app/sandbox.py",
                "line": 42,
                "function": "run",
                "code": "proc.wait()",
            }
            for age in (1, 2):
                out.append(
                    records.message_line(
                        "[autotrace] stuck action: Subprocess",
                        now - 4 + age,
                        {
                            "event_kind": "stack",
                            "trace_id": "hung-1",
                            "stack": [frame],
                            "where": "/app/sandbox.py:42 in run",
                        },
                    )  # fmt: skip
                )
        (directory / f"trace-{pid}.log").write_bytes(b"".join(out))


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of a command run to the end."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{cmd} exited {proc.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss


def open_in_browser(page: Path, frames: int = 30) -> dict[str, float]:
    """First paint (ms after navigation start, as the page measures it) and pan frames."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 800})
        errors: list[str] = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(page.as_uri(), timeout=300_000)
        tab.wait_for_function("window.timeline && window.timeline.ready", timeout=300_000)
        first_paint = tab.evaluate("window.timeline.firstPaintMs")
        whole = tab.evaluate(f"window.timeline.measurePan({frames})")
        tab.locator("#chart").focus()
        for _ in range(6):
            tab.keyboard.press("+")
        zoomed = tab.evaluate(f"window.timeline.measurePan({frames})")
        browser.close()
    if errors:
        raise RuntimeError(f"page errors: {errors}")
    return {
        "first_paint_ms": first_paint,
        "pan_whole_ms": whole["median"],
        "pan_whole_max_ms": whole["max"],
        "pan_zoomed_ms": zoomed["median"],
    }


def measure(size: int, work: Path) -> dict[str, float]:
    directory = work / f"run-{size}"
    write_run(directory, size)
    cli = [sys.executable, "-m", "autotrace"]
    baseline, _ = timed([*cli, "anomalies", "--run", "--json", "--trace-dir", str(directory)])
    page = work / f"timeline-{size}.html"
    seconds, peak = timed([*cli, "timeline", "--trace-dir", str(directory), "-o", str(page)])
    perfetto = work / f"perfetto-{size}.json"
    export_s, _ = timed(
        [*cli, "export", "--format", "perfetto", "--trace-dir", str(directory), "-o", str(perfetto)]
    )
    result = {
        "actions": size,
        "trace_mb": sum(p.stat().st_size for p in directory.iterdir()) / 1e6,
        "anomalies_s": baseline,
        "timeline_s": seconds,
        "timeline_peak_mb": peak / 1024,
        "page_mb": page.stat().st_size / 1e6,
        "perfetto_s": export_s,
        "perfetto_mb": perfetto.stat().st_size / 1e6,
    }
    result.update(open_in_browser(page))
    shutil.rmtree(directory)
    perfetto.unlink()
    return result


def screenshot(out: Path) -> None:
    """A real hung run (tests/timeline_support/hung_run.py) as the README shows it."""
    program = ROOT / "tests" / "timeline_support" / "hung_run.py"
    work = Path(tempfile.mkdtemp(prefix="timeline-shot-"))
    trace_dir = work / "traces"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTRACE_")}
    env["HUNG_RUN_PLAIN"] = "1"
    run = subprocess.Popen(
        [sys.executable, "-m", "autotrace", "run", "--stuck-after", "0.5", "--trace-dir"]
        + [str(trace_dir), "--", sys.executable, str(program)],
        cwd=work,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(6)  # the child hangs after ~1 s; let the watchdog report it a few times
        page = work / "timeline.html"
        subprocess.run(
            [sys.executable, "-m", "autotrace", "timeline", "--trace-dir", str(trace_dir)]
            + ["-o", str(page)],
            check=True,
            cwd=ROOT,
        )
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 620}, color_scheme="light")
        tab.goto(page.as_uri())
        tab.wait_for_function("window.timeline && window.timeline.ready")
        culprit = tab.evaluate("window.timeline.barCenter(window.timeline.culprit)")
        tab.mouse.move(culprit["x"] - 120, culprit["y"])  # a hover, as a person would
        tab.locator("#tooltip").wait_for(state="visible")
        out.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(out))
        browser.close()
    shutil.rmtree(work)
    print(f"wrote {out}")


def main(quick: bool = False, sizes: list[int] | None = None) -> list[dict[str, object]]:
    sizes = sizes or ([10_000, 100_000] if quick else [10_000, 100_000, 1_000_000])
    work = Path(tempfile.mkdtemp(prefix="timeline-bench-"))
    rows: list[dict[str, object]] = []
    try:
        header = (
            f"{'actions':>9} {'trace MB':>9} {'anomalies s':>11} {'timeline s':>10} "
            f"{'peak MB':>8} {'page MB':>8} {'first paint':>11} {'pan (whole)':>12} "
            f"{'pan (zoomed)':>12} {'perfetto s':>10} {'perfetto MB':>11}"
        )
        print(header, flush=True)
        for size in sizes:
            r = measure(size, work)
            print(
                f"{size:>9,} {r['trace_mb']:>9.1f} {r['anomalies_s']:>11.2f} "
                f"{r['timeline_s']:>10.2f} {r['timeline_peak_mb']:>8.0f} {r['page_mb']:>8.1f} "
                f"{r['first_paint_ms']:>9.0f}ms {r['pan_whole_ms']:>10.1f}ms "
                f"{r['pan_zoomed_ms']:>10.1f}ms {r['perfetto_s']:>10.2f} {r['perfetto_mb']:>11.1f}",
                flush=True,
            )
            rows.append(
                {
                    "name": f"timeline page, {size:,} actions",
                    "ours": f"{r['timeline_s']:.2f} s, {r['page_mb']:.1f} MB, "
                    f"first paint {r['first_paint_ms']:.0f} ms",
                    "baseline": f"anomalies --run {r['anomalies_s']:.2f} s",
                    "ratio": f"x{r['timeline_s'] / r['anomalies_s']:.1f}",
                    "target": "opens and pans smoothly",
                    "ok": r["pan_whole_ms"] < 50,
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="comma-separated action counts")
    parser.add_argument("--screenshot", type=Path, help="write the README's screenshot here")
    args = parser.parse_args()
    if args.screenshot:
        screenshot(args.screenshot)
    else:
        main(sizes=[int(s) for s in args.sizes.split(",")] if args.sizes else None)
