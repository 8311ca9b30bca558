"""openai: chat completions, responses (beta too), completions and embeddings are ``Model`` actions.

Sync and async resource classes are wrapped by dotted path. A streamed call
(``stream=True``, ``.stream()``) lasts until its stream ends (autotrace.runtime.streams): the
SDK's ``Stream`` / ``AsyncStream`` classes are wrapped too, so the program gets the
SDK's own stream object back, not a proxy. A
call made inside inspect's ``Model.generate`` is the same work and passes through.
"""

from __future__ import annotations

from typing import Any

from autotrace.patches._model import begin_model_action, model_action_skipped
from autotrace.patches._streams import stream_rows
from autotrace.runtime import streams
from autotrace.runtime.actions import OpenAction
from autotrace.startup.patching import Patch, Wrap


def _begin(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> OpenAction | None:
    return begin_model_action(PATCH, "openai", kwargs.get("model"))


def _stream_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    from openai import AsyncStream, Stream

    return (Stream,), (AsyncStream,)


def _skipped() -> bool:
    return model_action_skipped(PATCH)


_sync_call, _async_call = streams.call_wrappers(_begin, _stream_types, _skipped)


def _helper_closed(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # The .stream() helpers close the HTTP response directly, past our stream proxy.
    try:
        return wrapped(*args, **kwargs)
    finally:
        streams.finish(getattr(instance, "_raw_stream", None))


async def _helper_aclosed(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        streams.finish(getattr(instance, "_raw_stream", None))


def _calls(
    module: str, sync_class: str, async_class: str, *methods: str, optional: bool = True
) -> list[Wrap]:
    rows = []
    for method in methods:
        rows.append(Wrap(module, f"{sync_class}.{method}", wrapper=_sync_call, optional=optional))
        rows.append(Wrap(module, f"{async_class}.{method}", wrapper=_async_call, optional=optional))
    return rows


_CHAT = "openai.resources.chat.completions.completions"
_RESPONSES = "openai.resources.responses.responses"
_BETA_RESPONSES = "openai.resources.beta.responses.responses"
_CHAT_STREAM = "openai.lib.streaming.chat._completions"
_RESPONSE_STREAM = "openai.lib.streaming.responses._responses"

# Rows are optional (methods come and go across releases) but chat completions' create.
# Releases before 1.60 define chat completions in the module one level up: the second
# row set covers them (for newer ones it names the same class, which is wrapped once).
PATCH = Patch(
    name="openai",
    description="openai client calls (chat, responses, completions, embeddings) as Model actions",
    wraps=[
        *_calls(_CHAT, "Completions", "AsyncCompletions", "create", optional=False),
        *_calls(_CHAT, "Completions", "AsyncCompletions", "parse"),
        *_calls(
            "openai.resources.chat.completions",
            "Completions",
            "AsyncCompletions",
            "create",
            "parse",
        ),
        *_calls(_RESPONSES, "Responses", "AsyncResponses", "create", "parse"),
        *_calls(_BETA_RESPONSES, "Responses", "AsyncResponses", "create"),
        *_calls("openai.resources.completions", "Completions", "AsyncCompletions", "create"),
        *_calls("openai.resources.embeddings", "Embeddings", "AsyncEmbeddings", "create"),
        *stream_rows("openai._streaming", "Stream", "AsyncStream"),
        Wrap(_CHAT_STREAM, "ChatCompletionStream.close", wrapper=_helper_closed, optional=True),
        Wrap(
            _CHAT_STREAM, "AsyncChatCompletionStream.close", wrapper=_helper_aclosed, optional=True
        ),
        Wrap(_RESPONSE_STREAM, "ResponseStream.close", wrapper=_helper_closed, optional=True),
        Wrap(_RESPONSE_STREAM, "AsyncResponseStream.close", wrapper=_helper_aclosed, optional=True),
    ],
)
