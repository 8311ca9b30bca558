"""What the watchdog costs while nothing is stuck, measured against a baseline in the same run.

    python benchmarks/bench_watchdog.py

(a) microseconds per traced action (enter + exit written) with the watchdog thread
    running against the same loop with the watchdog never started;
(b) CPU time the idle watchdog thread uses over a few seconds while 1,000 actions
    stay open (not yet stuck) and another thread opens and closes actions;
(c) the cost of one stuck report (paid only when an action is stuck).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time

os.environ["AUTOTRACE_DIR"] = tempfile.mkdtemp(prefix="autotrace-bench-")
os.environ.setdefault("AUTOTRACE_STUCK_AFTER", "60")

from autotrace.runtime import (
    actions,
    watchdog,  # noqa: E402
)

N = 20_000
ROUNDS = 7


def per_action_us() -> float:
    trace = actions.trace_action
    t0 = time.perf_counter()
    for _ in range(N):
        with trace("Tool Call", "bench"):
            pass
    return (time.perf_counter() - t0) / N * 1e6


def thread_cpu_seconds(native_id: int) -> float:
    """user + system CPU of one thread (Linux /proc)."""
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def inner(mode: str) -> None:
    """One process measuring (a) with the watchdog 'on' or 'off' (prints microseconds)."""
    if mode == "off":  # marked as started, never started: no thread at all
        actions._watchdog_started = True
    per_action_us()  # warm-up (opens the file, starts the watchdog when on)
    assert (watchdog.current() is not None) == (mode == "on")
    print(min(per_action_us() for _ in range(ROUNDS)))


def one_report_us() -> float:
    """The cost of one stuck report, paid only when an action is stuck."""
    release = threading.Event()
    opened: list[actions.OpenAction] = []

    def blocked() -> None:
        with actions.trace_action("Tool Call", "blocked") as span:
            assert span is not None
            opened.append(span)
            release.wait()

    thread = threading.Thread(target=blocked)
    thread.start()
    while not opened:
        time.sleep(0.001)
    dog = watchdog.Watchdog(threshold=1.0)
    rounds = 200
    t0 = time.perf_counter()
    for _ in range(rounds):
        dog.report(opened[0], time.monotonic())
    cost = (time.perf_counter() - t0) / rounds * 1e6
    release.set()
    thread.join()
    return cost


def main() -> None:
    # (a) alternate fresh processes so that neither mode gets the warmer machine.
    import subprocess
    import sys

    results: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(4):
        for mode in ("off", "on"):
            out = subprocess.run(
                [sys.executable, __file__, "--inner", mode], capture_output=True, text=True
            )
            results[mode].append(float(out.stdout.strip()))
    off, on = min(results["off"]), min(results["on"])
    print(f"(a) per action, watchdog off: {off:.2f} us   on: {on:.2f} us   ratio {on / off:.3f}")

    # (b) 1,000 open actions younger than the threshold, plus a busy thread. The
    # watchdog's thread runs while actions are open (the first one started it).
    spans = [actions.start_action("Subprocess", f"sleep {i}") for i in range(1000)]
    dog = watchdog.start()
    assert dog is not None and dog.loop.running
    while dog.loop.native_id is None:
        time.sleep(0.001)
    native_id = dog.loop.native_id
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            with actions.trace_action("Tool Call", "busy"):
                time.sleep(0.001)

    worker = threading.Thread(target=busy)
    worker.start()
    before = thread_cpu_seconds(native_id)
    checks = dog.checks
    seconds = 5.0
    time.sleep(seconds)
    used = thread_cpu_seconds(native_id) - before
    stop.set()
    worker.join()
    for span in spans:
        if span is not None:
            span.end()
    report_cost = one_report_us()
    print(
        f"(b) idle watchdog thread CPU over {seconds:.0f} s with 1,000 open actions: "
        f"{used * 1000:.1f} ms ({used / seconds * 100:.3f} % of one core), "
        f"wake-ups: {dog.checks - checks}, stuck reports: {dog.reports}"
    )
    print(f"(c) one stuck report (stack of a blocked thread, record written): {report_cost:.0f} us")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--inner"]:
        inner(sys.argv[2])
    else:
        main()
