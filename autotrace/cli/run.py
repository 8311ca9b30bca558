"""`inspect-trace run` and `inspect-trace patches`: start a program with the agent active.

The launching itself (the command's environment, the exec) is ``autotrace.cli.launch``,
which the console script calls without click when `run` has no options; here click reads
them first.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import click

from autotrace import config
from autotrace.cli import launch, options
from autotrace.startup import agent


def _patch_catalog() -> list[dict[str, Any]]:
    try:
        return launch.patch_catalog()
    except launch.LaunchError as exc:
        raise click.ClickException(str(exc)) from None


def _importable(module_name: str) -> bool:
    """Whether a module's top-level package can be found, without importing anything."""
    try:
        return importlib.util.find_spec(module_name.split(".", 1)[0]) is not None
    except (ImportError, ValueError):
        return False


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--trace-dir", type=options.TRACE_DIR, help="Directory of the trace files.")
@click.option("--patches", "only", help="Only these patches (comma-separated names).")
@click.option("--exclude-patches", "excluded", help="Not these patches (comma-separated names).")
@click.option(
    "--stuck-after",
    type=options.Seconds(maximum=config.MAX_STUCK_AFTER, zero=True),
    help="Seconds after which an open action counts as stuck.",
)
@click.option(
    "--otlp",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ENDPOINT]",
    help="Also send the run to a tracing backend over OTLP, from a background exporter "
    "[ENDPOINT default: $OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318]. "
    "Put -- before the command.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_command(
    trace_dir: str | None,
    only: str | None,
    excluded: str | None,
    stuck_after: float | None,
    otlp: str | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND with the agent active in every Python process it starts."""
    args = launch.command_of(command)
    if not args:
        raise click.UsageError("missing the command to run")
    try:
        env = launch.environment(trace_dir, launch.names(only), launch.names(excluded), stuck_after)
    except launch.LaunchError as exc:
        raise click.ClickException(str(exc)) from None
    if otlp is not None:
        _start_otlp_exporter(env, otlp or None)
    launch.start(args, env)


def _start_otlp_exporter(env: dict[str, str], endpoint: str | None) -> None:
    """`run --otlp`: the exporter follows the run's files from its own process."""
    from autotrace.export import otlp

    if otlp.sdk_disabled():
        return
    missing = otlp.sdk_missing()
    if missing:
        raise click.ClickException(missing)
    try:
        otlp.settings(endpoint)  # bad settings fail here, before the command runs
    except otlp.ExportError as exc:
        raise click.ClickException(str(exc)) from None
    directory = Path(env[config.ENV_DIR] if config.ENV_DIR in env else config.trace_dir())
    try:
        otlp.start_background(env[config.ENV_RUN_ID], directory, endpoint)
    except OSError as exc:
        raise click.ClickException(f"cannot start the OTLP exporter: {exc}") from None


@click.command("patches")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per patch, as a list.")
def patches_command(as_json: bool) -> None:
    """List the patches: what each traces, its target modules, whether its library is installed."""
    rows = []
    for entry in _patch_catalog():
        row: dict[str, Any] = {
            "name": entry["name"],
            "source": entry["source"],
            "ref": entry["ref"],
        }
        try:
            patch = agent.load_patch(entry["ref"])
            targets = list(patch.target_modules())
            row["description"] = patch.description
        except Exception as exc:
            targets = []
            row["description"] = f"cannot be loaded: {exc!r}"
        row["targets"] = targets
        libraries = list(dict.fromkeys(name.split(".", 1)[0] for name in targets))
        row["libraries"] = {name: _importable(name) for name in libraries}
        row["importable"] = bool(libraries) and all(row["libraries"].values())
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    from autotrace.cli.console import make_console
    from autotrace.cli.render import visible

    table = Table(title="autotrace patches")
    table.add_column("patch")
    table.add_column("traces")
    table.add_column("target modules")
    table.add_column("library")
    for row in rows:
        installed = ", ".join(
            f"{escape(visible(library))} {'[green]yes[/]' if ok else '[red]not installed[/]'}"
            for library, ok in row["libraries"].items()
        )
        label = escape(visible(row["name"])) + (
            "" if row["source"] == "shipped" else f"\n({row['source']})"
        )
        table.add_row(
            label,
            escape(visible(row["description"])),
            escape("\n".join(visible(target) for target in row["targets"])),
            installed,
        )
    make_console().print(table)
