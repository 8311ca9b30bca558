"""A small program that hangs in a child process, to try the agent on:

    inspect-trace run -- python -m autotrace.demo
    inspect-trace anomalies

It runs two short commands, then a "tool" that never answers; after a few seconds it
gives up and exits without any clean-up, as a run killed by a timeout or a CI job limit
would, so the tool's action is left running in the trace. The tool notices its parent
is gone and exits too: nothing is left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

HANG_SECONDS = 3.0  # how long the demo waits on the hung tool before giving up
TOOL_LIMIT_SECONDS = 60.0  # the tool never outlives this, whatever happens


def hung_tool() -> None:
    """The tool that never answers: waits until its parent is gone (or the time limit)."""
    parent = os.getppid()
    deadline = time.monotonic() + TOOL_LIMIT_SECONDS
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.2)


def call_tool(command: list[str], env: dict[str, str]) -> None:
    """Run the tool and wait for it: the line `inspect-trace anomalies` shows as where it waits."""
    subprocess.run(command, env=env)


def main() -> None:
    """Two commands that end, one that hangs, then an exit without clean-up."""
    subprocess.run(["echo", "demo: preparing the sandbox"], check=True)
    subprocess.run(["sh", "-c", "echo demo: checking the tools; exit 0"], check=True)
    # The tool is Python too; it is kept out of the trace so that the demo's own file
    # stays the newest one, the file `inspect-trace anomalies` reads by default.
    env = dict(os.environ, AUTOTRACE_DISABLE="1")
    tool = [sys.executable, "-m", "autotrace.demo", "--hung-tool"]
    threading.Thread(target=call_tool, args=(tool, env), daemon=True).start()
    print(
        f"demo: calling the tool (it will hang; giving up after {HANG_SECONDS:.0f} s)", flush=True
    )
    time.sleep(HANG_SECONDS)
    print("demo: giving up; exiting without clean-up, as a killed run would", flush=True)
    os._exit(1)


if __name__ == "__main__":
    if sys.argv[1:] == ["--hung-tool"]:
        hung_tool()
    else:
        main()
