"""inspect-autotrace: a zero-code tracing agent for hung Python programs.

Public API::

    from autotrace import trace_action, trace_message

    with trace_action("Model", "generate (openai/gpt-4o)"):
        ...

The names are loaded on first use (PEP 562): the bootstrap imports this package in
every traced process, and the action API (writer, records) is not needed until a
patch traces its first call.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds to import: only for type checkers

__version__ = "0.1.0"

__all__ = [
    "OpenAction",
    "current_action",
    "open_actions",
    "start_action",
    "trace_action",
    "trace_message",
    "__version__",
]

if TYPE_CHECKING:
    from typing import Any

    from autotrace.runtime.actions import (
        OpenAction,
        current_action,
        open_actions,
        start_action,
        trace_action,
        trace_message,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from autotrace.runtime import actions

        return getattr(actions, name)
    raise AttributeError(f"module 'autotrace' has no attribute {name!r}")
