"""anthropic: ``messages.create`` / ``parse`` / ``stream`` (and ``beta.messages``) are ``Model`` actions.

Sync and async resource classes are wrapped by dotted path. ``create(stream=True)``
lasts until its stream ends; ``with client.messages.stream(...) as s`` starts the
action when the block is entered (that is when the request is sent) and ends it when
the stream is exhausted, closed or collected (autotrace.runtime.streams). The SDK's stream and
stream-manager classes are wrapped too, so the program gets the SDK's own objects back,
not proxies. A call made inside
inspect's ``Model.generate`` is the same work and passes through.
"""

from __future__ import annotations

from typing import Any

from autotrace.patches._model import begin_model_action, model_action_skipped
from autotrace.patches._streams import entered_rows, stream_rows
from autotrace.runtime import streams
from autotrace.runtime.actions import OpenAction
from autotrace.startup.patching import Patch, Wrap


def _begin(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> OpenAction | None:
    return begin_model_action(PATCH, "anthropic", kwargs.get("model"))


def _stream_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    from anthropic import AsyncStream, Stream

    return (Stream,), (AsyncStream,)


def _skipped() -> bool:
    return model_action_skipped(PATCH)


_sync_call, _async_call = streams.call_wrappers(_begin, _stream_types, _skipped)


def _attach(message_stream: Any, span: OpenAction) -> Any:
    """Follow the raw SSE stream the helper reads, so its end (or close) ends the action."""
    raw = getattr(message_stream, "_raw_stream", None)
    sync_types, async_types = _stream_types()
    if isinstance(raw, sync_types + async_types) and not streams.is_followed(raw):
        followed = streams.follow(raw, span, is_async=isinstance(raw, async_types))
        if followed is not raw:  # a proxy (the stream class is not wrapped in this release)
            message_stream._raw_stream = followed
        return message_stream
    return streams.follow(message_stream, span)


def _stream_helper(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    manager = wrapped(*args, **kwargs)
    if not PATCH.enabled:
        return manager
    return streams.entered(manager, begin=lambda: _begin(instance, args, kwargs), attach=_attach)


def _messages(module: str, optional: bool = False) -> list[Wrap]:
    rows = []
    for method in ("create", "parse"):
        required = method == "create" and not optional  # parse came later
        rows.append(Wrap(module, f"Messages.{method}", wrapper=_sync_call, optional=not required))
        rows.append(
            Wrap(module, f"AsyncMessages.{method}", wrapper=_async_call, optional=not required)
        )
    # .stream() is a plain method in both classes: it returns a (async) context manager.
    rows.append(Wrap(module, "Messages.stream", wrapper=_stream_helper, optional=True))
    rows.append(Wrap(module, "AsyncMessages.stream", wrapper=_stream_helper, optional=True))
    return rows


# Older releases define Messages in the package module one level up: those rows cover
# them (for newer ones they name the same class, which is wrapped once).
PATCH = Patch(
    name="anthropic",
    description="anthropic messages calls (create, parse, stream; beta too) as Model actions",
    wraps=[
        *stream_rows("anthropic._streaming", "Stream", "AsyncStream"),
        *entered_rows(
            "anthropic.lib.streaming._messages", "MessageStreamManager", "AsyncMessageStreamManager"
        ),
        *entered_rows(
            "anthropic.lib.streaming._beta_messages",
            "BetaMessageStreamManager",
            "BetaAsyncMessageStreamManager",
        ),
        *_messages("anthropic.resources.messages.messages"),
        *_messages("anthropic.resources.beta.messages.messages", optional=True),
        *_messages("anthropic.resources.messages", optional=True),
        *_messages("anthropic.resources.beta.messages", optional=True),
    ],
)
