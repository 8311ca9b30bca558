"""Cost of inspect's own actions under the agent: its trace_action, traced against plain.

    python benchmarks/bench_native.py [--repeats 7]

In the plain venv bench_eval.py makes (this tree, inspect_ai and openai as a clean install
resolves them), a program sets up inspect's trace handler (``init_logger``) and times
inspect's ``trace_action`` in a loop, shaped like one sample of an eval: a ``Tool Call``
with a ``Subprocess`` inside, a ``Model`` action with one inside it, and an HTTP trace
message; the same program runs plain and under ``inspect-trace run``, interleaved. Two
workloads: details that repeat (the same model, the same tool call: what the redaction's
cache sees in most evals) and details unique to each sample (every text masked afresh).
Reported per native action (four per sample), as the best of ``--repeats`` runs, each the
median of 7 timed loops; CPU time of the process (``time.process_time``), not wall time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_eval import VENV, base_env  # noqa: E402
from plain_venv import plain_python, versions  # noqa: E402

ACTIONS_PER_SAMPLE = 4

_PROGRAM = """
import logging, sys, time
from inspect_ai._util.logger import init_logger
from inspect_ai._util.trace import trace_action, trace_message
init_logger("warning")
logger = logging.getLogger("inspect_ai.bench")
samples, unique = int(sys.argv[1]), sys.argv[2] == "unique"

def sample(i):
    n = i if unique else i % 10
    with trace_action(logger, "Tool Call", "call_tool (run_commands): run_commands(n=%d)", n):
        with trace_action(logger, "Subprocess", "echo %d", n):
            pass
    with trace_action(logger, "Model", "generate (openai/test)"):
        with trace_action(logger, "Model", "generate (openai/test) %d", n):
            trace_message(logger, "HTTP", "POST http://127.0.0.1:1/v1/chat/completions %d", n)

for i in range(300):
    sample(i)
loops = []
for r in range(7):
    started = time.process_time()
    for i in range(samples):
        sample(1000 + r * samples + i)
    loops.append((time.process_time() - started) / samples * 1e6)
print(sorted(loops)[3])
"""


def _per_sample_us(command: list[str], env: dict[str, str]) -> float:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-500:])
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None, quick: bool = False) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3 if quick else 7)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args([] if argv is None else argv)
    python = plain_python(VENV, extra=("inspect_ai", "openai"))
    bin_dir = python.parent
    found = versions(python, "inspect_ai", "wrapt", "inspect-autotrace")
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(base_env(Path(tmp)), XDG_DATA_HOME=tmp)
        program = Path(tmp) / "native_loop.py"
        program.write_text(_PROGRAM)
        print(
            f"inspect's trace_action, per native action ({ACTIONS_PER_SAMPLE} and one message"
            " per sample), CPU time, best of "
            f"{args.repeats}; plain venv: " + ", ".join(f"{k} {v}" for k, v in found.items())
        )
        for workload in ("repeated", "unique"):
            plain: list[float] = []
            traced: list[float] = []
            for _ in range(args.repeats):
                command = [str(python), str(program), str(args.samples), workload]
                plain.append(_per_sample_us(command, env))
                traced.append(
                    _per_sample_us([str(bin_dir / "inspect-trace"), "run", "--", *command], env)
                )
            base = min(plain) / ACTIONS_PER_SAMPLE
            ours = min(traced) / ACTIONS_PER_SAMPLE
            spread = statistics.median(traced) / statistics.median(plain)
            print(
                f"  details {workload:8}  inspect alone {base:6.1f} us   + autotrace {ours:6.1f} us"
                f"   added {ours - base:+6.1f} us ({ours / base:.2f}x; medians {spread:.2f}x)"
            )
            rows.append(
                {
                    "name": f"inspect's native action, details {workload}, plain venv",
                    "ours": f"{ours:.1f} us",
                    "baseline": f"{base:.1f} us",
                    "ratio": f"{ours / base:.2f}",
                    "target": "(reported)",
                    "ok": None,
                }
            )
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
