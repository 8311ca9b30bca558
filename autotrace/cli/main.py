"""The `inspect-trace` command line (click + rich): the group of verbs.

Each verb lives in the module the table below names and is imported only when it runs
(or when the help lists them): `inspect-trace run`, which every traced run goes through,
loads the launcher alone, not the reader or rich.

Exit codes: 0 done (also when the reader of our output went away: `| head`), 1 one
`Error:` line (the file cannot be read, the process cannot be asked), 2 a usage error
(click's form); `run` passes the command's own code through (126/127 when it cannot
be started).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from autotrace.cli.console import quiet_broken_pipe, tolerant_streams

# verb -> "module:command"
VERBS = {
    "anomalies": "autotrace.cli.reading:anomalies_command",
    "cancel": "autotrace.cli.stacks:cancel_command",
    "dump": "autotrace.cli.reading:dump_command",
    "export": "autotrace.cli.reading:export_command",
    "list": "autotrace.cli.reading:list_command",
    "patches": "autotrace.cli.run:patches_command",
    "run": "autotrace.cli.run:run_command",
    "stacks": "autotrace.cli.stacks:stacks_command",
    "timeline": "autotrace.cli.reading:timeline_command",
}


class _Verbs(click.Group):
    """The group of verbs, each loaded when used (click's lazy subcommands): whatever a
    verb lets escape ends as one line, never a traceback."""

    def __init__(self, *args: Any, verbs: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._verbs = verbs

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._verbs})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = self._verbs.get(cmd_name)
        if where is None:
            return super().get_command(ctx, cmd_name)
        module, name = where.split(":")
        command: click.Command = getattr(importlib.import_module(module), name)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        tolerant_streams()
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            quiet_broken_pipe()
            ctx.exit(0)
        except Exception as exc:  # a bug of ours, or an input we did not foresee
            from autotrace.cli.render import visible

            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {visible(exc)[:300]}"
            ) from None


@click.group(
    cls=_Verbs,
    verbs=VERBS,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  inspect-trace run -- inspect eval task.py --model openai/gpt-4o
  inspect-trace anomalies              # what is still running, and where it waits
  inspect-trace anomalies --run        # every process of the newest run
  inspect-trace anomalies --watch      # live view while the run goes on
  inspect-trace stacks PID             # stacks of a live traced process, now
  inspect-trace cancel PID TRACE_ID    # end one open action of a live process""",
)
@click.version_option(package_name="inspect-autotrace")
def main() -> None:
    """Find the action that keeps a Python program from finishing."""


if __name__ == "__main__":
    main()
