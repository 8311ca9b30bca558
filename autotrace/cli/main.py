"""The `inspect-trace` command line (click + rich).

`list`, `dump` and `anomalies` read trace files with autotrace.read.reader; `anomalies`
means what `inspect trace anomalies` means and its `--json` envelope has the same
shape (rows add `trace_id`, `pid`, `parent_id`). Every text that comes from a trace
file reaches rich as a `Text` object or through `escape`, never as markup.
"""

from __future__ import annotations

import gc
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from autotrace import config
from autotrace.cli.render import format_duration

F = TypeVar("F", bound=Callable[..., Any])


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  inspect-trace run -- inspect eval task.py --model openai/gpt-4o
  inspect-trace anomalies              # what is still running, and where it waits
  inspect-trace anomalies --run        # every process of the newest run
  inspect-trace anomalies --watch      # live view while the run goes on
  inspect-trace stacks PID             # stacks of a live traced process, now""",
)
@click.version_option(package_name="inspect-autotrace")
def main() -> None:
    """Find the action that keeps a Python program from finishing."""


def trace_dir_option(fn: F) -> F:
    """`--trace-dir`, shared by every verb that reads trace files."""
    return click.option(
        "--trace-dir",
        # No checks here: click's would print a usage error; the reader's are one line.
        type=click.Path(readable=False, path_type=Path),
        default=None,
        help="Directory of trace files [default: $AUTOTRACE_DIR, else inspect's trace directory].",
    )(fn)


def _directory(trace_dir: Path | None) -> Path:
    return trace_dir.expanduser() if trace_dir is not None else Path(config.trace_dir())


@contextmanager
def _read_errors() -> Iterator[None]:
    """Reading trouble becomes one line on stderr and exit 1, never a traceback."""
    from autotrace.read.reader import TraceReadError

    try:
        yield
    except TraceReadError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise click.ClickException(f"cannot read{where}: {exc.strerror or exc}") from None


def _resolve(file: str | None, trace_dir: Path | None) -> Path:
    from autotrace.read.reader import resolve_trace_file

    with _read_errors():
        return resolve_trace_file(file, _directory(trace_dir))


# -- list ---------------------------------------------------------------------------


@main.command("list", short_help="Trace files, newest first, with process and run.")
@click.option("--json", "as_json", is_flag=True, help="Output the listing as JSON.")
@trace_dir_option
def list_command(as_json: bool, trace_dir: Path | None) -> None:
    """List trace files, newest first, with their process and run."""
    from autotrace.read.reader import list_trace_files, read_header

    directory = _directory(trace_dir)
    with _read_errors():
        files = [read_header(info) for info in list_trace_files(directory)]
    if as_json:
        click.echo(json.dumps([f.as_json() for f in files], indent=2))
        return
    if not files:
        raise click.ClickException(f"no trace files in {directory}")

    from rich.table import Table
    from rich.text import Text

    now = time.time()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in (
        ("Modified", "left"),
        ("Age", "right"),
        ("Size", "right"),
        ("PID", "right"),
        ("Run", "left"),
        ("File", "left"),
        ("Command", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=name != "Command")  # type: ignore[arg-type]
    for f in files:
        table.add_row(
            datetime.fromtimestamp(f.mtime).strftime("%d-%b %H:%M:%S"),
            format_duration(now - f.mtime),
            format_size(f.size),
            str(f.pid) if f.pid is not None else "",
            Text(f.run_id or ""),
            Text(f.path.name),
            Text(_command(f.argv), overflow="ellipsis"),
        )
    _console().print(Text(f"Trace directory: {directory}", style="dim"))
    _console().print(table)


def _command(argv: list[str] | None) -> str:
    return shlex.join(argv) if argv else ""


# -- dump ---------------------------------------------------------------------------


@main.command("dump", short_help="A trace file as a JSON array of records.")
@click.argument("trace_file", required=False)
@click.option(
    "--filter",
    "filter_",
    metavar="TEXT",
    help="Only records whose message contains TEXT (case-insensitive).",
)
@trace_dir_option
def dump_command(trace_file: str | None, filter_: str | None, trace_dir: Path | None) -> None:
    """Print a trace file as a JSON array of records (default: the newest file)."""
    from autotrace.read.reader import ReadProblems, iter_records

    path = _resolve(trace_file, trace_dir)
    problems = ReadProblems()
    out = sys.stdout
    first = True
    with _large_read():
        try:
            with _read_errors():
                out.write("[")
                for record in iter_records(path, filter_, problems):
                    out.write("\n  " if first else ",\n  ")
                    out.write(json.dumps(record, indent=2).replace("\n", "\n  "))
                    first = False
                out.write("]\n" if first else "\n]\n")
                out.flush()
        except BrokenPipeError:
            _quiet_broken_pipe()
            return
        _report(problems.summary(path.name))


# True when `inspect-trace` runs as its own process (the console script, `python -m`),
# not inside another program (tests call ``main`` in-process).
_own_process = False


def entry() -> None:
    """The console script: ``main`` in a process of its own."""
    global _own_process
    _own_process = True
    main()


@contextmanager
def _large_read() -> Iterator[None]:
    """Around a verb that may read a large file: no cyclic garbage collection (the
    reader makes no cycles; a collection walks every record held), and in our own
    process a quick exit afterwards instead of freeing every record one by one."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
    if _own_process:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            pass
        os._exit(0)


def _quiet_broken_pipe() -> None:
    # The reader of our output went away (`| head`): stop quietly, as cat does.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _report(summary: str | None) -> None:
    if summary:
        click.echo(summary, err=True)


# -- anomalies ----------------------------------------------------------------------


@main.command("anomalies", short_help="Actions still running or cancelled (--all: also failed).")
@click.argument("trace_file", required=False)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Also show errors and timeouts (by default only running and cancelled actions; "
    "--json always has all four).",
)
@click.option(
    "--filter",
    "filter_",
    metavar="TEXT",
    help="Only records whose message contains TEXT (case-insensitive), applied before "
    "actions are paired.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Output JSON: a {trace_file, as_of, running, cancelled, errors, timeouts} envelope.",
)
@click.option(
    "--run",
    "run_id",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[RUN_ID]",
    help="Read every process of a run together, grouped per process [default run: that of "
    "TRACE_FILE, else of the newest file]. --json adds run_id, trace_files and processes.",
)
@click.option("--watch", is_flag=True, help="Refresh live as the run's files grow (Ctrl-C quits).")
@click.option(
    "--stuck-after",
    type=float,
    default=None,
    metavar="SECONDS",
    help="With --run/--watch: highlight running actions older than this "
    "[default: $AUTOTRACE_STUCK_AFTER, else 60].",
)
@trace_dir_option
def anomalies_command(
    trace_file: str | None,
    show_all: bool,
    filter_: str | None,
    as_json: bool,
    run_id: str | None,
    watch: bool,
    stuck_after: float | None,
    trace_dir: Path | None,
) -> None:
    """Show actions that never ended or were cancelled (default: the newest file).

    Running actions come culprit first, with the line each waits on when the
    watchdog has reported it stuck.
    """
    from autotrace.read.reader import scan_file

    if run_id is not None or watch:
        from autotrace.cli.render import print_run, stuck_threshold
        from autotrace.read.run import run_of

        with _read_errors():
            path = _resolve(trace_file, trace_dir) if trace_file or not run_id else None
            # A file given without --trace-dir: its run is in the file's own directory.
            directory = trace_dir if trace_dir is not None or path is None else path.parent
            run = run_of(_directory(directory), run_id or None, path)
            if not watch:
                print_run(run, as_json=as_json, threshold=stuck_after)
                return
            if as_json:
                raise click.ClickException("--watch shows a live table: it does not take --json")
        from autotrace.cli import live

        live.watch(run, stuck_threshold(stuck_after))
        return
    path = _resolve(trace_file, trace_dir)
    with _large_read():
        with _read_errors():
            scanner = scan_file(path, filter_)
        anomalies = scanner.anomalies()
        as_of = time.time()
        try:
            if as_json:
                _write_envelope(sys.stdout, path, as_of, anomalies)
            else:
                _print_anomalies(path, anomalies, show_all, as_of, scanner.process_records())
        except BrokenPipeError:
            _quiet_broken_pipe()
            return
        scanner.report_problems()


def _write_envelope(out: Any, path: Path, as_of: float, anomalies: Any) -> None:
    """The `--json` envelope, one row per line, written bucket by bucket (no big string)."""
    out.write(f'{{\n  "trace_file": {json.dumps(path.as_posix())},\n  "as_of": {as_of!r}')
    dumps = _row_encoder()
    for name, rows in (
        ("running", anomalies.running),
        ("cancelled", anomalies.cancelled),
        ("errors", anomalies.errors),
        ("timeouts", anomalies.timeouts),
    ):
        out.write(f',\n  "{name}": [')
        for n, row in enumerate(rows):
            out.write(("\n    " if n == 0 else ",\n    ") + dumps(row.row(as_of)))
        out.write("\n  ]" if rows else "]")
    out.write("\n}\n")
    out.flush()


def _row_encoder() -> Callable[[Any], str]:
    """``json.dumps`` for one row without its per-call set-up: the C encoder, made once
    (CPython's; checked against ``json.dumps`` on a sample, else ``json.dumps`` itself)."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    if make is None:
        return json.dumps
    try:
        c_encode = make(
            None,  # no circularity markers: rows are trees
            json.JSONEncoder().default,
            encoder.encode_basestring_ascii,
            None,
            ": ",
            ", ",
            False,
            False,
            True,
        )

        def dumps(row: Any) -> str:
            return "".join(c_encode(row, 0))

        sample = {"a": "é\n", "b": [1.5, None, True], "c": {"d": float("inf")}, "e": 7}
        if dumps(sample) == json.dumps(sample):
            return dumps
    except Exception:
        pass
    return json.dumps


def _print_anomalies(
    path: Path,
    anomalies: Any,
    show_all: bool,
    as_of: float,
    processes: list[dict[str, Any]],
) -> None:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    console = _console()
    console.print(f"[bold]TRACE:[/bold] {escape(str(path))}", highlight=False)
    if processes:
        first = processes[0]
        argv = first.get("argv")
        command = _command([str(a) for a in argv]) if isinstance(argv, list) else ""
        console.print(
            Text(f"pid {first.get('pid')}  run {first.get('run_id')}  {command}", style="dim"),
            overflow="ellipsis",
            no_wrap=True,
        )
    buckets = [("Running", anomalies.running), ("Cancelled", anomalies.cancelled)]
    if show_all:
        buckets += [("Errors", anomalies.errors), ("Timeouts", anomalies.timeouts)]
    if not any(rows for _, rows in buckets):
        if show_all:
            console.print("\nNo anomalies found in trace log.")
        else:
            console.print(
                "\nNo running or cancelled actions found in trace log "
                "(pass --all to see errors and timeouts)."
            )
        return
    for label, rows in buckets:
        if not rows:
            continue
        age_label = "Running for" if label == "Running" else "Duration"
        table = Table(
            title=f"{label} ({len(rows)})",
            title_justify="left",
            title_style="bold",
            box=None,
            pad_edge=False,
            header_style="bold",
        )
        table.add_column(age_label, justify="right", no_wrap=True)
        table.add_column("Action", no_wrap=True)
        table.add_column("Detail", overflow="fold")
        table.add_column("PID", justify="right", no_wrap=True)
        table.add_column("Started", no_wrap=True)
        if label == "Running":
            from autotrace.cli.render import parent_cell, where_cell

            table.add_column("Parent", no_wrap=True)
            table.add_column("Where it waits", overflow="fold")
        for row in rows:
            extra = []
            if label == "Running":
                extra = [parent_cell(row.parent_id, rows), where_cell(row.row(as_of))]
            detail = Text(row.detail or row.message)
            if row.error is not None:
                detail.append(f"  {row.error_type or 'error'}: {row.error}", style="red")
            table.add_row(
                format_duration(row.age(as_of)),
                Text(row.action, style="cyan"),
                detail,
                str(row.pid) if row.pid is not None else "",
                datetime.fromtimestamp(row.start_time).strftime("%H:%M:%S")
                if row.start_time
                else "",
                *extra,
            )
        console.print()
        console.print(table)


# -- formatting ---------------------------------------------------------------------


def _console() -> Any:
    from autotrace.cli.console import make_console

    return make_console()


def format_size(size: int) -> str:
    """Bytes as B, KB, MB or GB."""
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _add_commands() -> None:
    # The verbs that live in modules of their own.
    from autotrace.cli.run import patches_command, run_command
    from autotrace.cli.stacks import stacks_command

    for command in (run_command, patches_command, stacks_command):
        main.add_command(command)


_add_commands()

if __name__ == "__main__":
    main()
