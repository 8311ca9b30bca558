"""mcp patch: the real SDK (in-process server) - tool calls are Tool Call actions."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import pytest
from conftest import action_records, installed_patch
from mcp import Client, ClientSession
from mcp.server.mcpserver import MCPServer

from autotrace.runtime import actions

SECRET = "sk-test-0123456789abcdef0123456789"


def make_server(started: asyncio.Event | None = None) -> MCPServer:
    server = MCPServer("test")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails."""
        raise ValueError(reason)

    @server.tool()
    async def wait(token: str) -> str:
        """Never returns."""
        if started is not None:
            started.set()
        await asyncio.Event().wait()
        return token

    return server


def tool_records(trace_dir: Path) -> list[tuple[str, str]]:
    return [
        (r["event"], r["detail"]) for r in action_records(trace_dir) if r["action"] == "Tool Call"
    ]


async def calls(mode: str) -> list[Any]:
    async with Client(make_server(), mode=mode) as client:
        return [
            await client.call_tool("add", {"a": 1, "b": 2}),
            await client.session.call_tool("add", arguments={"a": 3, "b": 4}),
            await client.call_tool("fail", {"reason": "no luck"}),
        ]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_tool_calls_are_tool_call_actions_with_unchanged_results(
    mode: str, trace_dir: Path
) -> None:
    plain = asyncio.run(calls(mode))
    with installed_patch("mcp"):
        traced = asyncio.run(calls(mode))
    assert [r.model_dump() for r in traced] == [r.model_dump() for r in plain]
    assert traced[2].is_error
    assert tool_records(trace_dir) == [
        ("enter", "add(a=1, b=2)"),
        ("exit", "add(a=1, b=2)"),  # Client.call_tool and its session call: one action
        ("enter", "add(a=3, b=4)"),
        ("exit", "add(a=3, b=4)"),
        ("enter", "fail(reason='no luck')"),
        ("exit", "fail(reason='no luck')"),
    ]


def test_call_tool_keeps_signature_and_async_ness() -> None:
    methods = [ClientSession.call_tool, Client.call_tool]
    before = [(inspect.signature(m), inspect.iscoroutinefunction(m)) for m in methods]
    with installed_patch("mcp"):
        methods = [ClientSession.call_tool, Client.call_tool]
        assert [(inspect.signature(m), inspect.iscoroutinefunction(m)) for m in methods] == before
    assert inspect.isfunction(vars(ClientSession)["call_tool"])


def test_hanging_tool_is_running_then_cancelled(trace_dir: Path) -> None:
    async def main() -> None:
        started = asyncio.Event()
        async with Client(make_server(started)) as client:
            task = asyncio.create_task(client.call_tool("wait", {"token": SECRET}))
            await asyncio.wait_for(started.wait(), 10)
            (running,) = actions.open_actions.values()
            assert running.action == "Tool Call" and running.detail.startswith("wait(token=")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with installed_patch("mcp"):
        asyncio.run(main())
    assert [e for e, _ in tool_records(trace_dir)] == ["enter", "cancel"]
    for path in trace_dir.glob("trace-*"):
        assert SECRET.encode() not in path.read_bytes()


def test_tool_call_inside_the_same_tool_call_is_not_traced_twice(trace_dir: Path) -> None:
    async def main() -> None:
        async with Client(make_server()) as client:
            with actions.trace_action("Tool Call", "add(a=1, b=2)"):  # inspect's tool dispatch
                await client.call_tool("add", {"a": 1, "b": 2})
            with actions.trace_action("Tool Call", "plan()"):  # another tool calling MCP
                await client.call_tool("add", {"a": 5, "b": 6})

    with installed_patch("mcp"):
        asyncio.run(main())
    records = [r for r in action_records(trace_dir) if r["event"] == "enter"]
    assert [r["detail"] for r in records] == ["add(a=1, b=2)", "plan()", "add(a=5, b=6)"]
    assert records[2]["parent_id"] == records[1]["trace_id"]


def test_long_arguments_are_shortened() -> None:
    from autotrace.patches.mcp import call_detail

    detail = call_detail("write", {"path": "/tmp/x", "content": "y" * 500})
    assert detail.startswith("write(path='/tmp/x', content='yyy")
    assert len(detail) < 120 and "..." in detail
