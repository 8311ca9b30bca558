"""aioboto3's managed transfers (``upload_fileobj``, ``upload_file``, ``copy``): one ``S3`` action.

aioboto3 injects these coroutine functions from ``aioboto3.s3.inject`` into every S3
client class it builds, looking them up in that module when the class is made, so
wrapping the module's functions covers clients created afterwards. Their part calls
(aiobotocore ``UploadPart`` ...) run in the same task or in tasks it spawns, which
inherit the context: they nest with no help. ``upload_file`` and ``copy`` call
``upload_fileobj`` themselves; that inner call is not a second action.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable
from typing import Any

from autotrace import records
from autotrace.patches._s3 import human_size, s3_url
from autotrace.runtime import actions
from autotrace.startup.patching import Patch, Wrap

_in_transfer: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "autotrace_aioboto3_transfer", default=False
)


def _describe(name: str, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    if instance is None:  # called as a plain function: upload_fileobj(client, ...)
        args = args[1:]
    first_name = {"upload_fileobj": "Fileobj", "upload_file": "Filename", "copy": "CopySource"}
    first: Any = args[0] if args else kwargs.get(first_name[name])
    bucket = args[1] if len(args) > 1 else kwargs.get("Bucket")
    key = args[2] if len(args) > 2 else kwargs.get("Key")
    detail = f"{name} {s3_url(bucket, key)}"
    if name == "upload_file":
        try:
            detail += f" ({human_size(os.path.getsize(first))})"
        except (OSError, TypeError, ValueError):
            pass
    elif name == "copy" and isinstance(first, dict):
        detail += f" from {s3_url(first.get('Bucket'), first.get('Key'))}"
    return detail


def _transfer(name: str) -> Any:
    async def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if _in_transfer.get() or not PATCH.enabled:
            return await wrapped(*args, **kwargs)
        detail = PATCH.guard(_describe)(name, instance, args, kwargs)
        if detail is None:
            return await wrapped(*args, **kwargs)
        token = _in_transfer.set(True)
        try:
            with actions.trace_action(records.S3, detail):
                return await wrapped(*args, **kwargs)
        finally:
            _in_transfer.reset(token)

    return wrapper


PATCH = Patch(
    name="aioboto3",
    description="aioboto3 managed transfers (upload_fileobj, upload_file, copy) as S3 actions",
    wraps=[
        Wrap("aioboto3.s3.inject", "upload_fileobj", wrapper=_transfer("upload_fileobj")),
        Wrap("aioboto3.s3.inject", "upload_file", wrapper=_transfer("upload_file"), optional=True),
        Wrap("aioboto3.s3.inject", "copy", wrapper=_transfer("copy"), optional=True),
    ],
)
