"""The `inspect-trace` command line (click + rich)."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inspect-autotrace")
def main() -> None:
    """Find the action that keeps a Python program from finishing."""


if __name__ == "__main__":
    main()
