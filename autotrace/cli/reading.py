"""The verbs that read trace files: `list`, `dump`, `anomalies`, `timeline`, `export`.

They read with autotrace.read (files, reader, the row model); `anomalies` means what
`inspect trace anomalies` means and its `--json` envelope has the same shape (rows add
ours: `trace_id`, `pid`, `chain`, `stack`, ...). Every text that comes from a trace file
reaches rich as a `Text` object or through `escape`, never as markup, and through
`render.visible` (no control character reaches the terminal raw); every `--json` output
is strict JSON (NaN and infinities become null).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from autotrace import config
from autotrace.cli import options
from autotrace.cli.console import own_process, quiet_broken_pipe
from autotrace.cli.render import (
    clock,
    command_line,
    format_duration,
    json_text,
    record_text,
    visible,
)

F = TypeVar("F", bound=Callable[..., Any])


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
    return Path(trace_dir).expanduser() if trace_dir is not None else Path(config.trace_dir())


@contextmanager
def _read_errors() -> Iterator[None]:
    """Reading trouble becomes one line on stderr and exit 1, never a traceback."""
    from autotrace.read.files import TraceReadError

    try:
        yield
    except TraceReadError as exc:
        raise click.ClickException(visible(exc)) from None
    except BrokenPipeError:  # writing, not reading: the verb ends quietly
        raise
    except OSError as exc:
        where = f" {visible(exc.filename)}" if exc.filename else ""
        reason = exc.strerror or str(exc)
        reason = reason[:1].lower() + reason[1:]  # as the reader words it: "permission denied"
        raise click.ClickException(f"cannot read{where}: {visible(reason)}") from None


def _resolve(file: str | None, trace_dir: str | Path | None) -> Path:
    """The file a verb reads: FILE, else the newest in the trace directory; refused
    (one line, exit 1) when it is not a regular file it can read."""
    from autotrace.read.files import resolve_trace_file

    with _read_errors():
        return resolve_trace_file(file, _directory(trace_dir))


# -- list ---------------------------------------------------------------------------


@click.command("list", short_help="Trace files, newest first, with process and run.")
@click.option("--json", "as_json", is_flag=True, help="Output the listing as JSON.")
@trace_dir_option
def list_command(as_json: bool, trace_dir: str | None) -> None:
    """List trace files, newest first, with their process and run."""
    from autotrace.read.files import list_trace_files

    directory = _directory(trace_dir)
    with _read_errors():
        files = list_trace_files(directory, headers=True)
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
            record_text((f.header.run_id or "") if f.header else ""),
            record_text(f.path.name),
            Text(command_line(f.header.argv if f.header else None), overflow="ellipsis"),
        )
    console = _console()
    console.print(Text(visible(f"Trace directory: {directory}"), style="dim"))
    console.print(table)


# -- dump ---------------------------------------------------------------------------


@click.command("dump", short_help="A trace file as a JSON array of records.")
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
            quiet_broken_pipe()
            return
        _report(problems.summary(path.name))


def _spans_source(
    trace_file: str | None, run_id: str | None, trace_dir: str | None
) -> tuple[Path, Path | None, bool]:
    """(directory, file, whole run) for the verbs that read every action: FILE alone is
    that file; --run [RUN_ID] (or nothing) is a whole run."""
    path = _resolve(trace_file, trace_dir) if trace_file else None
    # A file given without --trace-dir: its run is in the file's own directory.
    directory = trace_dir if trace_dir is not None or path is None else path.parent
    return _directory(directory), path, path is None or run_id is not None


def run_option(fn: F) -> F:
    """`--run [RUN_ID]`, as `anomalies` takes it."""
    return click.option(
        "--run",
        "run_id",
        is_flag=False,
        flag_value="",
        default=None,
        metavar="[RUN_ID]",
        help="Every process of a run [default run: that of TRACE_FILE, else of the newest file].",
    )(fn)


# -- timeline / export ----------------------------------------------------------------


@click.command("timeline", short_help="The run as one interactive HTML page (no network).")
@click.argument("trace_file", required=False, type=options.TRACE_FILE)
@run_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=Path("timeline.html"),
    show_default=True,
    help="The HTML file to write.",
)
@click.option("--open", "open_", is_flag=True, help="Open the page in the web browser.")
@click.option(
    "--max-bars",
    type=click.IntRange(min=1),
    default=None,
    help="About this many actions drawn one by one [default: 200000]: every running, failed "
    "and stuck one, then the longest, with their parents; every action counts in each "
    "lane's activity band.",
)
@trace_dir_option
def timeline_command(
    trace_file: str | None,
    run_id: str | None,
    output: Path,
    open_: bool,
    max_bars: int | None,
    trace_dir: str | None,
) -> None:
    """Write a run (default: the newest) or one TRACE_FILE as a self-contained HTML timeline:
    a lane per process, a bar per action coloured and labelled by outcome, the culprit selected."""
    from autotrace.cli import timeline
    from autotrace.read.spans import read_spans

    directory, path, whole = _spans_source(trace_file, run_id, trace_dir)
    with _large_read():
        with _read_errors():
            spans = read_spans(directory, run_id or None, path, whole_run=whole)
        try:
            stats = timeline.write_page(spans, output, max_bars=max_bars or timeline.MAX_BARS)
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
        _report(spans.problems.summary(str(path or directory)))
        shown = f"{stats.bars:,} of {stats.actions:,}" if stats.bars < stats.actions else ""
        click.echo(
            f"wrote {output} ({format_size(stats.size)}): {stats.processes} process(es), "
            f"{shown or f'{stats.actions:,}'} actions"
        )
        if open_:
            import webbrowser

            webbrowser.open(output.resolve().as_uri())


@click.command("export", short_help="The run to a tracing backend (OTLP) or a Perfetto file.")
@click.argument("files", nargs=-1, metavar="[FILE]...", type=options.TRACE_FILE)
@click.option(
    "--format",
    "format_",
    type=click.Choice(["otlp", "perfetto"]),
    default="otlp",
    show_default=True,
    help="otlp: send spans to an OpenTelemetry backend (endpoint and headers from OTEL_*); "
    "perfetto: write Chrome Trace Event JSON, for ui.perfetto.dev and chrome://tracing.",
)
@click.option(
    "--run",
    "run_id",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[RUN_ID]",
    help="Every file of a run [default, and RUN_ID's default: the run of the newest file].",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="perfetto: the file to write [default: stdout].",
)
@click.option("--follow", is_flag=True, help="otlp: keep sending as the files grow (Ctrl-C stops).")
@click.option(
    "--endpoint",
    envvar="AUTOTRACE_OTLP_ENDPOINT",
    metavar="URL",
    help="otlp: the endpoint [default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "
    "$OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318].",
)
@click.option(
    "--protocol",
    type=click.Choice(["http/protobuf", "grpc"]),
    default=None,
    help="otlp: [default: $OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf]",
)
@click.option(
    "--pending-after",
    type=click.FloatRange(min=0, max=86400),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="otlp: send an action still running after this long as a pending span.",
)
@click.option(
    "--from-start", is_flag=True, help="otlp: send everything again (ignore saved offsets)."
)
@click.option("--until-pid", type=options.PID, hidden=True)
@trace_dir_option
def export_command(
    files: tuple[str, ...],
    format_: str,
    run_id: str | None,
    output: Path | None,
    follow: bool,
    endpoint: str | None,
    protocol: str | None,
    pending_after: float,
    from_start: bool,
    until_pid: int | None,
    trace_dir: str | None,
) -> None:
    """Send a run's trace files (ours and inspect's own) to a tracing backend over OTLP, or
    write them as a Perfetto trace.

    OTLP sends FILE..., else every file of a run; running actions go as pending spans, and
    offsets are saved in the trace directory, so a second export sends only what is new.
    Perfetto writes one FILE, else the run (default: the newest).
    """
    if format_ == "perfetto":
        if follow or endpoint or protocol or from_start:
            raise click.UsageError(
                "--follow, --endpoint, --protocol and --from-start are for --format otlp"
            )
        if len(files) > 1:
            raise click.UsageError("--format perfetto takes one FILE (or --run)")
        _export_perfetto(files[0] if files else None, run_id, output, trace_dir)
        return
    if output is not None:
        raise click.UsageError("-o/--output is for --format perfetto (otlp sends to a backend)")
    _export_otlp(
        files, run_id, follow, endpoint, protocol, pending_after, from_start, until_pid, trace_dir
    )


def _export_perfetto(
    trace_file: str | None, run_id: str | None, output: Path | None, trace_dir: str | None
) -> None:
    from autotrace.export.perfetto import ExportError, export_perfetto

    directory, path, whole = _spans_source(trace_file, run_id, trace_dir)
    with _large_read():
        try:
            with _read_errors():
                try:
                    spans = export_perfetto(
                        directory, output, run_id=run_id or None, path=path, whole_run=whole
                    )
                except BrokenPipeError:
                    quiet_broken_pipe()
                    return
        except ExportError as exc:
            raise click.ClickException(str(exc)) from None
        _report(spans.problems.summary(str(path or directory)))


def _export_otlp(
    files: tuple[str, ...],
    run_id: str | None,
    follow: bool,
    endpoint: str | None,
    protocol: str | None,
    pending_after: float,
    from_start: bool,
    until_pid: int | None,
    trace_dir: str | None,
) -> None:
    from autotrace.export import otlp

    if otlp.sdk_disabled():
        click.echo("OTEL_SDK_DISABLED is true: nothing sent", err=True)
        return
    directory = _directory(trace_dir)
    paths = [_resolve(f, trace_dir) for f in files]
    if paths and run_id is not None:
        raise click.UsageError("give FILE... or --run, not both")
    if not paths:
        from autotrace.read.run import RunTrace, default_run

        if not follow and not directory.is_dir():
            raise click.ClickException(f"no trace directory at {directory}")
        run_id = run_id or default_run(directory)
        if not run_id:
            raise click.ClickException(f"no trace file with a run id in {directory}")
        if not follow:  # following, the run's files may not exist yet
            run = RunTrace(directory, run_id)
            with _read_errors():
                run.discover()  # its files found (the exporter reads them, once)
            if not run.processes:
                raise click.ClickException(f"no trace file of run {run_id} in {directory}")
    try:
        summary = otlp.export(
            paths=paths,
            directory=directory,
            run_id=run_id,
            follow=follow,
            endpoint=endpoint,
            protocol=protocol,
            pending_after=pending_after,
            from_start=from_start,
            until_pid=until_pid,
        )
    except otlp.ExportError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"sent {summary.spans} spans ({summary.pending} pending) from {summary.files} files",
        err=True,
    )
    if summary.gave_up:
        raise SystemExit(1)


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
    if own_process():
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            pass
        os._exit(0)


def _report(summary: str | None) -> None:
    if summary:
        click.echo(visible(summary), err=True)


# -- anomalies ----------------------------------------------------------------------


@click.command("anomalies", short_help="Actions still running or cancelled (--all: also failed).")
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
    from autotrace.read.files import pid_from_name, read_header
    from autotrace.read.model import anomalies_of
    from autotrace.read.reader import read_file

    path = _resolve(trace_file, trace_dir)
    with _large_read():
        with _read_errors():
            reader = read_file(path, filter_)
        header = read_header(path)
        pid = header.pid if header and header.pid is not None else pid_from_name(path.name)
        as_of = time.time()
        anomalies = anomalies_of(reader, as_of=as_of, pid=pid)
        try:
            if as_json:
                _write_envelope(sys.stdout, path, as_of, anomalies)
            else:
                _print_anomalies(path, anomalies, show_all, header)
        except BrokenPipeError:
            quiet_broken_pipe()
            return
        _report(reader.problems.summary(path.name))


def _write_envelope(out: Any, path: Path, as_of: float, anomalies: Any) -> None:
    """The `--json` envelope, one row per line, written bucket by bucket (no big string)."""
    out.write(f'{{\n  "trace_file": {json.dumps(path.as_posix())},\n  "as_of": {as_of!r}')
    for name, rows in anomalies.buckets().items():
        out.write(f',\n  "{name}": [')
        for n, row in enumerate(rows):
            out.write(("\n    " if n == 0 else ",\n    ") + json_text(row.as_json()))
        out.write("\n  ]" if rows else "]")
    out.write("\n}\n")
    out.flush()


def _print_anomalies(path: Path, anomalies: Any, show_all: bool, header: Any) -> None:
    from rich.markup import escape

    from autotrace.cli.render import action_table

    console = _console()
    console.print(f"[bold]TRACE:[/bold] {escape(visible(path))}", highlight=False)
    if header is not None:
        console.print(
            record_text(
                f"pid {header.pid}  run {header.run_id}  {command_line(header.argv)}", "dim"
            ),
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
        if rows:
            console.print()
            console.print(action_table(rows, title=f"{label} ({len(rows)})"))


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
