"""Rendering for people: rich tables of running actions, runs and stack snapshots.

Every text that comes from a trace file reaches rich as a ``Text`` object, never as markup.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import click

from autotrace import config

if TYPE_CHECKING:
    from autotrace.read.run import RunTrace

INNERMOST = 3  # frames shown per action in tables


def innermost(stack: list[dict[str, Any]], count: int = INNERMOST) -> list[str]:
    """The innermost frames as ``file:line in function``, innermost last."""
    return [
        f"{_short(e.get('file', '?'))}:{e.get('line')} in {e.get('function')}"
        for e in stack[-count:]
    ]


def _short(path: str) -> str:
    cwd = os.getcwd() + os.sep
    if path.startswith(cwd):
        return path[len(cwd) :]
    marker = "/site-packages/"
    if marker in path:
        return path.split(marker, 1)[1]
    stdlib = _stdlib_dir()
    if path.startswith(stdlib):
        return path[len(stdlib) :]
    return path


def _stdlib_dir() -> str:
    import sysconfig

    return os.path.join(sysconfig.get_paths()["stdlib"], "")


def format_duration(seconds: float) -> str:
    """A short human duration: 0.25s, 42.0s, 3m 07s, 2h 05m, 3d 04h."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def where_cell(row: dict[str, Any]) -> Any:
    """The innermost frames, innermost first, the blamed line in bold (plain Text: escaped)."""
    from rich.text import Text

    text = Text()
    where = row.get("where") or ""
    stack = row.get("stack") or []
    shown = stack[-INNERMOST:]
    caller = row.get("caller_where") or ""
    if caller:  # the work was handed to another thread: the program's line that waits first
        text.append(f"called from {_short_where(caller)}", style="bold")
    if where and not any(where == _full(e) for e in shown):
        text.append(("\n" if text else "") + _short_where(where), style="bold")
    for entry in reversed(shown):
        if text:
            text.append("\n")
        blamed = where == _full(entry)
        text.append(
            f"{_short(entry.get('file', '?'))}:{entry.get('line')} in {entry.get('function')}",
            style="bold" if blamed else "dim",
        )
    if not text:
        text.append("(no stack yet)", style="dim")
    return text


def _full(entry: dict[str, Any]) -> str:
    return f"{entry.get('file')}:{entry.get('line')} in {entry.get('function')}"


def parent_cell(parent_id: str | None, rows: Iterable[Any]) -> Any:
    """The parent action's name when it is open too, else its trace_id (or '-')."""
    from rich.text import Text

    if not parent_id:
        return Text("-", style="dim")
    for row in rows:
        trace_id = row["trace_id"] if isinstance(row, dict) else row.trace_id
        if trace_id == parent_id:
            action = row["action"] if isinstance(row, dict) else row.action
            return Text(f"{action} ({parent_id})", style="dim")
    return Text(parent_id, style="dim")


def _short_where(where: str) -> str:
    path, sep, rest = where.partition(":")
    return _short(path) + sep + rest if sep else where


def action_table(rows: list[dict[str, Any]], threshold: float, *, show_pid: bool = True) -> Any:
    """Running actions as a rich Table: stuck ones (past ``threshold``) highlighted."""
    from rich.table import Table
    from rich.text import Text

    table = Table(expand=True, show_lines=True)
    if show_pid:
        table.add_column("pid", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=2)
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("parent", no_wrap=True)
    table.add_column("where it waits", overflow="fold", ratio=3)
    for row in rows:
        stuck = row["duration"] >= threshold
        style = "red" if row.get("abandoned") else ("bold yellow" if stuck else "")
        age = format_duration(row["duration"]) + (" abandoned" if row.get("abandoned") else "")
        cells = [
            Text(str(row.get("action")), style=style),
            Text(str(row.get("detail") or "")),
            Text(age, style=style),
            parent_cell(row.get("parent_id"), rows),
            where_cell(row),
        ]
        if show_pid:
            cells.insert(0, Text(str(row.get("pid"))))
        table.add_row(*cells)
    return table


def render_run(report: dict[str, Any], threshold: float) -> list[Any]:
    """The whole run for people: one titled table per process, culprit's process first."""
    from rich.text import Text

    out: list[Any] = [Text(f"run {report['run_id']}", style="bold")]
    for proc in report["processes"]:
        state = proc["state"]
        style = {"running": "green", "dead": "bold red", "exited": "dim"}.get(state, "")
        title = Text()
        title.append(f"pid {proc['pid']}", style="bold")
        if proc.get("parent_pid"):
            title.append(f" (parent {proc['parent_pid']})", style="dim")
        title.append(f" {state}", style=style)
        if state == "dead":
            title.append(" without exit records: open actions abandoned", style=style)
        title.append("\n  " + shlex.join(proc["argv"]) if proc["argv"] else "")
        counts = [f"{n} {k}" for k, n in proc["counts"].items() if n]
        if counts:
            title.append("\n  " + ", ".join(counts), style="dim")
        out.append(title)
        if proc["running"]:
            out.append(action_table(proc["running"], threshold, show_pid=False))
        else:
            out.append(Text("  no running actions", style="dim"))
    return out


def stuck_threshold(value: float | None = None) -> float:
    """The stuck threshold for views: the option, else AUTOTRACE_STUCK_AFTER, else the default."""
    if value is not None:
        return value
    return config.env_float(config.ENV_STUCK_AFTER, config.DEFAULT_STUCK_AFTER)


def print_run(run: RunTrace, *, as_json: bool, threshold: float | None = None) -> None:
    """Print the whole-run anomalies (``anomalies --run``)."""
    from autotrace.read.run import run_report

    report = run_report(run)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    from autotrace.cli.console import make_console

    console = make_console()
    for part in render_run(report, stuck_threshold(threshold)):
        console.print(part)


def render_snapshot(snap: dict[str, Any]) -> list[Any]:
    """A snapshot for people: open actions with their stacks, then every thread."""
    from rich.text import Text

    out: list[Any] = []
    head = Text(f"pid {snap.get('pid')}", style="bold")
    if snap.get("trace_file"):
        head.append(f"  written to {snap['trace_file']}", style="dim")
    out.append(head)
    acts = snap.get("actions") or []
    out.append(Text(f"\n{len(acts)} open action(s)", style="bold"))
    for entry in acts:
        title = Text(f"\n{entry.get('stuck_action')}: {entry.get('detail')}", style="bold yellow")
        title.append(
            f"  open {format_duration(float(entry.get('age') or 0))}"
            f"  thread {entry.get('thread')}"
            + (f"  task {entry.get('task')}" if entry.get("task") else "")
            + f"  [{entry.get('trace_id')}]",
            style="dim",
        )
        out.append(title)
        if entry.get("caller_where"):
            out.append(Text(f"  waited for by thread {entry.get('caller_thread')}:", style="dim"))
            out.append(_stack_text(entry.get("caller_stack") or [], entry["caller_where"]))
            out.append(Text("  which runs here:", style="dim"))
        out.append(_stack_text(entry.get("stack") or [], entry.get("where") or ""))
    threads = snap.get("threads") or []
    out.append(Text(f"\n{len(threads)} thread(s)", style="bold"))
    for thread in threads:
        out.append(Text(f"\nthread {thread.get('name')}", style="bold"))
        out.append(_stack_text(thread.get("stack") or [], thread.get("where") or ""))
    return out


def _stack_text(stack: list[dict[str, Any]], where: str) -> Any:
    from rich.text import Text

    text = Text()
    for entry in stack:
        line = f"  {_short(entry.get('file', '?'))}:{entry.get('line')} in {entry.get('function')}"
        blamed = (
            where and where == f"{entry.get('file')}:{entry.get('line')} in {entry.get('function')}"
        )
        if text:
            text.append("\n")
        text.append(line + ("   <- waits here" if blamed else ""), style="bold" if blamed else "")
        if entry.get("code"):
            text.append(f"\n      {entry['code']}", style="dim")
    if not stack:
        text.append("  (no Python frames)", style="dim")
    return text
