"""The one boundary where the agent's own errors stop: nothing of ours raises into the program.

``warn`` writes one ``[autotrace]`` line on stderr; ``call`` runs a piece of agent work
and hands an ``Exception`` to ``on_error`` (itself guarded) instead of letting it out.
Exceptions that are not ``Exception`` (KeyboardInterrupt, SystemExit) pass: they are
the program's. Imports nothing but ``sys``: start-up uses it too.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing costs milliseconds at start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def warn(message: str) -> None:
    """One ``[autotrace] message`` line on stderr; never raises."""
    try:
        sys.stderr.write(f"[autotrace] {message}\n")
        sys.stderr.flush()
    except Exception:
        pass


def call(
    fn: Callable[..., Any],
    *args: Any,
    on_error: Callable[[Exception], object] | None = None,
    default: Any = None,
    **kwargs: Any,
) -> Any:
    """``fn(*args, **kwargs)``, or ``default`` after ``on_error(exc)`` if it raised; never raises."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if on_error is not None:
            try:
                on_error(exc)
            except Exception:
                pass
        return default
