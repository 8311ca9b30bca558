"""The same calls through every patched library, described as JSON (results, exceptions,
warnings, types, async-ness, stream and context-manager behaviour, pickling).

The behaviour suite runs this plain and under ``inspect-trace run`` and compares the two
outputs: they must be identical. Needs LLM_URL, the AWS endpoint variables and
CLOSED_URL (a local address where nothing listens).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import pickle
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

results: dict[str, Any] = {}


def _exc(exc: BaseException) -> dict[str, Any]:
    chain = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 5:
        chain.append(f"{type(seen).__module__}.{type(seen).__qualname__}")
        seen = seen.__cause__ or seen.__context__
    try:
        back = pickle.loads(pickle.dumps(exc))
        pickled = [type(back).__qualname__, str(back) == str(exc)]
    except Exception as pickling:
        pickled = ["fails", type(pickling).__name__]
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        # run() reports the time its timeout really took: differs between any two runs.
        "message": re.sub(r"after [0-9.]+ seconds", "after N seconds", str(exc)),
        "cause": None if exc.__cause__ is None else type(exc.__cause__).__qualname__,
        "suppress_context": exc.__suppress_context__,
        "chain": chain,
        "pickle": pickled,
    }


def record(name: str, fn: Callable[[], Any]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome: Any = ["ok", fn()]
        except Exception as exc:
            outcome = ["raised", _exc(exc)]
    shown = [
        [w.category.__name__, str(w.message), os.path.basename(w.filename), w.lineno]
        for w in caught
        if "autotrace" not in str(w.message)
    ]
    results[name] = {"outcome": outcome, "warnings": shown}


def _pickles(obj: Any) -> Any:
    try:
        return type(pickle.loads(pickle.dumps(obj))).__qualname__
    except Exception as exc:
        return f"fails: {type(exc).__name__}"


# -- subprocess ----------------------------------------------------------------------


def popen_line_buffered_binary() -> Any:
    # Popen warns (stacklevel 2: the caller's line) that bufsize=1 needs text mode.
    p = subprocess.Popen([sys.executable, "-c", "pass"], bufsize=1, stdout=subprocess.PIPE)
    out, _ = p.communicate()
    return [out, p.returncode, type(p).__qualname__, isinstance(p, subprocess.Popen)]


def run_check_fails() -> Any:
    return subprocess.run(["sh", "-c", "echo no >&2; exit 3"], check=True, capture_output=True)


def run_missing_program() -> Any:
    return subprocess.run(["/nonexistent/program", "x"])


def run_timeout() -> Any:
    return subprocess.run(["sleep", "5"], timeout=0.2)


def completed_process() -> Any:
    done = subprocess.run(["sh", "-c", "echo hi"], capture_output=True, text=True)
    back = pickle.loads(pickle.dumps(done))
    return [done.stdout, done.returncode, back.stdout, repr(done)]


def popen_context_manager() -> Any:
    with subprocess.Popen(["sh", "-c", "exit 4"]) as p:
        pass
    return [p.returncode, inspect.ismethod(p.wait), list(inspect.signature(p.wait).parameters)]


# -- openai / anthropic -------------------------------------------------------------


def openai_calls() -> None:
    import openai

    base = os.environ["LLM_URL"]
    messages = [{"role": "user", "content": "hi"}]
    client = openai.OpenAI(base_url=base + "/v1", api_key="sk-test-key-0000000000", max_retries=0)

    def create() -> Any:
        reply = client.chat.completions.create(model="m", messages=messages)
        return [
            type(reply).__qualname__,
            isinstance(reply, openai.types.chat.ChatCompletion),
            reply.choices[0].message.content,
            _pickles(reply),
        ]

    def error() -> Any:
        return client.chat.completions.create(model="m", messages=messages)

    def stream() -> Any:
        with client.chat.completions.create(model="m", messages=messages, stream=True) as s:
            # type(), not __class__: the agent gives back the SDK's own stream object.
            kind = [type(s).__qualname__, type(s) is openai.Stream, isinstance(s, openai.Stream)]
            iterator = iter(s)
            text = "".join(c.choices[0].delta.content or "" for c in iterator if c.choices)
        return [*kind, text, s.response.is_closed, inspect.isgenerator(iterator)]

    def connection_error() -> Any:
        closed = openai.OpenAI(base_url=os.environ["CLOSED_URL"], api_key="sk-x", max_retries=0)
        return closed.chat.completions.create(model="m", messages=messages)

    def async_create() -> Any:
        aclient = openai.AsyncOpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0)
        method = aclient.chat.completions.create
        coro = method(model="m", messages=messages)
        kinds = [inspect.iscoroutinefunction(method), inspect.iscoroutine(coro)]
        reply = asyncio.run(coro)
        return [*kinds, type(reply).__qualname__]

    record("openai create", create)
    record("openai error 500", error)
    record("openai stream", stream)
    record("openai connection error", connection_error)
    record("openai async create", async_create)


def anthropic_calls() -> None:
    import anthropic

    base = os.environ["LLM_URL"]
    messages = [{"role": "user", "content": "hi"}]
    client = anthropic.Anthropic(base_url=base, api_key="sk-ant-test-000000", max_retries=0)
    args: dict[str, Any] = {"model": "c", "max_tokens": 10, "messages": messages}

    def create() -> Any:
        reply = client.messages.create(**args)
        return [type(reply).__qualname__, reply.content[0].text, _pickles(reply)]

    def error() -> Any:
        return client.messages.create(**args)

    def stream() -> Any:
        from anthropic.lib.streaming import MessageStream, MessageStreamManager

        manager = client.messages.stream(**args)
        with manager as s:
            kind = [
                type(manager).__qualname__,
                type(s).__qualname__,
                isinstance(manager, MessageStreamManager),
                isinstance(s, MessageStream),
            ]
            text = "".join(s.text_stream)
        return [*kind, text]

    def async_stream() -> Any:
        aclient = anthropic.AsyncAnthropic(base_url=base, api_key="sk-ant-t", max_retries=0)

        async def go() -> Any:
            manager = aclient.messages.stream(**args)
            async with manager as s:
                text = "".join([t async for t in s.text_stream])
            return [
                type(manager).__qualname__,
                inspect.iscoroutinefunction(aclient.messages.create),
                text,
            ]

        return asyncio.run(go())

    record("anthropic create", create)
    record("anthropic error 400", error)
    record("anthropic stream", stream)
    record("anthropic async stream", async_stream)


# -- boto3 -------------------------------------------------------------------------


def s3_calls() -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3")

    def put() -> Any:
        client.create_bucket(Bucket="behaviour-bucket")
        reply = client.put_object(Bucket="behaviour-bucket", Key="k", Body=b"data")
        return [sorted(k for k in reply if k != "ResponseMetadata"), reply["ETag"]]

    def missing_bucket() -> Any:
        return client.put_object(Bucket="no-such-behaviour-bucket", Key="k", Body=b"x")

    def unreachable() -> Any:
        closed = boto3.client(
            "s3",
            endpoint_url=os.environ["CLOSED_URL"],
            config=Config(retries={"max_attempts": 1}, connect_timeout=1),
        )
        return closed.put_object(Bucket="b", Key="k", Body=b"x")

    def upload_fileobj() -> Any:
        import io

        return client.upload_fileobj(io.BytesIO(b"x" * 1000), "behaviour-bucket", "f")

    record("s3 put_object", put)
    record("s3 missing bucket", missing_bucket)
    record("s3 unreachable endpoint", unreachable)
    record("s3 upload_fileobj", upload_fileobj)


# -- inspect_ai -----------------------------------------------------------------------


def inspect_calls() -> None:
    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    def generate() -> Any:
        output = ModelOutput.from_content("mockllm/model", "mock reply")
        output.usage = ModelUsage(input_tokens=1, output_tokens=2, total_tokens=3)
        model = get_model("mockllm/model", custom_outputs=[output])
        reply = asyncio.run(model.generate("hi"))
        return [
            type(reply).__qualname__,
            reply.completion,
            inspect.iscoroutinefunction(model.generate),
            _pickles(reply),
        ]

    def generate_error() -> Any:
        def outputs() -> Any:
            raise ValueError("the mock model broke")
            yield  # a generator

        model = get_model("mockllm/model", custom_outputs=outputs())
        return asyncio.run(model.generate("hi"))

    record("inspect generate", generate)
    record("inspect generate error", generate_error)


def main() -> None:
    record("popen bufsize=1 binary", popen_line_buffered_binary)
    record("run check fails", run_check_fails)
    record("run missing program", run_missing_program)
    record("run timeout", run_timeout)
    record("completed process", completed_process)
    record("popen context manager", popen_context_manager)
    openai_calls()
    anthropic_calls()
    s3_calls()
    inspect_calls()
    json.dump(results, sys.stdout, indent=1, default=repr, sort_keys=True)


if __name__ == "__main__":
    main()
