"""What a program can see of the agent, printed as JSON; run plain and traced, the two
outputs must be identical (tests/test_hard_invisible.py).

Threads (``threading.enumerate``, ``active_count``, ``_dangling``, and ``_thread._count``
back to its start once the work is done, as CPython's regrtest checks), what
``os.fork()`` warns while actions are open (Python 3.12+: "multi-threaded"), where
warnings that libraries issue for their caller point (subprocess's EncodingWarning,
anthropic's deprecated-model DeprecationWarning seen by a ``__main__`` script under the
default filters), the exact types and reprs of results, and our modules in sys.modules.
Needs LLM_URL (tests/llm_server.py) for the SDK sections. Arguments name the sections
to run (default: all); ``stdlib`` runs those that need only the standard library.
"""

from __future__ import annotations

import _thread
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from typing import Any

results: dict[str, Any] = {}
START_COUNT = _thread._count()


def _addresses(text: str) -> str:
    return re.sub(r"0x[0-9a-f]+", "0x?", text)


def _threads() -> list[Any]:
    return [
        sorted(t.name for t in threading.enumerate()),
        threading.active_count(),
        len(threading._dangling),  # type: ignore[attr-defined]
    ]


def _count_back(within: float = 0.5) -> bool:
    """True once _thread._count() is back at its start value (regrtest waits 1 s)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _thread._count() <= START_COUNT:
            return True
        time.sleep(0.005)
    return _thread._count() <= START_COUNT


def threads() -> None:
    child = subprocess.Popen(["sleep", "0.3"])  # nobody waits on it for a while
    time.sleep(0.05)
    during = _threads()
    child.wait()
    subprocess.run(["true"])
    results["threads"] = {"during": during, "after": _threads(), "count back": _count_back()}


def fork_while_actions_are_open() -> None:
    child = subprocess.Popen(["sleep", "0.3"])
    time.sleep(0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pid = os.fork()
        if pid == 0:  # the child works on, tracing included
            code = subprocess.run(["true"]).returncode
            os._exit(code)
        _, status = os.waitpid(pid, 0)
    child.wait()
    results["fork"] = {
        "warnings": [
            [w.category.__name__, re.sub(r"pid=\d+", "pid=N", str(w.message))] for w in caught
        ],
        "child exit status": os.waitstatus_to_exitcode(status),
        "threads after": _threads(),
        "count back": _count_back(),
    }


ENCODING_CODE = """from subprocess import *
run("echo hello", shell=True, text=True, stdout=DEVNULL)
check_output("echo hello", shell=True, text=True)
"""


def encoding_warning() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "warn_default_encoding", "-c", ENCODING_CODE],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    results["EncodingWarning"] = [done.returncode, done.stderr.splitlines()]


DEPRECATED_MODEL_SCRIPT = """import anthropic, os, anthropic._data
model = next(iter(anthropic._data.DEPRECATED_MODELS))
client = anthropic.Anthropic(base_url=os.environ["LLM_URL"], api_key="sk-ant-x", max_retries=0)
reply = client.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
print(type(reply).__name__)
"""


def deprecated_model_warning() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "script.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(DEPRECATED_MODEL_SCRIPT)
        done = subprocess.run(
            [sys.executable, script], capture_output=True, text=True, encoding="utf-8"
        )
    lines = [line.replace(tmp, "TMP") for line in done.stderr.splitlines()]
    results["DeprecationWarning for __main__"] = [done.returncode, done.stdout, lines]


def exact_types() -> None:
    import anthropic
    import openai
    from anthropic.lib.streaming import MessageStream, MessageStreamManager

    base = os.environ["LLM_URL"]
    messages = [{"role": "user", "content": "hi"}]
    seen: dict[str, Any] = {}
    client = openai.OpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0)
    stream = client.chat.completions.create(model="m", messages=messages, stream=True)
    iterator = iter(stream)
    seen["openai stream"] = [
        type(stream) is openai.Stream,
        _addresses(repr(stream)),
        type(iterator).__name__,
        _addresses(repr(iterator)),
        sorted(vars(stream)),
    ]
    "".join(c.choices[0].delta.content or "" for c in iterator if c.choices)

    async def async_stream() -> list[Any]:
        aclient = openai.AsyncOpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0)
        s = await aclient.chat.completions.create(model="m", messages=messages, stream=True)
        out = [type(s) is openai.AsyncStream, _addresses(repr(s)), _addresses(repr(s.__aiter__()))]
        async for _ in s:
            pass
        await s.close()
        return out

    seen["openai async stream"] = asyncio.run(async_stream())
    aclient = anthropic.Anthropic(base_url=base, api_key="sk-ant-x", max_retries=0)
    args: dict[str, Any] = {"model": "c", "max_tokens": 10, "messages": messages}
    raw = aclient.messages.create(**args, stream=True)
    seen["anthropic stream"] = [type(raw) is anthropic.Stream, _addresses(repr(raw))]
    for _ in raw:
        pass
    manager = aclient.messages.stream(**args)
    with manager as s:
        seen["anthropic stream manager"] = [
            type(manager) is MessageStreamManager,
            type(s) is MessageStream,
            _addresses(repr(manager)),
            _addresses(repr(s)),
            type(s._raw_stream) is anthropic.Stream,
        ]
        "".join(s.text_stream)
    popen = subprocess.Popen(["true"])
    popen.wait()
    seen["Popen"] = [type(popen) is subprocess.Popen, _addresses(repr(popen))]
    results["exact types"] = seen


def modules() -> None:
    site = sys.modules.get("sitecustomize")
    results["modules"] = {
        "sitecustomize": getattr(site, "__file__", None),
        "_autotrace_boot": "_autotrace_boot" in sys.modules,
        "top-level patches": "patches" in sys.modules,
    }


STDLIB = [modules, threads, fork_while_actions_are_open, encoding_warning]
SECTIONS = [*STDLIB, deprecated_model_warning, exact_types]


def main(names: list[str]) -> None:
    chosen = STDLIB if names == ["stdlib"] else [f for f in SECTIONS if f.__name__ in names]
    for section in chosen or SECTIONS:
        section()
    json.dump(results, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
