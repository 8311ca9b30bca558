"""s3fs writes: one ``S3`` action per pipe / put / copy / rm, and per file opened for writing.

s3fs runs its coroutines on fsspec's own event-loop thread; the sync API hops there
through ``fsspec.asyn.sync``, where the caller's contextvars do not follow. The
wrapper on ``sync`` hands the caller's current action to the coroutine explicitly,
so the s3fs action (and the aiobotocore ``S3`` calls inside it) nest under whatever
the caller was doing. ``open(path, "wb")`` is one action from the open to ``close()``
(where the upload is committed); its part uploads, made by ``write``/``flush``,
nest under it.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from autotrace import records
from autotrace.patches._s3 import arg, body_size, fs_url, human_size
from autotrace.runtime import actions
from autotrace.runtime.invisible import hide_from_warnings
from autotrace.startup.patching import Patch, Wrap

# id(S3File) -> its action, from __init__ to close (an id: a file's hash is its content
# in read mode, and a weak key may already be gone when a collected file closes).
_file_actions: dict[int, actions.OpenAction] = {}


def _sized(detail: str, size: int | None) -> str:
    return f"{detail} ({human_size(size)})" if size is not None else detail


def _describe_pipe_file(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    url = fs_url(arg(args, kwargs, 0, "path"))
    return _sized(f"pipe_file {url}", body_size(arg(args, kwargs, 1, "data")))


def _describe_put_file(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    lpath, url = arg(args, kwargs, 0, "lpath"), fs_url(arg(args, kwargs, 1, "rpath"))
    try:
        size: int | None = os.path.getsize(lpath) if os.path.isfile(lpath) else None
    except (OSError, TypeError, ValueError):
        size = None
    return _sized(f"put_file {url}", size)


def _describe_cp_file(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    source, target = arg(args, kwargs, 0, "path1"), arg(args, kwargs, 1, "path2")
    return f"cp_file {fs_url(target)} from {fs_url(source)}"


def _describe_rm(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    path = arg(args, kwargs, 0, "path")
    recursive = " (recursive)" if arg(args, kwargs, 1, "recursive") else ""
    if isinstance(path, (list, tuple)):
        if len(path) == 1:
            return f"rm {fs_url(path[0])}{recursive}"
        first = fs_url(path[0]) if path else ""
        return f"rm {len(path)} paths {first} ...{recursive}"
    return f"rm {fs_url(path)}{recursive}"


def _describe_rm_file(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return f"rm_file {fs_url(arg(args, kwargs, 0, 'path'))}"


# -- the hop to fsspec's loop thread --------------------------------------------------


@hide_from_warnings  # stands between fsspec's loop and the caller's coroutine
async def _await_under(parent: actions.OpenAction, coro: Coroutine[Any, Any, Any]) -> Any:
    with actions.under(parent):
        return await coro


def _sync_with_parent(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``fsspec.asyn.sync(loop, func, *args)``: the coroutine runs under the caller's action."""
    parent = actions.current_action()
    if parent is None or len(args) < 2 or not PATCH.enabled:
        return wrapped(*args, **kwargs)
    loop, func = args[0], args[1]

    def func_under_parent(*a: Any, **k: Any) -> Any:
        # Called by sync() in the caller's thread, exactly where func would be.
        return _await_under(parent, func(*a, **k))

    return wrapped(loop, func_under_parent, *args[2:], **kwargs)


# -- files opened for writing ---------------------------------------------------------


def _file_detail(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    mode = arg(args, kwargs, 2, "mode") or "rb"
    if not isinstance(mode, str) or not any(flag in mode for flag in "wax"):
        return None
    return f"open {fs_url(arg(args, kwargs, 1, 'path'))} ({mode})"


def _forget_file(key: int) -> None:
    span = _file_actions.pop(key, None)
    if span is not None:  # collected without close(): fsspec's __del__ commits after this
        span.end(extra={"closed_by": "garbage collection"})


def _file_init(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    detail = PATCH.guard(_file_detail)(args, kwargs)
    span = actions.start_action(records.S3, detail) if detail is not None else None
    if span is None:
        return wrapped(*args, **kwargs)
    result = actions.call_under(span, wrapped, args, kwargs)
    key = id(instance)
    _file_actions[key] = span
    finalizer = PATCH.guard(weakref.finalize)(instance, _forget_file, key)
    if finalizer:
        finalizer.atexit = False  # a file still open at exit was never committed: stay open
    return result


def _under_file(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """A write step of an open file (initiate, upload a part, commit, discard) nests under it."""
    span = _file_actions.get(id(instance))
    if span is None:
        return wrapped(*args, **kwargs)
    with actions.under(span):
        return wrapped(*args, **kwargs)


def _file_close(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    key = id(instance)
    span = _file_actions.get(key)
    if span is None:
        return wrapped(*args, **kwargs)
    try:
        with actions.under(span):
            result = wrapped(*args, **kwargs)
    except BaseException as exc:
        if _file_actions.pop(key, None) is span:
            span.end(exc)
        raise
    if getattr(instance, "closed", True) and _file_actions.pop(key, None) is span:
        size = getattr(instance, "loc", None)
        span.end(extra={"bytes": size} if isinstance(size, int) else None)
    return result


def _file_actions_clear() -> None:
    _file_actions.clear()


PATCH = Patch(
    name="s3fs",
    description="s3fs writes (pipe, put, copy, rm, files opened for writing) as S3 actions",
    wraps=[
        Wrap("fsspec.asyn", "sync", wrapper=_sync_with_parent),
        Wrap("s3fs.core", "S3FileSystem._pipe_file", records.S3, _describe_pipe_file),
        Wrap("s3fs.core", "S3FileSystem._put_file", records.S3, _describe_put_file),
        Wrap("s3fs.core", "S3FileSystem._cp_file", records.S3, _describe_cp_file, optional=True),
        Wrap("s3fs.core", "S3FileSystem._rm", records.S3, _describe_rm),
        Wrap("s3fs.core", "S3FileSystem._rm_file", records.S3, _describe_rm_file, optional=True),
        Wrap("s3fs.core", "S3File.__init__", wrapper=_file_init),
        Wrap("s3fs.core", "S3File._initiate_upload", wrapper=_under_file, optional=True),
        Wrap("s3fs.core", "S3File._upload_chunk", wrapper=_under_file),
        Wrap("s3fs.core", "S3File.commit", wrapper=_under_file),
        Wrap("s3fs.core", "S3File.discard", wrapper=_under_file, optional=True),
        Wrap("s3fs.core", "S3File.close", wrapper=_file_close),
    ],
    on_remove=_file_actions_clear,
)
