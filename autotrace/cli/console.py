"""The one rich console setup of the CLI."""

from __future__ import annotations

import os
import sys
from typing import Any

# Piped output (a file, `less`, CI logs) has no terminal width; rich would assume 80
# columns and wrap paths and stacks one word per line. Tables only take what they need.
PIPED_WIDTH = 160


def make_console() -> Any:
    """A rich Console: the terminal's width, or PIPED_WIDTH when stdout is not a terminal.

    When the reader of our output goes away (`| head`), it raises BrokenPipeError for
    the CLI to end quietly with its own exit code (rich's default exits 1 itself).
    """
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return _Console(highlight=False, width=PIPED_WIDTH if piped else None)
