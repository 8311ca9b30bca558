"""Small inspect programs the patch tests run in a traced child process (any inspect release).

    python scenarios.py outside_eval OPENAI_URL   # generate, subtask, sandbox exec; no eval
    python scenarios.py native_at_exit            # inspect's handler on; records at exit

Prints one JSON line of facts the test checks against the trace files.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import sys
import threading


def outside_eval(openai_url: str) -> dict[str, object]:
    """inspect's APIs called outside an eval: no inspect trace handler exists."""
    from inspect_ai.model import get_model
    from inspect_ai.util import subtask
    from inspect_ai.util._sandbox.local import LocalSandboxEnvironment

    @subtask
    async def bare_subtask(text: str) -> str:
        return text.upper()

    @subtask("named_subtask")
    async def named(text: str) -> str:
        return text + "!"

    async def main() -> dict[str, object]:
        model = get_model("openai/test", base_url=openai_url, api_key="sk-fake-key")
        output = await model.generate("hello")
        first = await bare_subtask("a")
        second = await named("b")
        result = await LocalSandboxEnvironment().exec(["echo", "sandboxed"])
        return {
            "completion": output.completion,
            "subtasks": [first, second],
            "sandbox": result.stdout.strip(),
            "subtask_is_coroutine": asyncio.iscoroutinefunction(bare_subtask),
        }

    return asyncio.run(main())


def native_at_exit() -> dict[str, object]:
    """inspect's trace handler active; actions end and start around its gzip at exit."""
    from autotrace.runtime import actions

    # Registered before inspect's compress hook, so it runs after it (atexit is LIFO).
    late = actions.start_action("Subprocess", "ends after inspect gzipped the file")
    atexit.register(lambda: late is not None and late.end())

    from inspect_ai._util.logger import init_logger
    from inspect_ai._util.trace import trace_action

    init_logger("warning")
    import logging

    logger = logging.getLogger("inspect_ai.scenario")
    with trace_action(logger, "Tool Call", "probe(x=1)"):
        with actions.trace_action("Subprocess", "inside the native action"):
            pass
    with actions.trace_action("Subtask", "ours, around a native action"):
        with trace_action(logger, "Sandbox", "native inside ours"):
            pass
    with trace_action(
        logger, "Subprocess", "docker run --env OPENAI_API_KEY=sk-abcdefghijklmnopqrstuv img"
    ):
        with actions.trace_action("Subprocess", "same work, suppressed"):
            pass

    with trace_action(logger, "MCPServer", "call_tool (%s): %s", "files", "read(path='a')"):
        with actions.trace_action("Tool Call", "the mcp patch's call, suppressed"):
            pass

    @trace_action(logger, "Sandbox", "decorated")  # a contextmanager is a decorator too
    def decorated() -> None:
        pass

    decorated()
    decorated()

    stuck = threading.Event()

    def never_ends() -> None:
        with actions.trace_action("Subprocess", "still running at exit"):
            stuck.wait()

    threading.Thread(target=never_ends, daemon=True).start()
    while not any(a.detail == "still running at exit" for a in list(actions.open_actions.values())):
        threading.Event().wait(0.01)
    # inspect got our file while its handler was made; the variable is not left for children
    return {"writer": str(actions.writer.path), "env": os.environ.get("INSPECT_TRACE_FILE")}


if __name__ == "__main__":
    name = sys.argv[1]
    facts = outside_eval(sys.argv[2]) if name == "outside_eval" else native_at_exit()
    print(json.dumps(facts), flush=True)
