"""A task whose tool hangs two processes down, for the OTLP end-to-end test.

Run with cwd = this directory: ``inspect eval otlp_task.py@child_hang --model openai/test``.
The tool starts a Python child process (traced too) that runs ``sleep <seconds>``.
"""

import subprocess
import sys

import anyio
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.solver import generate, use_tools
from inspect_ai.tool import tool


@tool
def child_sleeper():
    async def execute(seconds: int) -> str:
        """Sleep in a grandchild process, started by a Python child process.

        Args:
            seconds: How long to sleep.
        """
        code = f"import subprocess; subprocess.run(['sleep', '{int(seconds)}'])"
        await anyio.to_thread.run_sync(
            lambda: subprocess.run([sys.executable, "-c", code], check=False)
        )
        return "slept"

    return execute


@task
def child_hang():
    """The model asks for child_sleeper(seconds=600): the eval hangs two processes down."""
    return Task(
        dataset=[Sample(input="Please sleep.", target="slept")],
        solver=[use_tools(child_sleeper()), generate()],
    )
