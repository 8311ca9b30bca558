"""`inspect-trace stacks PID` and `inspect-trace cancel PID TRACE_ID`: the live channel."""

from __future__ import annotations

import click

from autotrace.cli import options
from autotrace.read.snapshot import SnapshotError, request_cancel, request_snapshot


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
    if as_json:
        click.echo(json_text(snap, indent=2, default=str))
        return
    from autotrace.cli.console import make_console
    from autotrace.cli.render import render_snapshot

    console = make_console()
    for part in render_snapshot(snap):
        console.print(part)


@click.command("cancel")
@click.argument("pid", type=options.PID)
@click.argument("trace_id")
@click.option("--json", "as_json", is_flag=True, help="Print the process's answer as JSON.")
@click.option(
    "--timeout",
    type=options.Seconds(maximum=options.DAY),
    default=15.0,
    show_default=True,
    help="Seconds to wait for the answer.",
)
def cancel_command(pid: int, trace_id: str, as_json: bool, timeout: float) -> None:
    """Ask live traced process PID to end its open action TRACE_ID, the least harmful way.

    A child process is terminated, an asyncio task cancelled, a thread running Python
    code gets an exception; exit 1 with the reason when none of these can work.
    """
    from autotrace.cli.render import json_text, visible

    try:
        answer = request_cancel(pid, trace_id, timeout)
    except SnapshotError as exc:
        raise click.ClickException(visible(exc)) from None
    if as_json:
        click.echo(json_text(answer, indent=2, default=str))
    elif answer.get("ok"):
        click.echo(
            visible(f"{answer.get('action')}: {answer.get('detail')}: {answer.get('message')}")
        )
    if not answer.get("ok"):
        raise click.ClickException(visible(answer.get("message") or "cancel refused"))
