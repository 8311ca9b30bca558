"""A small evaluation-shaped program that hangs: run under ``inspect-trace run``.

The parent runs commands that finish, fail and time out, model calls on asyncio tasks
(one cancelled, one raising), a worker thread, then a subtask that starts a child
process whose tool call runs ``sleep 600``: the culprit. Details, an error and the
child's command line carry hostile text (HTML, a script, a line separator) that the
timeline page must show as text (plain text with HUNG_RUN_PLAIN=1).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

from autotrace import trace_action

HOSTILE = (
    '</script><script>document.title="pwned"</script>'
    "<img src=x onerror=\"document.title='pwned'\"> \u2028 & <b>bold</b> <!--"
)
if os.environ.get("HUNG_RUN_PLAIN"):  # the README's screenshot: plain text instead
    HOSTILE = "--sample 5 --epochs 1"


def child() -> None:
    with trace_action("Tool Call", "bash(cmd='sleep 600')"):
        subprocess.run(["sleep", "600"])


async def model_calls() -> None:
    async def generate(i: int, delay: float) -> None:
        async with trace_action("Model", f"generate (openai/gpt-4o) sample {i}"):
            await asyncio.sleep(delay)

    async def cancelled() -> None:
        async with trace_action("Model", "generate (openai/gpt-4o) sample 3"):
            await asyncio.sleep(30)

    async def failing() -> None:
        async with trace_action("Model", "generate (openai/gpt-4o) sample 4"):
            await asyncio.sleep(0.05)
            raise ConnectionError("connection reset by peer " + HOSTILE)

    tasks = [asyncio.create_task(generate(i, 0.1 * (i + 1)), name=f"sample-{i}") for i in range(3)]
    slow = asyncio.create_task(cancelled(), name="sample-3")
    bad = asyncio.create_task(failing(), name="sample-4")
    await asyncio.sleep(0.15)
    slow.cancel()
    await asyncio.gather(*tasks, slow, bad, return_exceptions=True)


def worker() -> None:
    for i in range(5):
        with trace_action("Tool Call", f"python(code='step {i}')"):
            subprocess.run(["true"])
            time.sleep(0.02)


def main() -> None:
    subprocess.run(["true"])
    subprocess.run(["false"])
    with trace_action("Tool Call", HOSTILE):
        subprocess.run(["echo", HOSTILE], stdout=subprocess.DEVNULL)
    try:
        subprocess.run(["sleep", "5"], timeout=0.3)
    except subprocess.TimeoutExpired:
        pass
    thread = threading.Thread(target=worker, name="tool-worker")
    thread.start()
    asyncio.run(model_calls())
    thread.join()
    with trace_action("Subtask", "solve sample 5"):
        subprocess.run([sys.executable, __file__, "--child", HOSTILE])


if __name__ == "__main__":
    child() if "--child" in sys.argv else main()
