"""Start-up tax and cost of the first action, in a plain venv, and the pass-through cost.

    python benchmarks/bench_startup.py [--runs N] [--venv DIR]

1. In a plain venv this benchmark makes (``plain_venv.py``: ``pip install`` of this tree,
   newest dependencies), interleaved runs of ``python -c pass`` and of a program that
   makes one action (``subprocess.run(['true'])``): without the agent, with the
   environment `inspect-trace run` gives its processes, and with
   ``PYTHONPATH=sitecustomize_example``; min and median of each, the differences to the
   untraced run, and the modules a traced ``python -c pass`` gains.
2. A wrapped call that is not traced (a pass-through) against the raw call: a Patch row
   whose describe returns None, and ``Popen.poll()`` of an ended child with the
   subprocess patch installed, in microseconds per call (this venv).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_venv import DEFAULT_DIR, plain_python, versions  # noqa: E402

STARTUP_BUDGET_MS = 10.0  # python -c pass, and start-up plus one action
PASS_THROUGH_BUDGET_US = 2.0
EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "sitecustomize_example"
PROGRAMS = {"pass": "pass", "one action": "import subprocess; subprocess.run(['true'])"}
SYS_MODULES = "import sys; print(' '.join(sorted(sys.modules)))"


def _run_once(python: Path, code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(python), "-c", code], env=env, check=True)
    return (time.perf_counter() - start) * 1000.0


def _environments(python: Path, trace_dir: str, pycache: str) -> dict[str, dict[str, str]]:
    """Untraced, `inspect-trace run`'s environment, and sitecustomize_example's."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOTRACE_", "INSPECT_"))}
    base.pop("PYTHONPATH", None)
    # As installed: modules load from cached bytecode (kept out of the source tree).
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    base["PYTHONPYCACHEPREFIX"] = pycache
    bootstrap = subprocess.run(
        [
            str(python),
            "-c",
            "import autotrace.startup.bootstrap as b, os; print(os.path.dirname(b.__file__))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    run = dict(base, PYTHONPATH=bootstrap, AUTOTRACE_DIR=trace_dir, AUTOTRACE_RUN_ID="bench")
    example = dict(base, PYTHONPATH=str(EXAMPLE_DIR), AUTOTRACE_DIR=trace_dir)
    return {"baseline": base, "run": run, "example": example}


def _modules(python: Path, env: dict[str, str]) -> set[str]:
    out = subprocess.run([str(python), "-c", SYS_MODULES], env=env, capture_output=True, text=True)
    return set(out.stdout.split())


def startup(runs: int, venv: Path = DEFAULT_DIR, as_is: bool = False) -> dict[str, Any]:
    """Milliseconds of each program: min and median, without and with the agent."""
    python = plain_python(venv, as_is)
    figures: dict[str, Any] = {"versions": versions(python, "wrapt", "inspect-autotrace")}
    with tempfile.TemporaryDirectory() as trace_dir, tempfile.TemporaryDirectory() as pycache:
        envs = _environments(python, trace_dir, pycache)
        bare_modules = _modules(python, envs["baseline"])
        figures["gained_modules"] = sorted(_modules(python, envs["run"]) - bare_modules)
        times: dict[tuple[str, str], list[float]] = {
            (program, name): [] for program in PROGRAMS for name in envs
        }
        for _ in range(3):  # warm the page cache and the .pyc files
            for code in PROGRAMS.values():
                for env in envs.values():
                    _run_once(python, code, env)
        for _ in range(runs):  # interleaved: load on the machine hits every variant alike
            for program, code in PROGRAMS.items():
                for name, env in envs.items():
                    times[program, name].append(_run_once(python, code, env))
    for (program, name), values in times.items():
        figures[f"{program}/{name}_min_ms"] = min(values)
        figures[f"{program}/{name}_median_ms"] = statistics.median(values)
    for program in PROGRAMS:
        for name in ("run", "example"):
            for stat in ("min", "median"):
                figures[f"{program}/{name}_tax_{stat}_ms"] = (
                    figures[f"{program}/{name}_{stat}_ms"]
                    - figures[f"{program}/baseline_{stat}_ms"]
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
    parser.add_argument("--venv", type=Path, default=DEFAULT_DIR, help="the plain venv's folder")
    parser.add_argument(
        "--as-is", action="store_true", help="measure what --venv holds (another version)"
    )
    args = parser.parse_args([] if argv is None else argv)  # a caller's sys.argv is not ours
    figures = startup(args.runs, args.venv, args.as_is)
    versions_text = ", ".join(f"{k} {v}" for k, v in figures["versions"].items())
    print(f"plain venv ({versions_text}), {args.runs} runs of each, interleaved")
    labels = {
        "baseline": "untraced",
        "run": "inspect-trace run",
        "example": "sitecustomize_example",
    }
    for program, code in PROGRAMS.items():
        print(f"  python -c {code!r}")
        for name, label in labels.items():
            key = f"{program}/{name}"
            line = f"    {label:24} min {figures[key + '_min_ms']:6.1f} ms   median {figures[key + '_median_ms']:6.1f} ms"
            if name != "baseline":
                line += (
                    f"   added: min {figures[key + '_tax_min_ms']:+5.1f} ms, median "
                    f"{figures[key + '_tax_median_ms']:+5.1f} ms (budget {STARTUP_BUDGET_MS:.0f} ms)"
                )
            print(line)
    gained = figures["gained_modules"]
    print(f"  modules a traced python -c pass gains: {len(gained)}: {' '.join(gained)}")
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


def rows(figures: dict[str, Any]) -> list[dict[str, object]]:
    """The summary rows ({name, ours, baseline, ratio, target, ok}) of benchmarks/run.py."""
    out: list[dict[str, object]] = []
    for program, what in (
        ("pass", "start-up python -c pass"),
        ("one action", "start-up + one action"),
    ):
        for name, label in (("run", "inspect-trace run"), ("example", "sitecustomize_example")):
            ours = figures[f"{program}/{name}_median_ms"]
            base = figures[f"{program}/baseline_median_ms"]
            out.append(
                {
                    "name": f"{what}, {label}, plain venv (median)",
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
