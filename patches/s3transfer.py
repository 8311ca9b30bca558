"""boto3 managed transfers (``upload_file``, ``upload_fileobj``, ``copy``, ``S3Transfer``).

One ``S3`` action per transfer, ``upload_file s3://bucket/key (1.2 MB)``, from
``TransferManager.upload`` / ``copy`` / ``delete`` until the transfer's future is done
(its coordinator's done callbacks), with ``error`` when it failed and ``cancel`` when
it was cancelled. Its part calls run on s3transfer's worker threads, where the
caller's contextvars do not reach: each ``Task`` remembers the action current where
it was created and runs under it, so the botocore patch's ``UploadPart`` actions
name the transfer as their parent.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any

from autotrace import records
from autotrace.patches._s3 import arg, human_size, s3_url
from autotrace.runtime import actions
from autotrace.startup.patching import Patch, Wrap

# Task -> the action that was current where the task was created.
_task_parents: weakref.WeakKeyDictionary[Any, actions.OpenAction] = weakref.WeakKeyDictionary()


def _describe_upload(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    fileobj = arg(args, kwargs, 0, "fileobj")
    url = s3_url(arg(args, kwargs, 1, "bucket"), arg(args, kwargs, 2, "key"))
    if isinstance(fileobj, (str, os.PathLike)):
        try:
            return f"upload_file {url} ({human_size(os.path.getsize(fileobj))})"
        except OSError:
            return f"upload_file {url}"
    return f"upload_fileobj {url}"


def _describe_copy(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    source = arg(args, kwargs, 0, "copy_source")
    url = s3_url(arg(args, kwargs, 1, "bucket"), arg(args, kwargs, 2, "key"))
    if isinstance(source, dict):
        return f"copy {url} from {s3_url(source.get('Bucket'), source.get('Key'))}"
    return f"copy {url}"


def _describe_delete(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return f"delete {s3_url(arg(args, kwargs, 0, 'bucket'), arg(args, kwargs, 1, 'key'))}"


def _end_when_done(span: actions.OpenAction, future: Any) -> None:
    """End ``span`` once the transfer is done, from whichever thread finishes it."""
    coordinator = future._coordinator
    pending = [span]

    def finish() -> None:
        try:
            done = pending.pop()  # atomic: the callback and the check below race once
        except IndexError:
            return
        status = coordinator.status
        if status == "cancelled":
            done.end(coordinator.exception, event=records.CANCEL)
        elif status == "failed":
            exc = coordinator.exception or RuntimeError("transfer failed")
            done.end(exc)
        else:
            done.end()

    coordinator.add_done_callback(PATCH.guard(finish))
    if coordinator.done():
        finish()


def _transfer_wrapper(describe: Callable[[tuple[Any, ...], dict[str, Any]], str]) -> Any:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not PATCH.enabled:
            return wrapped(*args, **kwargs)
        detail = PATCH.guard(describe)(args, kwargs)
        span = actions.start_action(records.S3, detail) if detail is not None else None
        if span is None:
            return wrapped(*args, **kwargs)
        future = actions.call_under(span, wrapped, args, kwargs)
        if PATCH.guard(_end_when_done, default=False)(span, future) is False:
            span.end()  # could not watch the future: the action covers the submission only
        return future

    return wrapper


def _task_init(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    parent = actions.current_action()
    if parent is not None and PATCH.enabled:
        _task_parents[instance] = parent
    return result


def _task_call(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    parent = _task_parents.get(instance)
    if parent is None:
        return wrapped(*args, **kwargs)
    with actions.under(parent):
        return wrapped(*args, **kwargs)


PATCH = Patch(
    name="s3transfer",
    description="boto3 managed transfers (upload_file, upload_fileobj, copy) as one S3 action each",
    wraps=[
        Wrap(
            "s3transfer.manager",
            "TransferManager.upload",
            wrapper=_transfer_wrapper(_describe_upload),
        ),
        Wrap(
            "s3transfer.manager", "TransferManager.copy", wrapper=_transfer_wrapper(_describe_copy)
        ),
        Wrap(
            "s3transfer.manager",
            "TransferManager.delete",
            wrapper=_transfer_wrapper(_describe_delete),
            optional=True,
        ),
        Wrap("s3transfer.tasks", "Task.__init__", wrapper=_task_init),
        Wrap("s3transfer.tasks", "Task.__call__", wrapper=_task_call),
    ],
)
