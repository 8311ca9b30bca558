"""mcp: ``ClientSession.call_tool`` (and ``Client.call_tool``) are ``Tool Call`` actions.

Detail: the call as ``name(arg=value, ...)``, each argument masked, then shortened. A call inside a ``Tool Call`` for the same tool (``Client.call_tool`` going
through its session, or inspect's own tool dispatch of an MCP tool) is the same work
and adds no second action.
"""

from __future__ import annotations

from typing import Any

from autotrace import records
from autotrace.patches._tool_call import call_detail
from autotrace.runtime import actions
from autotrace.startup.patching import Patch, Wrap


def _describe(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    name = args[0] if args else kwargs.get("name")
    arguments = args[1] if len(args) > 1 else kwargs.get("arguments")
    current = actions.current_action()
    if (
        current is not None
        and current.action == records.TOOL_CALL
        and current.detail.startswith(f"{name}(")
    ):
        return None  # the same tool call, already an action
    return call_detail(str(name), arguments)


PATCH = Patch(
    name="mcp",
    description="MCP client tool calls as Tool Call actions",
    wraps=[
        Wrap("mcp.client.session", "ClientSession.call_tool", records.TOOL_CALL, _describe),
        Wrap("mcp.client.client", "Client.call_tool", records.TOOL_CALL, _describe, optional=True),
    ],
)
