"""`inspect-trace stacks PID`: ask a live traced process where it waits, now."""

from __future__ import annotations

import click

from autotrace.cli import options
from autotrace.read.snapshot import SnapshotError, request_snapshot


@click.command("stacks")
@click.argument("pid", type=options.PID)
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
@click.option(
    "--timeout",
    type=options.Seconds(maximum=options.DAY),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the answer.",
)
def stacks_command(pid: int, as_json: bool, timeout: float) -> None:
    """Ask live traced process PID where each open action and thread waits now.

    The snapshot is also written to that process's trace file.
    """
    from autotrace.cli.render import json_text, visible

    try:
        snap = request_snapshot(pid, timeout)
    except SnapshotError as exc:
        raise click.ClickException(visible(exc)) from None
    if not isinstance(snap, dict):
        raise click.ClickException(f"process {pid} gave no snapshot (not a JSON object)")
    if as_json:
        click.echo(json_text(snap, indent=2, default=str))
        return
    from autotrace.cli.console import make_console
    from autotrace.cli.render import render_snapshot

    console = make_console()
    for part in render_snapshot(snap):
        console.print(part)
