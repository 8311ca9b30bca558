"""`inspect-trace run` and `inspect-trace patches`: start a program with the agent active.

The launcher does almost nothing (as ddtrace-run): it puts the bootstrap folder first on
PYTHONPATH, passes its settings as AUTOTRACE_* variables and execs the command, so the
exit code, signals, stdin and the terminal are the command's own. The slow look-ups
(entry points, each patch's target modules) happen here once, not in every process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from autotrace import config
from autotrace.cli import options
from autotrace.startup import agent, bootstrap, targets

BOOTSTRAP_DIR = os.path.dirname(os.path.abspath(bootstrap.__file__))


def _names(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _patch_catalog() -> list[dict[str, Any]]:
    """Every known patch: shipped ones, then those of the ``autotrace.patches`` entry points."""
    entries = [
        {"name": name, "ref": name, "source": "shipped"} for name in agent.available_patch_names()
    ]
    try:
        third_party = agent.entry_point_patches()
    except Exception as exc:
        raise click.ClickException(
            f"cannot read the {agent.ENTRY_POINT_GROUP} entry points: {exc!r}"
        ) from exc
    for name, ref in sorted(third_party.items()):
        if not any(entry["name"] == name for entry in entries):
            entries.append({"name": name, "ref": ref, "source": "entry point"})
    return entries


def _importable(module_name: str) -> bool:
    """Whether a module's top-level package can be found, without importing anything."""
    try:
        return importlib.util.find_spec(module_name.split(".", 1)[0]) is not None
    except (ImportError, ValueError):
        return False


def _environment(
    trace_dir: str | None,
    only: list[str],
    excluded: list[str],
    stuck_after: float | None,
) -> dict[str, str]:
    """The environment of the traced command."""
    catalog = _patch_catalog()
    known = {entry["name"] for entry in catalog}
    unknown = [name for name in only + excluded if name not in known]
    if unknown:
        raise click.ClickException(
            f"unknown patch {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    chosen = set(targets.select(known, only, excluded))
    env = dict(os.environ)
    for name in (
        config.ENV_ACTIVE,
        config.ENV_PARENT_PID,
        config.ENV_ENTRY_POINTS,
        config.ENV_EXTRA_PATCHES,
        config.ENV_PATCHES,
        config.ENV_EXCLUDE_PATCHES,
    ):
        env.pop(name, None)
    env[config.ENV_RUN_ID] = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    if trace_dir:
        env[config.ENV_DIR] = os.path.abspath(os.path.expanduser(trace_dir))
    if only:
        env[config.ENV_PATCHES] = ",".join(only)
    if excluded:
        env[config.ENV_EXCLUDE_PATCHES] = ",".join(excluded)
    # A malformed number is reported once, here, and every process gets the value in use.
    if env.get(config.ENV_KEEP, "").strip():
        env[config.ENV_KEEP] = str(config.keep_files())
    if stuck_after is None and env.get(config.ENV_STUCK_AFTER, "").strip():
        stuck_after = config.stuck_after()
    if stuck_after is not None:
        env[config.ENV_STUCK_AFTER] = repr(stuck_after)
    # Third-party patches with their targets, so that no traced process imports a patch
    # before the program imports one of its targets (shipped ones: autotrace.startup.targets).
    extra: dict[str, list[str]] = {}
    for entry in catalog:
        if entry["source"] != "entry point" or entry["name"] not in chosen:
            continue
        try:
            extra[entry["ref"]] = list(agent.load_patch(entry["ref"]).target_modules())
        except Exception as exc:
            click.echo(f"[autotrace] patch {entry['name']} cannot be loaded: {exc!r}", err=True)
    if extra:
        env[config.ENV_EXTRA_PATCHES] = targets.format_extra(extra)
    python_path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOTSTRAP_DIR + (os.pathsep + python_path if python_path else "")
    return env


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
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise click.UsageError("missing the command to run")
    env = _environment(trace_dir, _names(only), _names(excluded), stuck_after)
    if otlp is not None:
        _start_otlp_exporter(env, otlp or None)
    try:
        os.execvpe(command[0], list(command), env)
    except FileNotFoundError:
        _cannot_start(command[0], "command not found", 127)
    except PermissionError:
        _cannot_start(command[0], "permission denied", 126)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the command
        _cannot_start(command[0], getattr(exc, "strerror", None) or exc, 126)


def _cannot_start(program: str, reason: object, code: int) -> NoReturn:
    from autotrace.cli.render import visible  # rendering is loaded on this path only

    click.echo(f"inspect-trace run: {visible(program)}: {visible(reason)}", err=True)
    raise SystemExit(code) from None


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
