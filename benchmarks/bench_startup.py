"""Start-up tax and pass-through cost of the agent, each against a baseline of the same run.

    python benchmarks/bench_startup.py [--runs N]

1. ``python -c pass`` without the agent, with the environment `inspect-trace run` gives its
   processes, and with ``PYTHONPATH=sitecustomize_example``; runs interleaved, min and
   median of each, and the differences to the baseline.
2. A wrapped call that is not traced (a pass-through) against the raw call: a Patch row
   whose describe returns None, and ``Popen.poll()`` of an ended child with the
   subprocess patch installed, in microseconds per call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

STARTUP_BUDGET_MS = 10.0
PASS_THROUGH_BUDGET_US = 2.0
EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "sitecustomize_example"


def _run_once(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return (time.perf_counter() - start) * 1000.0


def _environments(trace_dir: str, pycache: str, cache: str) -> dict[str, dict[str, str]]:
    """Baseline, `inspect-trace run`'s environment, and sitecustomize_example's."""
    from autotrace.cli import run as launcher

    base = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTRACE_")}
    base.pop("PYTHONPATH", None)
    # As installed: modules load from cached bytecode (kept out of the source tree).
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    base["PYTHONPYCACHEPREFIX"] = pycache
    base["XDG_CACHE_HOME"] = cache  # the agent's patch-target cache, for the example path
    run = launcher._environment(trace_dir, [], [], None)
    run.pop("PYTHONDONTWRITEBYTECODE", None)
    run.update(PYTHONPYCACHEPREFIX=pycache, XDG_CACHE_HOME=cache)
    example = dict(base, PYTHONPATH=str(EXAMPLE_DIR), AUTOTRACE_DIR=trace_dir)
    return {"baseline": base, "run": run, "example": example}


def startup(runs: int) -> dict[str, float]:
    """Milliseconds of ``python -c pass``: min and median, without and with the agent."""
    with (
        tempfile.TemporaryDirectory() as trace_dir,
        tempfile.TemporaryDirectory() as pycache,
        tempfile.TemporaryDirectory() as cache,
    ):
        envs = _environments(trace_dir, pycache, cache)
        times: dict[str, list[float]] = {name: [] for name in envs}
        for _ in range(3):  # warm the page cache, the .pyc files and the target cache
            for env in envs.values():
                _run_once(env)
        for _ in range(runs):  # interleaved: load on the machine hits every variant alike
            for name, env in envs.items():
                times[name].append(_run_once(env))
    figures: dict[str, float] = {}
    for name, values in times.items():
        figures[f"{name}_min_ms"] = min(values)
        figures[f"{name}_median_ms"] = statistics.median(values)
    for name in ("run", "example"):
        figures[f"{name}_tax_min_ms"] = figures[f"{name}_min_ms"] - figures["baseline_min_ms"]
        figures[f"{name}_tax_median_ms"] = (
            figures[f"{name}_median_ms"] - figures["baseline_median_ms"]
        )
    return figures


def _per_call_us(fn: Any, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def pass_through(number: int = 200_000) -> dict[str, float]:
    """Microseconds per call: raw vs wrapped-but-not-traced."""
    import importlib.machinery
    import types

    from autotrace.startup import agent
    from autotrace.startup.patching import Patch, Wrap

    module = types.ModuleType("autotrace_bench_target")
    module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None)

    def target(x: int) -> int:
        return x

    module.target = target  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    raw = _per_call_us(lambda: module.target(1), number)
    patch = Patch(
        name="bench",
        description="benchmark pass-through",
        wraps=[Wrap(module.__name__, "target", action="Bench", describe=lambda i, a, k: None)],
    )
    agent.install_patch(patch)
    wrapped = _per_call_us(lambda: module.target(1), number)
    agent.uninstall_patch(patch)
    del sys.modules[module.__name__]

    subprocess_patch = agent.load_patch("subprocess")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    agent.uninstall_patch(subprocess_patch)
    poll_raw = _per_call_us(child.poll, number)
    agent.install_patch(subprocess_patch)
    poll_wrapped = _per_call_us(child.poll, number)
    agent.uninstall_patch(subprocess_patch)
    return {
        "patch_row_raw_us": raw,
        "patch_row_wrapped_us": wrapped,
        "patch_row_extra_us": wrapped - raw,
        "popen_poll_raw_us": poll_raw,
        "popen_poll_wrapped_us": poll_wrapped,
        "popen_poll_extra_us": poll_wrapped - poll_raw,
    }


def main(argv: list[str] | None = None, quick: bool = False) -> list[dict[str, object]]:
    """Measure and print both figures; returns summary rows for benchmarks/run.py."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15 if quick else 40, help="runs of each")
    args = parser.parse_args([] if argv is None else argv)  # a caller's sys.argv is not ours
    figures = startup(args.runs)
    print(f"start-up: python -c pass, {args.runs} runs each, interleaved")
    labels = {
        "baseline": "baseline (no agent)",
        "run": "inspect-trace run",
        "example": "sitecustomize_example",
    }
    for name, label in labels.items():
        line = f"  {label:24} min {figures[name + '_min_ms']:6.1f} ms   median {figures[name + '_median_ms']:6.1f} ms"
        if name != "baseline":
            line += (
                f"   tax min {figures[name + '_tax_min_ms']:+5.1f} ms, median "
                f"{figures[name + '_tax_median_ms']:+5.1f} ms (budget {STARTUP_BUDGET_MS:.0f} ms; "
                f"ratio of medians {figures[name + '_median_ms'] / figures['baseline_median_ms']:.2f})"
            )
        print(line)
    calls = pass_through()
    figures.update(calls)
    print("pass-through: a wrapped call that is not traced, per call")
    print(
        f"  Patch row     raw {calls['patch_row_raw_us']:.3f} us   wrapped {calls['patch_row_wrapped_us']:.3f} us"
        f"   extra {calls['patch_row_extra_us']:+.3f} us (budget {PASS_THROUGH_BUDGET_US:.0f} us)"
    )
    print(
        f"  Popen.poll    raw {calls['popen_poll_raw_us']:.3f} us   wrapped {calls['popen_poll_wrapped_us']:.3f} us"
        f"   extra {calls['popen_poll_extra_us']:+.3f} us (budget {PASS_THROUGH_BUDGET_US:.0f} us)"
    )
    return rows(figures)


def rows(figures: dict[str, float]) -> list[dict[str, object]]:
    """The summary rows ({name, ours, baseline, ratio, target, ok}) of benchmarks/run.py."""
    out: list[dict[str, object]] = []
    for name, label in (("run", "inspect-trace run"), ("example", "sitecustomize_example")):
        ours, base = figures[f"{name}_median_ms"], figures["baseline_median_ms"]
        out.append(
            {
                "name": f"start-up python -c pass, {label} (median)",
                "ours": f"{ours:.1f} ms",
                "baseline": f"{base:.1f} ms",
                "ratio": f"{ours / base:.2f}",
                "target": f"<= +{STARTUP_BUDGET_MS:.0f} ms",
                "ok": ours - base <= STARTUP_BUDGET_MS,
            }
        )
    for key, label in (("patch_row", "Patch row"), ("popen_poll", "Popen.poll")):
        ours, base = figures[f"{key}_wrapped_us"], figures[f"{key}_raw_us"]
        out.append(
            {
                "name": f"pass-through call, {label}",
                "ours": f"{ours:.3f} us",
                "baseline": f"{base:.3f} us",
                "ratio": f"{ours / base:.1f}",
                "target": f"<= +{PASS_THROUGH_BUDGET_US:.0f} us",
                "ok": ours - base <= PASS_THROUGH_BUDGET_US,
            }
        )
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
