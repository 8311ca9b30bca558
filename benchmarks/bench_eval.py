"""Cost on a real evaluation: wall time and peak memory of `inspect eval`, three ways.

    python benchmarks/bench_eval.py [--samples 200] [--rounds 3]

A real ``inspect eval`` (benchmarks/eval/subprocess_tools.py: each sample's model asks
for a tool that starts two child processes, then answers) against the local model
server (tests/llm_server.py as its own process, inspect's ``openai`` provider pointed
at it, offline), in a plain venv the benchmark makes (this tree, inspect_ai and openai
installed by pip with the newest versions a clean install resolves, bytecode compiled
as pip does: not the development venv, whose environment may forbid bytecode files),
run in the same session, interleaved round by round:

- ``untraced``: inspect's own trace handler off (INSPECT_TRACE_LEVEL=CRITICAL);
- ``inspect trace``: inspect as it comes, its own trace file on;
- ``inspect trace + autotrace``: the same under ``inspect-trace run``.

Each eval runs from a small wrapper that reports the eval's peak RSS
(``RUSAGE_CHILDREN``) and wall time. Medians over the rounds, and the ratio within each
round (paired); the goal is under 1% added wall time against inspect's own trace alone.

On a shared machine the rounds spread by several percent, more than the goal. So
``--instructions`` also counts the instructions the eval process executes each way
(valgrind's callgrind, one eval each: a count that does not follow the machine's load,
though the eval's own timing-dependent work, event-loop wake-ups and garbage
collections, still moves it by a few tenths of a percent from run to run at 200
samples), and ``--attribute`` measures the agent's share directly: one more traced eval under
py-spy (a sampling profiler, installed in a venv of its own), whose samples are split
into the agent's work (an autotrace frame innermost, or only the standard library
below it on its behalf) and everything else (the program, and the work our wrappers
call: the wrapped library, and modules imported through our import hook).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(HERE))
from plain_venv import plain_python, versions  # noqa: E402

VENV = Path(tempfile.gettempdir()) / "autotrace-bench-eval-venv"
GOAL = 0.01  # added wall time, against inspect's own trace alone

# Runs the eval and prints its wall time, CPU time (user + system, children included:
# less sensitive than wall time to other load on a shared machine) and peak RSS (the
# largest process it waited on).
_WRAPPER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
                  "rss_mb": usage.ru_maxrss / 1024}))
"""

VARIANTS = ("untraced", "inspect trace", "inspect trace + autotrace")


def _server(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The model server: a tool call on each sample's first turn, the answer after it."""
    port_file = directory / "llm-port"
    port_file.unlink(missing_ok=True)  # an earlier server's port would be read as this one's
    default = {
        "do": "reply",
        "text": "done",
        "tool_calls": [{"name": "run_commands", "arguments": {"n": 7}}],
        "until_tool_result": True,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            str(TESTS / "llm_server.py"),
            "--port-file",
            str(port_file),
            "--default",
            json.dumps(default),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the model server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{int(port_file.read_text())}/v1"


def base_env(work: Path) -> dict[str, str]:
    """This environment without our settings or inspect's, modules loaded as installed:
    from their cached bytecode (the task file's is kept out of the source tree)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOTRACE_", "INSPECT_"))}
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def _eval_env(env: dict[str, str], url: str, work: Path, name: str) -> dict[str, str]:
    """``env`` for one eval: the model server, and inspect's directories (ours too) of its own."""
    return dict(
        env,
        OPENAI_BASE_URL=url,
        OPENAI_API_KEY="sk-bench-not-a-key",
        XDG_DATA_HOME=str(work / f"data-{name}"),
        INSPECT_LOG_DIR=str(work / f"logs-{name}"),
    )


def _eval_command(bin_dir: Path, samples: int) -> list[str]:
    return [
        str(bin_dir / "inspect"),
        "eval",
        "subprocess_tools.py",
        "--model",
        "openai/test",
        "-T",
        f"samples={samples}",
        "--display",
        "none",
        "--log-level",
        "warning",
    ]


def _run(
    variant: str, url: str, work: Path, samples: int, index: int, bin_dir: Path
) -> dict[str, Any]:
    env = _eval_env(base_env(work), url, work, str(index))
    data_home = Path(env["XDG_DATA_HOME"])  # inspect's trace directory (and ours) lives here
    command = _eval_command(bin_dir, samples)
    if variant == "untraced":
        env["INSPECT_TRACE_LEVEL"] = "CRITICAL"
    elif variant == "inspect trace + autotrace":
        command = [str(bin_dir / "inspect-trace"), "run", "--", *command]
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", _WRAPPER, *command],
        cwd=HERE / "eval",
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    traces = list((data_home / "inspect_ai" / "traces").glob("trace-*"))
    result["trace_bytes"] = sum(p.stat().st_size for p in traces)
    result["actions"] = _count_actions(traces)
    return result


PYSPY_VENV = Path(tempfile.gettempdir()) / "autotrace-bench-pyspy"
# Below our innermost frame, frames of these are the work we wrap or the program's own.
_NOT_OURS = (
    "inspect_ai/", "openai/", "httpx/", "httpcore/", "anyio/", "pydantic", "asyncio/",
    "shortuuid/", "click/", "rich/", "subprocess.py", "selectors.py", "concurrent/",
    "<frozen importlib", "<module>",
)  # fmt: skip


def _pyspy() -> Path:
    """py-spy, in a venv of its own (made once)."""
    binary = PYSPY_VENV / "bin" / "py-spy"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PYSPY_VENV)], check=True)
        pip = [str(PYSPY_VENV / "bin" / "pip"), "install", "-q", "py-spy"]
        subprocess.run(pip, check=True)
    return binary


def _launched_env(work: Path, bin_dir: Path) -> dict[str, str]:
    """The environment `inspect-trace run` gives its command (for tools that cannot follow
    the launcher's exec: the eval process is then started in it directly)."""
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    given = subprocess.run(
        [str(bin_dir / "inspect-trace"), "run", "--", str(bin_dir / "python"), "-c", dump],
        env=base_env(work),
        capture_output=True,
        text=True,
        check=True,
    )
    env: dict[str, str] = json.loads(given.stdout)
    return env


def attribute(url: str, work: Path, samples: int, bin_dir: Path) -> dict[str, Any]:
    """The agent's share of the traced eval process's samples (py-spy, 250 Hz, all threads)."""
    env = _eval_env(_launched_env(work, bin_dir), url, work, "attribute")
    raw = Path(os.environ.get("AUTOTRACE_BENCH_PYSPY_OUT", work / "pyspy.txt"))
    subprocess.run(
        [str(_pyspy()), "record", "-r", "250", "-f", "raw", "-o", str(raw), "--threads", "--",
         *_eval_command(bin_dir, samples)],
        cwd=HERE / "eval", env=env, capture_output=True, check=True, timeout=1800,
    )  # fmt: skip
    total = ours = 0
    where: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        total += n
        inner = max((i for i, f in enumerate(frames) if "(autotrace/" in f), default=None)
        if inner is None or "Background.sleep" in frames[inner]:
            continue  # not ours, or our thread asleep (py-spy cannot always tell idle)
        below = frames[inner + 1 :]
        if any(mark in frame for frame in below for mark in _NOT_OURS):
            continue
        ours += n
        name = frames[inner].split(" (")[0]
        where[name] = where.get(name, 0) + n
    top = sorted(where.items(), key=lambda kv: -kv[1])[:8]
    return {"samples": total, "ours": ours, "share": ours / total if total else 0.0, "top": top}


def instructions(url: str, work: Path, samples: int, bin_dir: Path) -> dict[str, int]:
    """Instructions the eval process executes, inspect's trace alone and with the agent
    (valgrind's callgrind, one eval each, the same hash seed): a count that does not
    spread with the machine's load as wall time does. The launcher (one Python start-up
    before the eval's, see bench_startup.py) is not in it; nor is the kernel's work."""
    counts: dict[str, int] = {}
    for variant in VARIANTS[1:]:
        start = base_env(work) if variant == "inspect trace" else _launched_env(work, bin_dir)
        env = dict(_eval_env(start, url, work, f"callgrind-{len(counts)}"), PYTHONHASHSEED="0")
        command = _eval_command(bin_dir, samples)
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--cache-sim=no", "--branch-sim=no",
             "--callgrind-out-file=/dev/null", str(bin_dir / "python"), *command],
            cwd=HERE / "eval", env=env, capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise RuntimeError(f"callgrind run of {variant} failed: {done.stderr[-500:]}")
        counts[variant] = int(found.group(1))
    return counts


def _count_actions(paths: list[Path]) -> dict[str, int]:
    """How many action enters each file holds, by source (ours or inspect's)."""
    import gzip

    counts = {"autotrace": 0, "inspect": 0}
    for path in paths:
        opener: Any = gzip.open if path.name.endswith(".gz") else open
        try:
            with opener(path, "rt", errors="replace") as f:
                for line in f:
                    if '"event": "enter"' in line or '"event":"enter"' in line:
                        counts["autotrace" if '"source": "autotrace"' in line else "inspect"] += 1
        except (OSError, EOFError):
            continue
    return counts


def main(argv: list[str] | None = None, quick: bool = False) -> list[dict[str, object]]:
    """Run the rounds, print the table; rows for benchmarks/run.py."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50 if quick else 200)
    parser.add_argument("--rounds", type=int, default=1 if quick else 7)
    parser.add_argument("--venv", type=Path, default=VENV, help="the plain venv to make or reuse")
    parser.add_argument(
        "--attribute", action="store_true", help="also the agent's share of samples (py-spy)"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count the eval process's instructions each way (valgrind; minutes)",
    )
    parser.add_argument(
        "--paired-only",
        action="store_true",
        help="only inspect's trace alone and with autotrace (more rounds in the same time)",
    )
    args = parser.parse_args([] if argv is None else argv)
    if args.instructions and shutil.which("valgrind") is None:
        parser.error("--instructions needs valgrind (Debian: apt-get install valgrind)")
    python = plain_python(args.venv, extra=("inspect_ai", "openai"))
    bin_dir = python.parent
    found = versions(python, "inspect_ai", "openai", "wrapt", "inspect-autotrace")
    variants = VARIANTS[1:] if args.paired_only else VARIANTS
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server, url = _server(work)
        try:
            index = 0
            # Warm caches (the task's bytecode, the page cache), every variant once.
            for variant in variants:
                _run(variant, url, work, 5, index, bin_dir)
            for round_index in range(args.rounds):
                # Interleaved, so that machine load hits each alike, and in the reverse
                # order every other round, so that neither always runs first (ABBA).
                order = variants if round_index % 2 == 0 else variants[::-1]
                for variant in order:
                    index += 1
                    result = _run(variant, url, work, args.samples, index, bin_dir)
                    if result["code"] != 0:
                        raise RuntimeError(f"{variant}: inspect eval exited {result['code']}")
                    results[variant].append(result)
            shares = attribute(url, work, args.samples, bin_dir) if args.attribute else None
            counted = instructions(url, work, args.samples, bin_dir) if args.instructions else None
        finally:
            server.terminate()
            server.wait(10)
    print(
        f"inspect eval, {args.samples} samples (one tool call, two child processes each), "
        f"{args.rounds} rounds, medians; plain venv: "
        + ", ".join(f"{name} {version}" for name, version in found.items())
    )
    base = statistics.median(r["wall"] for r in results["inspect trace"])
    base_cpu = statistics.median(r["cpu"] for r in results["inspect trace"])
    rows: list[dict[str, object]] = []
    for variant in variants:
        walls = [r["wall"] for r in results[variant]]
        wall = statistics.median(walls)
        rss = statistics.median(r["rss_mb"] for r in results[variant])
        cpu = statistics.median(r["cpu"] for r in results[variant])
        last = results[variant][-1]
        print(
            f"  {variant:28} wall {wall:7.2f} s ({', '.join(f'{w:.2f}' for w in walls)})"
            f"  {wall / base - 1:+6.1%}   CPU {cpu:6.2f} s {cpu / base_cpu - 1:+6.1%}"
            f"   peak RSS {rss:6.1f} MB"
            f"   trace files {last['trace_bytes'] / 1e3:.0f} kB, enters {last['actions']}"
        )
    print("  (+x%: against inspect's own trace alone, the same rounds)")
    # Paired: each round runs the variants back to back, so the ratio within a round
    # cancels most of the load that drifts across rounds.
    pairs = list(zip(results["inspect trace + autotrace"], results["inspect trace"], strict=True))
    walls = [traced["wall"] / alone["wall"] for traced, alone in pairs]
    cpus = [traced["cpu"] / alone["cpu"] for traced, alone in pairs]
    print(
        f"  paired, round by round (autotrace / inspect trace alone): wall median "
        f"{statistics.median(walls) - 1:+.1%} (rounds {', '.join(f'{r - 1:+.1%}' for r in walls)}),"
        f" CPU median {statistics.median(cpus) - 1:+.1%}"
        f" (rounds {', '.join(f'{r - 1:+.1%}' for r in cpus)})"
    )
    if len(walls) >= 3:
        # The mean of the paired ratios with a 95% interval (normal approximation): how
        # far the figure can be trusted, given how much the rounds spread.
        for label, ratios in (("wall", walls), ("CPU", cpus)):
            half = 1.96 * statistics.stdev(ratios) / len(ratios) ** 0.5
            print(
                f"  paired {label}: mean {statistics.fmean(ratios) - 1:+.2%},"
                f" 95% interval {statistics.fmean(ratios) - 1 - half:+.2%}"
                f" to {statistics.fmean(ratios) - 1 + half:+.2%}"
            )
    if counted is not None:
        alone, traced = counted["inspect trace"], counted["inspect trace + autotrace"]
        print(
            f"  instructions of the eval process (callgrind, one eval each): inspect trace alone"
            f" {alone / 1e9:.3f} G, + autotrace {traced / 1e9:.3f} G ({traced / alone - 1:+.2%})"
        )
    if shares is not None:
        print(
            f"  the agent's share of the traced eval process (py-spy, {shares['samples']} "
            f"samples at 250 Hz, all threads): {shares['ours']} samples, {shares['share']:.2%}; "
            + ", ".join(f"{name} {n}" for name, n in shares["top"])
        )
    ours = statistics.median(r["wall"] for r in results["inspect trace + autotrace"])
    rows.append(
        {
            "name": f"inspect eval {args.samples} samples with tool subprocesses (median wall)",
            "ours": f"{ours:.2f} s",
            "baseline": f"{base:.2f} s (inspect trace alone)",
            "ratio": f"{ours / base:.3f}",
            "target": f"<= +{GOAL:.0%}",
            "ok": ours / base - 1 <= GOAL,
        }
    )
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
