"""Run every benchmark and print the figures measured in this run, as ratios to baselines.

    python benchmarks/run.py            # full: anomalies on 100k and 1M records (~1-2 min)
    python benchmarks/run.py --quick    # 100k records only, fewer actions

The core benchmarks (benchmarks/bench_core.py: cost per traced action against inspect's
own trace_action; `inspect-trace anomalies` against `inspect trace anomalies`) run first;
then each other benchmarks/bench_*.py module's ``main()`` runs in a fresh interpreter,
so that no benchmark disturbs another's process state. A ``main`` that takes ``quick``
gets it; a ``main`` that returns rows ({name, ours, baseline, ratio, target, ok}) has
them in the summary.
"""

from __future__ import annotations

import argparse
import compileall
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS_MARKER = "@@benchmark-rows@@ "

# Imports one module, calls its main(), prints what it returns (rows) after a marker.
_DRIVER = f"""
import inspect, json, sys
sys.path.insert(0, {str(HERE)!r})
module = __import__(sys.argv[1])
quick = sys.argv[2] == "1"
kwargs = {{"quick": quick}} if "quick" in inspect.signature(module.main).parameters else {{}}
rows = module.main(**kwargs)
if isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
    print({ROWS_MARKER!r} + json.dumps(rows, default=str))
"""


def run_module(name: str, quick: bool) -> tuple[list[dict[str, object]], int, float]:
    """Run benchmarks/<name>.py's main() in a child; its output passes through."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, name, "1" if quick else "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE.parent,
    )
    rows: list[dict[str, object]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(ROWS_MARKER):
            rows = json.loads(line[len(ROWS_MARKER) :])
        else:
            print(f"  {line}", end="", flush=True)
    code = proc.wait()
    return rows, code, time.perf_counter() - started


def print_summary(rows: list[dict[str, object]], others: list[tuple[str, int, float]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Benchmark summary (measured in this run)", title_justify="left")
    for column, justify in (
        ("Benchmark", "left"),
        ("autotrace", "right"),
        ("baseline", "right"),
        ("ratio", "right"),
        ("target", "right"),
        ("", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        ok = row.get("ok")
        mark = "[green]met[/green]" if ok else "[red]MISSED[/red]" if ok is not None else ""
        table.add_row(
            str(row.get("name", "")),
            str(row.get("ours", "")),
            str(row.get("baseline", "")),
            str(row.get("ratio", "")),
            str(row.get("target", "")),
            mark,
        )
    for name, code, seconds in others:
        status = "[green]ran[/green]" if code == 0 else f"[red]exit {code}[/red]"
        table.add_row(f"{name}.py (see its output above)", "", "", "", f"{seconds:.0f} s", status)
    console = Console()
    console.width = max(console.width, 130)  # a readable table in pipes and CI logs too
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k records only, fewer actions")
    parser.add_argument(
        "--only", metavar="NAME", action="append", help="run only bench_NAME (repeatable)"
    )
    args = parser.parse_args()

    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    names.sort(key=lambda n: n != "bench_core")  # the core figures first
    if args.only:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in args.only}
        names = [n for n in names if n in wanted]

    # Measure autotrace as pip installs it, with bytecode: an editable install in an
    # environment with PYTHONDONTWRITEBYTECODE would compile its modules at every start.
    compileall.compile_dir(HERE.parent / "autotrace", quiet=1)
    compileall.compile_dir(HERE.parent / "patches", quiet=1)

    rows: list[dict[str, object]] = []
    others: list[tuple[str, int, float]] = []
    failed = False
    for name in names:
        print(f"== {name}", flush=True)
        module_rows, code, seconds = run_module(name, args.quick)
        rows.extend(module_rows)
        if not module_rows:
            others.append((name, code, seconds))
        failed |= code != 0
    print()
    print_summary(rows, others)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
