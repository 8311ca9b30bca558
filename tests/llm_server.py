"""A scriptable local LLM API server for tests (stdlib only: ``http.server``).

Speaks enough of the OpenAI API (``POST /v1/chat/completions``, ``/v1/responses``,
``/v1/completions``, ``/v1/embeddings``; ``stream: true`` as server-sent events) and
of the Anthropic API (``POST /v1/messages``, plain and streamed) for the real SDKs
and inspect's ``openai`` provider to work against it. It binds 127.0.0.1 on a free
port. Point clients at ``server.openai_url`` (``.../v1``) or ``server.anthropic_url``.

Each request takes the next *step* of the script (a list of dicts, used in order of
arrival whatever the endpoint); when the script is used up, ``default`` is used.
A step is ``{"do": <behaviour>, ...options}``:

- ``"reply"`` (default): a normal answer, streamed when the request asks for it.
  Options: ``"text"`` (the answer), ``"tool_calls"`` (a list of
  ``{"name": ..., "arguments": {...}, "id": optional}``; the reply then asks for those
  tool calls: OpenAI ``tool_calls`` / ``function_call`` items, Anthropic ``tool_use``),
  ``"delay"`` (seconds to wait before answering; ends early when the server stops).
- ``"hang"``: read the request and never answer, until the server stops.
- ``"stall"``: stream ``"chunks"`` events (default 1), then hang until the server stops
  (a non-streaming request just hangs).
- ``"stream_error"``: stream ``"chunks"`` events, then an API error event in the
  provider's format (the SDKs raise ``APIError``); a non-streaming request gets a 500.
- ``"drop"``: stream ``"chunks"`` events, then close the connection in the middle of
  the chunked body (the client sees a protocol error).
- ``"error"``: answer with HTTP ``"status"`` (default 500) and an error body in the
  provider's format, ``"message"`` optional.
- ``"times": N`` on any step repeats it for N requests.
- ``"until_tool_result": true`` on a step with ``"tool_calls"``: a request that already
  carries a tool result (an agent loop's second turn) gets the plain answer instead, so
  one default step serves many concurrent samples (benchmarks/bench_eval.py).

Every response that carries an answer includes ``usage`` (inspect needs it).

In a test, the ``llm`` fixture of tests/conftest.py gives a started server (on
127.0.0.1, stopped after the test)::

    def test_x(llm):
        llm.script([{"do": "hang"}])
        client = openai.OpenAI(base_url=llm.openai_url, api_key="sk-test", max_retries=0)
        ...
        llm.wait_hanging(1)      # a request is now held by the server

(or ``from llm_server import llm_server`` to use the ready-made fixture of that name.)

As a process (for a traced ``inspect eval`` subprocess)::

    python tests/llm_server.py --port-file PORT --script '[{"do": "reply"}, {"do": "hang"}]' \\
        [--default '{"do": "reply"}'] [--requests-log requests.jsonl]

writes the port number to ``PORT`` once listening (atomically: wait for the file to
exist), appends one JSON line per request to ``--requests-log`` (path, model, stream,
behaviour), and runs until SIGTERM or SIGINT. ``--script`` takes JSON or a file path.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_TEXT = "Hello! This is the local test model."

Step = dict[str, Any]


class _StopServing(Exception):
    """The server is stopping: leave the request without answering."""


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients hanging up are normal here
            super().handle_error(request, client_address)


class LLMServer:
    """The server: ``start()``, ``script(steps)``, ``requests``, ``wait_*()``, ``stop()``."""

    def __init__(self, steps: list[Step] | None = None, default: Step | None = None) -> None:
        self._lock = threading.Condition()
        self._steps: list[Step] = []
        self.default: Step = dict(default or {"do": "reply"})
        self.requests: list[dict[str, Any]] = []
        self.hanging = 0  # requests currently held (hang / stall), for wait_hanging
        self.stopping = threading.Event()
        self.requests_log: Path | None = None
        self._connections: set[socket.socket] = set()
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if steps:
            self.script(steps)

    # -- control -------------------------------------------------------------------

    def start(self) -> LLMServer:
        """Listen on 127.0.0.1 (a free port) and serve in a daemon thread."""
        handler = type("Handler", (_Handler,), {"llm": self})
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="llm-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests held by hang / stall end with their connection closed."""
        self.stopping.set()
        with self._lock:
            self._lock.notify_all()
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """``base_url`` for ``openai.OpenAI`` / ``OPENAI_BASE_URL``."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_url(self) -> str:
        """``base_url`` for ``anthropic.Anthropic`` (the SDK adds ``/v1/messages``)."""
        return self.base_url

    def script(self, steps: list[Step], default: Step | None = None) -> None:
        """Replace the remaining steps (and optionally the default step)."""
        expanded: list[Step] = []
        for step in steps:
            expanded.extend([dict(step)] * int(step.get("times", 1)))
        with self._lock:
            self._steps = expanded
            if default is not None:
                self.default = dict(default)

    def wait_requests(self, count: int, timeout: float = 10.0) -> None:
        """Block until at least ``count`` requests have arrived (AssertionError on timeout)."""
        self._wait(lambda: len(self.requests) >= count, timeout, f"{count} requests")

    def wait_hanging(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block until ``count`` requests are held by a hang or stall step."""
        self._wait(lambda: self.hanging >= count, timeout, f"{count} hanging requests")

    def _wait(self, ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"llm_server: timed out waiting for {what}")
                self._lock.wait(left)

    # -- used by the handler ---------------------------------------------------------

    def _next_step(self, record: dict[str, Any]) -> Step:
        with self._lock:
            step = self._steps.pop(0) if self._steps else dict(self.default)
            if step.get("until_tool_result") and record.get("tool_result"):
                step = {k: v for k, v in step.items() if k != "tool_calls"}
            record["behaviour"] = step.get("do", "reply")
            self.requests.append(record)
            self._lock.notify_all()
        if self.requests_log is not None:
            with open(self.requests_log, "a") as f:
                f.write(json.dumps(record) + "\n")
        return step

    def _hold(self, seconds: float | None = None) -> None:
        """Wait until the server stops (or ``seconds`` pass); raise _StopServing on stop."""
        with self._lock:
            self.hanging += 1
            self._lock.notify_all()
        try:
            if self.stopping.wait(seconds):
                raise _StopServing()
        finally:
            with self._lock:
                self.hanging -= 1
                self._lock.notify_all()

    def _delay(self, seconds: float) -> None:
        if seconds and self.stopping.wait(seconds):
            raise _StopServing()

    def new_id(self) -> int:
        return next(self._ids)


# -- response bodies ---------------------------------------------------------------------


def _has_tool_result(body: dict[str, Any]) -> bool:
    """Whether a request carries a tool's result (chat, responses or messages API)."""
    for item in list(body.get("messages") or []) + list(body.get("input") or []):
        if not isinstance(item, dict):
            continue
        if item.get("role") == "tool" or item.get("type") == "function_call_output":
            return True
        content = item.get("content")
        if isinstance(content, list) and any(
            isinstance(c, dict) and c.get("type") == "tool_result" for c in content
        ):
            return True
    return False


def _tool_calls(step: Step, n: int) -> list[dict[str, Any]]:
    calls = []
    for i, call in enumerate(step.get("tool_calls") or []):
        calls.append(
            {
                "id": call.get("id") or f"call_{n}_{i}",
                "name": call["name"],
                "arguments": json.dumps(call.get("arguments") or {}),
                "input": call.get("arguments") or {},
            }
        )
    return calls


def _text(step: Step, body: dict[str, Any]) -> str:
    return str(step.get("text", DEFAULT_TEXT))


def _pieces(text: str) -> list[str]:
    """The text in stream-sized pieces (words with their spaces), never empty."""
    words = text.split(" ")
    pieces = [w + " " for w in words[:-1]] + [words[-1]]
    return [p for p in pieces if p] or [""]


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _prompt_tokens(body: dict[str, Any]) -> int:
    return max(
        1,
        len(json.dumps(body.get("messages") or body.get("input") or body.get("prompt") or "")) // 4,
    )


class _Handler(BaseHTTPRequestHandler):
    llm: LLMServer
    protocol_version = "HTTP/1.1"  # chunked streams, so a dropped stream is an error

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet in tests

    def setup(self) -> None:
        super().setup()
        with self.llm._lock:
            self.llm._connections.add(self.connection)

    def finish(self) -> None:
        with self.llm._lock:
            self.llm._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # -- plumbing --------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": []})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        path = self.path.split("?", 1)[0].rstrip("/")
        anthropic = path.endswith("/messages")
        record = {
            "path": path,
            "model": body.get("model"),
            "stream": bool(body.get("stream")),
            "time": time.time(),
            "tool_result": _has_tool_result(body),
        }
        step = self.llm._next_step(record)
        self._body = body
        self._anthropic = anthropic
        try:
            self._serve(path, body, step)
        except _StopServing:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    def _serve(self, path: str, body: dict[str, Any], step: Step) -> None:
        do = step.get("do", "reply")
        stream = bool(body.get("stream"))
        if do == "hang" or (do == "stall" and not stream):
            self.llm._hold()
            return
        if do == "error" or (do == "stream_error" and not stream):
            self._error(int(step.get("status", 500)), step.get("message", "test server error"))
            return
        self.llm._delay(float(step.get("delay", 0)))
        n = self.llm.new_id()
        if path.endswith("/chat/completions"):
            events = _chat(body, step, n, stream)
        elif path.endswith("/responses"):
            events = _responses(body, step, n, stream)
        elif path.endswith("/completions"):
            events = _completions(body, step, n, stream)
        elif path.endswith("/embeddings"):
            self._json(200, _embeddings(body))
            return
        elif path.endswith("/messages"):
            events = _messages(body, step, n, stream)
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        if not stream:
            self._json(200, next(events)[1])
            return
        self._stream(events, step)

    def _stream(self, events: Iterator[tuple[str | None, Any]], step: Step) -> None:
        do = step.get("do", "reply")
        limit = int(step.get("chunks", 1)) if do in ("stall", "stream_error", "drop") else None
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        for event, data in events:
            if limit is not None and sent >= limit:
                break
            self._chunk(_sse(event, data))
            sent += 1
        if do == "stall":
            self.llm._hold()
            return
        if do == "drop":
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if do == "stream_error":
            message = step.get("message", "test server error mid-stream")
            if self._anthropic:
                err = {"type": "error", "error": {"type": "api_error", "message": message}}
                self._chunk(_sse("error", err))
            else:
                self._chunk(_sse(None, {"error": {"message": message, "type": "server_error"}}))
        self._chunk(b"")  # last chunk

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _error(self, status: int, message: str) -> None:
        if self._anthropic:
            kind = {429: "rate_limit_error", 400: "invalid_request_error"}.get(status, "api_error")
            payload: Any = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            payload = {"error": {"message": message, "type": "server_error", "code": None}}
        self._json(status, payload)


def _sse(event: str | None, data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


# Each builder yields (sse_event_name, payload): the first item is the whole answer
# when not streaming; when streaming, the items are the events in order.


def _chat(
    body: dict[str, Any], step: Step, n: int, stream: bool
) -> Iterator[tuple[str | None, Any]]:
    model, text, calls = body.get("model", "test"), _text(step, body), _tool_calls(step, n)
    created = int(time.time())
    usage = {
        "prompt_tokens": _prompt_tokens(body),
        "completion_tokens": _tokens(text),
        "total_tokens": _prompt_tokens(body) + _tokens(text),
    }
    finish = "tool_calls" if calls else "stop"
    openai_calls = [
        {
            "id": c["id"],
            "type": "function",
            "function": {"name": c["name"], "arguments": c["arguments"]},
        }
        for c in calls
    ]
    base = {"id": f"chatcmpl-{n}", "created": created, "model": model}
    if not stream:
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else text}
        if calls:
            message["tool_calls"] = openai_calls
        yield (
            None,
            {
                **base,
                "object": "chat.completion",
                "choices": [
                    {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                ],
                "usage": usage,
            },
        )
        return
    chunk = {**base, "object": "chat.completion.chunk"}

    def delta(d: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            **chunk,
            "choices": [{"index": 0, "delta": d, "finish_reason": finish_reason, "logprobs": None}],
        }

    yield None, delta({"role": "assistant", "content": ""})
    if calls:
        for i, call in enumerate(openai_calls):
            yield None, delta({"tool_calls": [{"index": i, **call}]})
    else:
        for piece in _pieces(text):
            yield None, delta({"content": piece})
    yield None, delta({}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        yield None, {**chunk, "choices": [], "usage": usage}
    yield None, "[DONE]"


def _response_object(
    body: dict[str, Any], n: int, status: str, output: list[Any], text: str
) -> dict[str, Any]:
    prompt = _prompt_tokens(body)
    return {
        "id": f"resp_{n}",
        "object": "response",
        "created_at": int(time.time()),
        "model": body.get("model", "test"),
        "status": status,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "temperature": None,
        "top_p": None,
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": _tokens(text),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + _tokens(text),
        },
    }


def _responses(
    body: dict[str, Any], step: Step, n: int, stream: bool
) -> Iterator[tuple[str | None, Any]]:
    text, calls = _text(step, body), _tool_calls(step, n)
    if calls:
        output = [
            {
                "type": "function_call",
                "id": f"fc_{n}_{i}",
                "call_id": c["id"],
                "name": c["name"],
                "arguments": c["arguments"],
                "status": "completed",
            }
            for i, c in enumerate(calls)
        ]
    else:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        output = [
            {
                "type": "message",
                "id": f"msg_{n}",
                "role": "assistant",
                "status": "completed",
                "content": [part],
            }
        ]
    done = _response_object(body, n, "completed", output, text)
    if not stream:
        yield None, done
        return
    seq = itertools.count()

    def event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **fields}

    yield event("response.created", response=_response_object(body, n, "in_progress", [], ""))
    yield event("response.in_progress", response=_response_object(body, n, "in_progress", [], ""))
    for index, item in enumerate(output):
        if item["type"] == "function_call":
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "arguments": "", "status": "in_progress"},
            )
            yield event(
                "response.function_call_arguments.delta",
                output_index=index,
                item_id=item["id"],
                delta=item["arguments"],
            )
            yield event(
                "response.function_call_arguments.done",
                output_index=index,
                item_id=item["id"],
                arguments=item["arguments"],
            )
            yield event("response.output_item.done", output_index=index, item=item)
            continue
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield event(
            "response.output_item.added",
            output_index=index,
            item={**item, "content": [], "status": "in_progress"},
        )
        yield event(
            "response.content_part.added",
            output_index=index,
            item_id=item["id"],
            content_index=0,
            part=empty,
        )
        for piece in _pieces(text):
            yield event(
                "response.output_text.delta",
                output_index=index,
                item_id=item["id"],
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        yield event(
            "response.output_text.done",
            output_index=index,
            item_id=item["id"],
            content_index=0,
            text=text,
            logprobs=[],
        )
        yield event(
            "response.content_part.done",
            output_index=index,
            item_id=item["id"],
            content_index=0,
            part=item["content"][0],
        )
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.completed", response=done)


def _completions(
    body: dict[str, Any], step: Step, n: int, stream: bool
) -> Iterator[tuple[str | None, Any]]:
    text = _text(step, body)
    base = {
        "id": f"cmpl-{n}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model", "test"),
    }
    usage = {
        "prompt_tokens": _prompt_tokens(body),
        "completion_tokens": _tokens(text),
        "total_tokens": _prompt_tokens(body) + _tokens(text),
    }
    if not stream:
        yield (
            None,
            {
                **base,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
                "usage": usage,
            },
        )
        return
    pieces = _pieces(text)
    for i, piece in enumerate(pieces):
        finish = "stop" if i == len(pieces) - 1 else None
        yield (
            None,
            {
                **base,
                "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}],
            },
        )
    yield None, "[DONE]"


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    dims = int(body.get("dimensions") or 4)
    data = []
    for i, item in enumerate(inputs):
        vector = [round(((len(str(item)) + i + k) % 7) / 7, 4) for k in range(dims)]
        if body.get("encoding_format") == "base64":
            embedding: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        else:
            embedding = vector
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(_tokens(str(item)) for item in inputs)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", "test"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _messages(
    body: dict[str, Any], step: Step, n: int, stream: bool
) -> Iterator[tuple[str | None, Any]]:
    text, calls = _text(step, body), _tool_calls(step, n)
    content: list[dict[str, Any]] = (
        [
            {
                "type": "tool_use",
                "id": c["id"].replace("call_", "toolu_"),
                "name": c["name"],
                "input": c["input"],
            }
            for c in calls
        ]
        if calls
        else [{"type": "text", "text": text}]
    )
    stop = "tool_use" if calls else "end_turn"
    usage = {"input_tokens": _prompt_tokens(body), "output_tokens": _tokens(text)}
    message = {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "test"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    if not stream:
        yield None, message
        return
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(content):
        if block["type"] == "tool_use":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**block, "input": {}},
                },
            )
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            yield (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        else:
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for piece in _pieces(block["text"]):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


# -- standalone process ------------------------------------------------------------


def _load_json(value: str | None) -> Any:
    if value is None:
        return None
    path = Path(value)
    if not value.lstrip().startswith(("[", "{")) and path.exists():
        value = path.read_text()
    return json.loads(value)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM / SIGINT; write the port to --port-file once listening."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True, help="file that receives the port number")
    parser.add_argument("--script", help="JSON list of steps, or a file holding it")
    parser.add_argument(
        "--default", help='JSON step used once the script is exhausted (default {"do": "reply"})'
    )
    parser.add_argument("--requests-log", help="append one JSON line per request to this file")
    args = parser.parse_args(argv)
    server = LLMServer(_load_json(args.script) or [], _load_json(args.default))
    if args.requests_log:
        server.requests_log = Path(args.requests_log)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    server.start()
    port_file = Path(args.port_file)
    tmp = port_file.with_name(port_file.name + ".tmp")
    tmp.write_text(str(server.port))
    os.replace(tmp, port_file)
    while not done.wait(0.5):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
