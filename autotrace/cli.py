"""The `inspect-trace` command line (click + rich)."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inspect-autotrace")
def main() -> None:
    """Find the action that keeps a Python program from finishing."""


def _register_optional_commands() -> None:
    # Commands that live in their own modules (launcher, diagnosis). Temporary
    # tolerance of a missing module while those are being built in parallel.
    import importlib

    for module_name, names in (
        ("autotrace.launcher", ("run", "patches")),
        ("autotrace.diagnose", ("stacks",)),
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        for name in names:
            command = getattr(module, f"{name}_command", None)
            if command is not None:
                main.add_command(command)


_register_optional_commands()

if __name__ == "__main__":
    main()
