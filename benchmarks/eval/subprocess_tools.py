"""The evaluation benchmarks/bench_eval.py runs: each sample's model asks for a tool that
starts subprocesses, then answers. Run with cwd = this directory:

    inspect eval subprocess_tools.py --model openai/test -T samples=200

The model is tests/llm_server.py (a tool call on the first turn, the answer after it).
"""

import subprocess

import anyio
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import includes
from inspect_ai.solver import generate, use_tools
from inspect_ai.tool import tool
from inspect_ai.util import subprocess as inspect_subprocess


@tool
def run_commands():
    async def execute(n: int) -> str:
        """Run a few commands in child processes.

        Args:
            n: A number to echo.
        """
        echoed = await inspect_subprocess(["echo", str(n)])  # inspect's own subprocess()
        await anyio.to_thread.run_sync(lambda: subprocess.run(["true"], check=True))  # stdlib
        return echoed.stdout.strip()

    return execute


@task
def subprocess_tools(samples: int = 200):
    """``samples`` samples, each one tool call (two child processes) and one answer."""
    return Task(
        dataset=[Sample(input=f"Run the commands for {i}.", target="done") for i in range(samples)],
        solver=[use_tools(run_commands()), generate()],
        scorer=includes(),
    )
