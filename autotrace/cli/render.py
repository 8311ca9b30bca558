"""Rendering for people: rich tables of running actions, runs and stack snapshots.

Every text that comes from a trace file reaches rich as a ``Text`` object, never as
markup, and through ``visible``: a record cannot drive the terminal (no escape
sequence, control character or bidi override reaches it raw). Numbers from a file
are shown through ``format_duration`` and ``clock``, which take any value.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from autotrace import config

if TYPE_CHECKING:
    from autotrace.read.run import RunTrace

INNERMOST = 3  # frames shown per action in tables

# What a terminal would act on rather than show: C0 controls but tab (newline only where
# a cell may span lines), DEL, C1 controls (U+009B is a CSI on its own), lone surrogates
# (unencodable), line/paragraph separators and the bidi controls that reorder what
# follows them ("Trojan Source").
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_HIDDEN = re.compile(f"[\n{_CONTROLS}]")
_HIDDEN_BUT_NEWLINE = re.compile(f"[{_CONTROLS}]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object, *, newlines: bool = False) -> str:
    """``value`` as text a terminal shows and never obeys: controls become ``\\x1b``,
    ``\\u202e`` ... (newlines kept only with ``newlines=True``, for multi-line cells)."""
    text = value if isinstance(value, str) else str(value)
    pattern = _HIDDEN_BUT_NEWLINE if newlines else _HIDDEN
    return pattern.sub(_escape_char, text) if pattern.search(text) else text


def record_text(value: object, style: str = "", *, newlines: bool = False) -> Any:
    """A rich ``Text`` of record text: literal (no markup) and ``visible``."""
    from rich.text import Text

    return Text(visible(value, newlines=newlines), style=style)


def clock(timestamp: object, fmt: str = "%H:%M:%S") -> str:
    """Epoch seconds as local time, or '?' when it is not a time (NaN, 1e300, text)."""
    try:
        return datetime.fromtimestamp(timestamp).strftime(fmt)  # type: ignore[arg-type]
    except (OverflowError, ValueError, OSError, TypeError):
        return "?"


def finite(value: Any) -> Any:
    """``value`` with every NaN and infinity replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_text(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that always gives valid JSON: NaN and infinities become null."""
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(finite(value), allow_nan=False, **kwargs)


def frames(stack: object) -> list[dict[str, Any]]:
    """The frame entries of a stack as read (a hostile record may hold anything there)."""
    return [e for e in stack if isinstance(e, dict)] if isinstance(stack, list) else []


def innermost(stack: list[dict[str, Any]], count: int = INNERMOST) -> list[str]:
    """The innermost frames as ``file:line in function``, innermost last."""
    return [
        visible(f"{_short(e.get('file', '?'))}:{e.get('line')} in {e.get('function')}")
        for e in frames(stack)[-count:]
    ]


def _short(path: object) -> str:
    if not isinstance(path, str):
        return str(path)
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


LONGEST = 100 * 365 * 86400.0  # longer is not a duration an action had


def format_duration(seconds: float) -> str:
    """A short human duration: 0.25s, 42.0s, 3m 07s, 2h 05m, 3d 04h ('?' for no number)."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "?"
    if seconds >= LONGEST:
        return ">100y"
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
    where = str(row.get("where") or "")
    shown = frames(row.get("stack"))[-INNERMOST:]
    if where and not any(where == _full(e) for e in shown):
        text.append(visible(_short_where(where)), style="bold")
    for entry in reversed(shown):
        if text:
            text.append("\n")
        blamed = where == _full(entry)
        text.append(
            visible(
                f"{_short(entry.get('file', '?'))}:{entry.get('line')} in {entry.get('function')}"
            ),
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
            return record_text(f"{action} ({parent_id})", "dim")
    return record_text(parent_id, "dim")


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
            record_text(row.get("action"), style),
            record_text(row.get("detail") or "", newlines=True),
            Text(age, style=style),
            parent_cell(row.get("parent_id"), rows),
            where_cell(row),
        ]
        if show_pid:
            cells.insert(0, record_text(row.get("pid")))
        table.add_row(*cells)
    return table


def command_line(argv: object) -> str:
    """A process's argv as one shell line ('' when there is none)."""
    if not isinstance(argv, list) or not argv:
        return ""
    return shlex.join(str(a) for a in argv)


def render_run(report: dict[str, Any], threshold: float) -> list[Any]:
    """The whole run for people: one titled table per process, culprit's process first."""
    from rich.text import Text

    out: list[Any] = [record_text(f"run {report['run_id']}", "bold")]
    for proc in report["processes"]:
        state = proc["state"]
        style = {"running": "green", "dead": "bold red", "exited": "dim"}.get(state, "")
        title = Text()
        title.append(
            visible(f"pid {proc['pid'] if proc['pid'] is not None else '?'}"), style="bold"
        )
        if proc.get("parent_pid"):
            title.append(visible(f" (parent {proc['parent_pid']})"), style="dim")
        title.append(f" {state}", style=style)
        if state == "dead":
            title.append(" without exit records: open actions abandoned", style=style)
        command = command_line(proc["argv"])
        title.append("\n  " + visible(command) if command else "")
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
    return config.stuck_after()


def print_run(run: RunTrace, *, as_json: bool, threshold: float | None = None) -> None:
    """Print the whole-run anomalies (``anomalies --run``)."""
    from autotrace.read.run import run_report

    report = run_report(run)
    if as_json:
        click.echo(json_text(report, indent=2, default=str))
        return
    from autotrace.cli.console import make_console

    console = make_console()
    for part in render_run(report, stuck_threshold(threshold)):
        console.print(part)


def _seconds(value: object) -> float:
    try:
        return float(value or 0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def render_snapshot(snap: dict[str, Any]) -> list[Any]:
    """A snapshot for people: open actions with their stacks, then every thread."""
    from rich.text import Text

    out: list[Any] = []
    head = record_text(f"pid {snap.get('pid')}", "bold")
    if snap.get("trace_file"):
        head.append(visible(f"  written to {snap['trace_file']}"), style="dim")
    out.append(head)
    acts = frames(snap.get("actions"))
    out.append(Text(f"\n{len(acts)} open action(s)", style="bold"))
    for entry in acts:
        title = record_text(
            f"\n{visible(entry.get('stuck_action'))}: {visible(entry.get('detail'), newlines=True)}",
            "bold yellow",
            newlines=True,
        )
        title.append(
            visible(
                f"  open {format_duration(_seconds(entry.get('age')))}"
                f"  thread {entry.get('thread')}"
                + (f"  task {entry.get('task')}" if entry.get("task") else "")
                + f"  [{entry.get('trace_id')}]"
            ),
            style="dim",
        )
        out.append(title)
        out.append(_stack_text(entry.get("stack"), str(entry.get("where") or "")))
    threads = frames(snap.get("threads"))
    out.append(Text(f"\n{len(threads)} thread(s)", style="bold"))
    for thread in threads:
        out.append(Text("\nthread " + visible(thread.get("name")), style="bold"))
        out.append(_stack_text(thread.get("stack"), str(thread.get("where") or "")))
    return out


def _stack_text(stack: object, where: str) -> Any:
    from rich.text import Text

    text = Text()
    entries = frames(stack)
    for entry in entries:
        line = f"  {_short(entry.get('file', '?'))}:{entry.get('line')} in {entry.get('function')}"
        blamed = where and where == _full(entry)
        if text:
            text.append("\n")
        text.append(
            visible(line) + ("   <- waits here" if blamed else ""), style="bold" if blamed else ""
        )
        if entry.get("code"):
            text.append("\n      " + visible(entry["code"]), style="dim")
    if not entries:
        text.append("  (no Python frames)", style="dim")
    return text
