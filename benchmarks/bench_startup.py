"""Start-up tax and pass-through cost of the agent, each against a baseline of the same run.

    python benchmarks/bench_startup.py [--runs N]

1. ``python -c pass`` without and with the agent (the environment `inspect-trace run`
   gives its processes), runs interleaved, min and median of each, and the difference.
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
from typing import Any

STARTUP_BUDGET_MS = 10.0
PASS_THROUGH_BUDGET_US = 2.0


def _agent_env(trace_dir: str) -> dict[str, str]:
    from autotrace import launcher

    env = launcher._environment(trace_dir, [], [], None)
    return env


def _run_once(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return (time.perf_counter() - start) * 1000.0


def startup(runs: int) -> dict[str, float]:
    """Milliseconds of ``python -c pass``: min and median, without and with the agent."""
    with tempfile.TemporaryDirectory() as trace_dir, tempfile.TemporaryDirectory() as pycache:
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTRACE_")}
        base_env.pop("PYTHONPATH", None)
        # As installed: modules load from cached bytecode (kept out of the source tree).
        base_env.pop("PYTHONDONTWRITEBYTECODE", None)
        base_env["PYTHONPYCACHEPREFIX"] = pycache
        agent_env = _agent_env(trace_dir)
        agent_env.pop("PYTHONDONTWRITEBYTECODE", None)
        agent_env["PYTHONPYCACHEPREFIX"] = pycache
        for _ in range(3):  # warm the page cache and the .pyc files
            _run_once(base_env)
            _run_once(agent_env)
        base: list[float] = []
        agent: list[float] = []
        for _ in range(runs):
            base.append(_run_once(base_env))
            agent.append(_run_once(agent_env))
    return {
        "baseline_min_ms": min(base),
        "baseline_median_ms": statistics.median(base),
        "agent_min_ms": min(agent),
        "agent_median_ms": statistics.median(agent),
        "tax_min_ms": min(agent) - min(base),
        "tax_median_ms": statistics.median(agent) - statistics.median(base),
    }


def _per_call_us(fn: Any, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def pass_through(number: int = 200_000) -> dict[str, float]:
    """Microseconds per call: raw vs wrapped-but-not-traced."""
    import importlib.machinery
    import types

    from autotrace import agent
    from autotrace.patching import Patch, Wrap

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


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Measure and print both figures; returns them (benchmarks/run.py collects them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="interleaved runs of each start-up")
    args = parser.parse_args(argv)
    figures = startup(args.runs)
    print(f"start-up: python -c pass, {args.runs} runs each, interleaved")
    print(
        f"  baseline  min {figures['baseline_min_ms']:6.1f} ms   median {figures['baseline_median_ms']:6.1f} ms"
    )
    print(
        f"  agent     min {figures['agent_min_ms']:6.1f} ms   median {figures['agent_median_ms']:6.1f} ms"
    )
    print(
        f"  tax       min {figures['tax_min_ms']:+6.1f} ms   median {figures['tax_median_ms']:+6.1f} ms"
        f"   (budget {STARTUP_BUDGET_MS:.0f} ms; ratio of medians "
        f"{figures['agent_median_ms'] / figures['baseline_median_ms']:.2f})"
    )
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
    return figures


if __name__ == "__main__":
    main()
