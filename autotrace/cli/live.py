"""`inspect-trace anomalies --watch`: running actions of a run, refreshed as the files grow.

Each refresh reads only the bytes appended since the last one (``autotrace.read.run.RunTrace``)
and picks up the files of child processes that joined the run. Rows are ranked
culprit first (leaf first, as every view ranks them); an action past the stuck
threshold is highlighted, an abandoned one (its process died) is red. Ctrl-C ends the view cleanly.
"""

from __future__ import annotations

import time
from typing import Any

from autotrace.cli.render import action_table, clock, command_line, format_duration, visible
from autotrace.read.run import RunTrace, run_view


def render(run: RunTrace, threshold: float, now: float | None = None) -> Any:
    """One frame of the live view: the run's processes, then its running actions, culprit first."""
    from rich.console import Group
    from rich.text import Text

    now = time.time() if now is None else now
    view = run_view(run, now)
    rows = view.anomalies.running
    stuck = sum(1 for r in rows if r.duration >= threshold)
    head = Text()
    head.append(visible(f"run {run.run_id or '-'}"), style="bold")
    head.append(
        f"  {len(run.processes)} process(es), {len(rows)} running, {stuck} past "
        f"{format_duration(threshold)}  as of {clock(now)}"
        "  (Ctrl-C to quit)",
        style="dim",
    )
    parts: list[Any] = [head]
    for proc in sorted(view.processes, key=lambda p: run.processes[p.trace_file].started or 0.0):
        line = Text(f"  pid {proc.pid if proc.pid is not None else '?'} ")
        line.append(
            proc.state, style={"running": "green", "dead": "bold red"}.get(proc.state, "dim")
        )
        if proc.last_write:
            line.append(f"  last write {format_duration(max(0.0, now - proc.last_write))} ago")
        if proc.argv:
            line.append("  " + command_line(proc.argv), style="dim")
        parts.append(line)
    if rows:
        parts.append(action_table(rows, threshold=threshold))
    else:
        parts.append(Text("no running actions", style="dim"))
    return Group(*parts)


def watch(run: RunTrace, threshold: float, interval: float = 1.0) -> None:
    """Show ``run`` live until Ctrl-C, refreshing every ``interval`` seconds."""
    from rich.live import Live

    from autotrace.cli.console import make_console

    console = make_console()
    run.refresh()
    try:
        with Live(render(run, threshold), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                run.refresh()
                live.update(render(run, threshold), refresh=True)
    except KeyboardInterrupt:
        pass
