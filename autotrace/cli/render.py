"""Rendering for people: rich tables of action rows, runs and stack snapshots.

Everything renders the one row model (``autotrace.read.model.ActionRow``); ``action_table``
is the one table of actions (`anomalies`, `anomalies --run`, `--watch`). Every text that
comes from a trace file reaches rich as a ``Text`` object, never as markup, and through
``visible``: a record cannot drive the terminal (no escape sequence, control character or
bidi override reaches it raw). Numbers from a file are shown through ``format_duration``
and ``clock``, which take any value; JSON goes out through ``json_text`` (never NaN).
"""

from __future__ import annotations

import json
import math
import os
import shlex
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from autotrace import config
from autotrace.cli.console import visible as visible  # one terminal-safe form of text
from autotrace.read.model import ActionRow, Frame, blamed_index, frames_of, snapshot_rows
from autotrace.read.run import RunTrace, RunView, run_view

INNERMOST = 3  # frames shown per action in tables


def record_text(value: object, style: str = "", *, newlines: bool = False) -> Any:
    """A rich ``Text`` of record text: literal (no markup) and ``visible``."""
    from rich.text import Text

    return Text(visible(value, newlines=newlines), style=style)


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


def frame_text(frame: Frame) -> str:
    """``file:line in function``, the file shortened (cwd, site-packages, stdlib), visible."""
    return visible(f"{_short(frame.file)}:{frame.line} in {frame.function}")


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


def clock(t: object, fmt: str = "%H:%M:%S") -> str:
    """Local time (of day, by default) of an epoch time: "" when there is none, "?" when
    it is not a time (NaN, 1e300, text)."""
    if t is None or t == 0:
        return ""
    try:
        return datetime.fromtimestamp(t).strftime(fmt)  # type: ignore[arg-type]
    except (ValueError, OverflowError, OSError, TypeError):
        return "?"


def command_line(argv: object) -> str:
    """A process's argv as one shell line ('' when there is none), visible."""
    if not isinstance(argv, (list, tuple)) or not argv:
        return ""
    return visible(shlex.join(str(a) for a in argv))


def where_cell(row: ActionRow) -> Any:
    """The innermost frames, innermost first, the blamed one in bold (plain Text: escaped)."""
    from rich.text import Text

    text = Text()
    frames = row.frames
    first = max(0, len(frames) - INNERMOST)
    if row.caller_where:  # the work was handed to another thread: the line that waits first
        text.append(f"called from {visible(_short_where(row.caller_where))}", style="bold")
    if row.where and (row.blamed is None or row.blamed < first):
        text.append(("\n" if text else "") + visible(_short_where(row.where)), style="bold")
    for i in range(len(frames) - 1, first - 1, -1):
        if text:
            text.append("\n")
        text.append(frame_text(frames[i]), style="bold" if i == row.blamed else "dim")
    if not text:
        text.append("(no stack yet)", style="dim")
    return text


def chain_cell(row: ActionRow, names: dict[str, str]) -> Any:
    """The running ancestors, outermost first (``Run Task > Tool Call``), or '-'."""
    from rich.text import Text

    if not row.chain:
        return Text("-", style="dim")
    return record_text(" > ".join(names.get(tid, tid) for tid in row.chain), "dim")


def _short_where(where: str) -> str:
    path, sep, rest = where.partition(":")
    return _short(path) + sep + rest if sep else where


def action_table(
    rows: Sequence[ActionRow],
    *,
    title: str | None = None,
    threshold: float | None = None,
    show_pid: bool = True,
    context: Sequence[ActionRow] = (),
) -> Any:
    """Action rows as one rich Table (every view's). Running rows get the chain they run
    in and where they wait; stuck ones (past ``threshold``) are highlighted, abandoned
    ones red. ``context``: more rows whose names the chains may use."""
    from rich.table import Table
    from rich.text import Text

    running = any(r.outcome == "running" for r in rows)
    names = {r.trace_id: r.action for r in (*context, *rows)}
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=None,
        pad_edge=False,
        header_style="bold",
        expand=False,
    )
    table.add_column("Running for" if running else "Duration", justify="right", no_wrap=True)
    table.add_column("Action", no_wrap=True)
    table.add_column("Detail", overflow="fold", ratio=2)
    if show_pid:
        table.add_column("PID", justify="right", no_wrap=True)
    table.add_column("Started", no_wrap=True)
    if running:
        table.add_column("Within", overflow="fold")
        table.add_column("Where it waits", overflow="fold", ratio=3)
    for row in rows:
        stuck = threshold is not None and row.outcome == "running" and row.duration >= threshold
        style = "red" if row.abandoned else ("bold yellow" if stuck else "")
        age = Text(format_duration(row.duration), style=style)
        if row.abandoned:
            age.append(" abandoned", style=style)
        detail = record_text(row.detail, newlines=True)
        if row.error is not None:
            detail.append(
                visible(f"  {row.error_type or 'error'}: {row.error}", newlines=True), style="red"
            )
        cells: list[Any] = [
            age,
            record_text(row.action, style or ("cyan" if row.leaf else "dim cyan")),
            detail,
        ]
        if show_pid:
            cells.append(str(row.pid) if row.pid is not None else "")
        cells.append(clock(row.start))
        if running:
            cells += [chain_cell(row, names), where_cell(row)]
        table.add_row(*cells)
    return table


def render_run(view: RunView, threshold: float) -> list[Any]:
    """The whole run for people: one titled table per process, the culprit's process first."""
    from rich.text import Text

    out: list[Any] = [record_text(f"run {view.run_id or '-'}", "bold")]
    everything = view.anomalies.running
    for proc in view.processes:
        state = proc.state
        style = {"running": "green", "dead": "bold red", "exited": "dim"}.get(state, "")
        title = Text()
        title.append(f"pid {proc.pid if proc.pid is not None else '?'}", style="bold")
        if proc.parent_pid:
            title.append(f" (parent {proc.parent_pid})", style="dim")
        title.append(f" {state}", style=style)
        if state == "dead":
            title.append(" without exit records: open actions abandoned", style=style)
        command = command_line(proc.argv)
        title.append("\n  " + command if command else "")
        counts = [f"{n} {k}" for k, n in proc.counts.items() if n]
        if counts:
            title.append("\n  " + ", ".join(counts), style="dim")
        out.append(title)
        if proc.running:
            out.append(
                action_table(proc.running, threshold=threshold, show_pid=False, context=everything)
            )
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
    view = run_view(run)
    if as_json:
        click.echo(json_text(view.as_json(), indent=2))
        return
    from autotrace.cli.console import make_console

    console = make_console()
    for part in render_run(view, stuck_threshold(threshold)):
        console.print(part)


def render_snapshot(snap: dict[str, Any]) -> list[Any]:
    """A snapshot for people: open actions with their stacks, then every thread."""
    from rich.text import Text

    out: list[Any] = []
    head = record_text(f"pid {snap.get('pid')}", "bold")
    if snap.get("trace_file"):
        head.append(visible(f"  written to {snap['trace_file']}"), style="dim")
    out.append(head)
    rows = snapshot_rows(snap)
    names = {r.trace_id: r.action for r in rows}
    out.append(Text(f"\n{len(rows)} open action(s)", style="bold"))
    for row in rows:
        title = Text("\n")
        title.append(
            visible(row.action) + ": " + visible(row.detail, newlines=True), style="bold yellow"
        )
        title.append(
            visible(
                f"  open {format_duration(row.duration)}"
                f"  thread {row.thread}"
                + (f"  task {row.task}" if row.task else "")
                + f"  [{row.trace_id}]"
            ),
            style="dim",
        )
        if row.chain:
            title.append(
                "\n  within " + visible(" > ".join(names.get(t, t) for t in row.chain)),
                style="dim",
            )
        out.append(title)
        if row.caller_where:
            out.append(record_text(f"  waited for by thread {row.caller_thread}:", "dim"))
            caller = row.caller_frames
            out.append(_stack_text(caller, blamed_index(caller, row.caller_where)))
            out.append(Text("  which runs here:", style="dim"))
        out.append(_stack_text(row.frames, row.blamed))
    threads = snap.get("threads")
    threads = [t for t in threads if isinstance(t, dict)] if isinstance(threads, list) else []
    out.append(Text(f"\n{len(threads)} thread(s)", style="bold"))
    for thread in threads:
        frames = frames_of(thread.get("stack"))
        where = str(thread.get("where") or "")
        out.append(Text("\nthread " + visible(thread.get("name")), style="bold"))
        out.append(_stack_text(frames, blamed_index(frames, where)))
    return out


def _stack_text(frames: Sequence[Frame], blamed: int | None) -> Any:
    from rich.text import Text

    text = Text()
    for i, frame in enumerate(frames):
        if text:
            text.append("\n")
        here = i == blamed
        text.append(
            "  " + frame_text(frame) + ("   <- waits here" if here else ""),
            style="bold" if here else "",
        )
        if frame.code:
            text.append("\n      " + visible(frame.code), style="dim")
    if not frames:
        text.append("  (no Python frames)", style="dim")
    return text
