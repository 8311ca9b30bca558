"""The `inspect-trace` command line (click + rich).

`list`, `dump` and `anomalies` read trace files with autotrace.read.reader; `anomalies`
means what `inspect trace anomalies` means and its `--json` envelope has the same
shape (rows add `trace_id`, `pid`, `parent_id`). Every text that comes from a trace
file reaches rich as a `Text` object or through `escape`, never as markup, and through
`render.visible` (no control character reaches the terminal raw); every `--json` output
is strict JSON (NaN and infinities become null).

Exit codes: 0 done (also when the reader of our output went away: `| head`), 1 one
`Error:` line (the file cannot be read, the process cannot be asked), 2 a usage error
(click's form); `run` passes the command's own code through (126/127 when it cannot
be started).
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
from pathlib import Path
from typing import Any, TypeVar

import click

from autotrace import config
from autotrace.cli import options
from autotrace.cli.render import (
    clock,
    command_line,
    format_duration,
    json_text,
    record_text,
    visible,
)

F = TypeVar("F", bound=Callable[..., Any])


class _Verbs(click.Group):
    """The group of verbs: whatever a verb lets escape ends as one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        _tolerant_streams()
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            _quiet_broken_pipe()
            ctx.exit(0)
        except Exception as exc:  # a bug of ours, or an input we did not foresee
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {visible(exc)[:300]}"
            ) from None


def _tolerant_streams() -> None:
    """Text our streams cannot encode (LANG=C, PYTHONIOENCODING=ascii) is written as
    backslash escapes instead of ending the verb with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


@click.group(
    cls=_Verbs,
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
        # Only '' and NUL are refused here (usage errors); the reader's checks are one line.
        type=options.TRACE_DIR,
        default=None,
        help="Directory of trace files [default: $AUTOTRACE_DIR, else inspect's trace directory].",
    )(fn)


def _directory(trace_dir: str | Path | None) -> Path:
    return Path(trace_dir).expanduser() if trace_dir is not None else config.trace_dir()


@contextmanager
def _read_errors() -> Iterator[None]:
    """Reading trouble becomes one line on stderr and exit 1, never a traceback."""
    from autotrace.read.reader import TraceReadError

    try:
        yield
    except (TraceReadError, options.NotRegularFile) as exc:
        raise click.ClickException(visible(exc)) from None
    except BrokenPipeError:  # writing, not reading: the verb ends quietly
        raise
    except OSError as exc:
        where = f" {visible(exc.filename)}" if exc.filename else ""
        reason = exc.strerror or str(exc)
        reason = reason[:1].lower() + reason[1:]  # as the reader words it: "permission denied"
        raise click.ClickException(f"cannot read{where}: {visible(reason)}") from None


def _resolve(file: str | None, trace_dir: str | None) -> Path:
    """The file a verb reads: FILE, else the newest in the trace directory; refused
    (one line, exit 1) when it is not a regular file."""
    from autotrace.read.reader import resolve_trace_file

    with _read_errors():
        path = resolve_trace_file(file, _directory(trace_dir))
        options.check_regular_file(path)
        return path


# -- list ---------------------------------------------------------------------------


@main.command("list", short_help="Trace files, newest first, with process and run.")
@click.option("--json", "as_json", is_flag=True, help="Output the listing as JSON.")
@trace_dir_option
def list_command(as_json: bool, trace_dir: str | None) -> None:
    """List trace files, newest first, with their process and run."""
    from autotrace.read.reader import list_trace_files, read_header

    directory = _directory(trace_dir)
    with _read_errors():
        files = [read_header(info) for info in list_trace_files(directory)]
    if as_json:
        click.echo(json_text([f.as_json() for f in files], indent=2))
        return
    if not files:
        raise click.ClickException(visible(f"no trace files in {directory}"))

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
            clock(f.mtime, "%d-%b %H:%M:%S"),
            format_duration(now - f.mtime),
            format_size(f.size),
            record_text(f.pid if f.pid is not None else ""),
            record_text(f.run_id or ""),
            record_text(f.path.name),
            Text(visible(_command(f.argv)), overflow="ellipsis"),
        )
    console = _console()
    console.print(Text(visible(f"Trace directory: {directory}"), style="dim"))
    console.print(table)


def _command(argv: list[str] | None) -> str:
    return shlex.join(argv) if argv else ""


# -- dump ---------------------------------------------------------------------------


@main.command("dump", short_help="A trace file as a JSON array of records.")
@click.argument("trace_file", required=False, type=options.TRACE_FILE)
@click.option(
    "--filter",
    "filter_",
    metavar="TEXT",
    help="Only records whose message contains TEXT (case-insensitive).",
)
@trace_dir_option
def dump_command(trace_file: str | None, filter_: str | None, trace_dir: str | None) -> None:
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
                    out.write(json_text(record, indent=2).replace("\n", "\n  "))
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
        click.echo(visible(summary), err=True)


# -- anomalies ----------------------------------------------------------------------


@main.command("anomalies", short_help="Actions still running or cancelled (--all: also failed).")
@click.argument("trace_file", required=False, type=options.TRACE_FILE)
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
    type=options.Seconds(maximum=config.MAX_STUCK_AFTER, zero=True),
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
    trace_dir: str | None,
) -> None:
    """Show actions that never ended or were cancelled (default: the newest file).

    Running actions come culprit first, with the line each waits on when the
    watchdog has reported it stuck.
    """
    from autotrace.read.reader import scan_file

    if watch and as_json:
        raise click.UsageError("--watch shows a live table: it does not take --json")
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
        _report(scanner.problems.summary(path.name))


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
    """Strict ``json.dumps`` for one row (a NaN or infinity read from a file becomes
    null) without its per-call set-up: the C encoder, made once (CPython's; checked
    against ``json.dumps`` on a sample, else ``json_text`` itself)."""
    from json import encoder

    from autotrace.cli.render import finite

    make = getattr(encoder, "c_make_encoder", None)
    if make is None:
        return json_text
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
            False,  # allow_nan: NaN is not JSON
        )

        def dumps(row: Any) -> str:
            try:
                return "".join(c_encode(row, 0))
            except ValueError:  # a non-finite number: rare, so checked only here
                return "".join(c_encode(finite(row), 0))

        sample = {"a": "é\n", "b": [1.5, None, True], "c": {"d": float("inf")}, "e": 7}
        if dumps(sample) == json_text(sample):
            return dumps
    except Exception:
        pass
    return json_text


def _print_anomalies(
    path: Path,
    anomalies: Any,
    show_all: bool,
    as_of: float,
    processes: list[dict[str, Any]],
) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    console.print(f"[bold]TRACE:[/bold] {escape(visible(path))}", highlight=False)
    if processes:
        first = processes[0]
        command = command_line(first.get("argv"))
        console.print(
            record_text(f"pid {first.get('pid')}  run {first.get('run_id')}  {command}", "dim"),
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
            detail = record_text(row.detail or row.message, newlines=True)
            if row.error is not None:
                detail.append(
                    visible(f"  {row.error_type or 'error'}: {row.error}", newlines=True),
                    style="red",
                )
            table.add_row(
                format_duration(row.age(as_of)),
                record_text(row.action, "cyan"),
                detail,
                record_text(row.pid if row.pid is not None else ""),
                clock(row.start_time) if row.start_time else "",
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
