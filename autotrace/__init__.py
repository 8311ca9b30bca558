"""inspect-autotrace: a zero-code tracing agent for hung Python programs.

Public API::

    from autotrace import trace_action, trace_message

    with trace_action("Model", "generate (openai/gpt-4o)"):
        ...
"""

from autotrace.actions import (
    OpenAction,
    current_action,
    open_actions,
    start_action,
    trace_action,
    trace_message,
)

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
