"""Tasks for the end-to-end tests: one sample, a model that asks for the `sleeper` tool.

Run with cwd = this directory: ``inspect eval hang_task.py@<task> --model openai/test``.
The tool runs stdlib ``subprocess.run`` in a worker thread, as tools that wrap a CLI do.
"""

import subprocess

import anyio
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.solver import generate, use_tools
from inspect_ai.tool import tool


@tool
def sleeper():
    async def execute(seconds: int) -> str:
        """Sleep in a child process.

        Args:
            seconds: How long to sleep.
        """
        await anyio.to_thread.run_sync(lambda: subprocess.run(["sleep", str(seconds)], check=False))
        return "slept"

    return execute


@task
def tool_hang():
    """The model asks for sleeper(seconds=600): the eval hangs inside the tool."""
    return Task(
        dataset=[Sample(input="Please sleep.", target="slept")],
        solver=[use_tools(sleeper()), generate()],
    )


@task
def plain():
    """One generate, no tools (the model server decides whether it answers)."""
    return Task(dataset=[Sample(input="Say hello.", target="hello")], solver=[generate()])
