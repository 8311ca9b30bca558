"""What the S3 patches share (botocore, aiobotocore, s3transfer, aioboto3, s3fs).

Which operations write, how a write is described (``PutObject s3://bucket/key (1.2 MB)``:
the operation, the S3 URL and a size, never a parameter value that could be a secret),
and the wrapper of botocore's ``_make_api_call`` used sync and async.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from typing import Any

from autotrace import records
from autotrace.runtime import actions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from autotrace.startup.patching import Patch, Wrapper


def arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    """A call's argument given either by position or by name (None when absent)."""
    return args[index] if len(args) > index else kwargs.get(name)


# Operation-name prefixes that change state in S3 (objects, parts, buckets, settings).
_WRITE_PREFIXES = (
    "Put",
    "Create",
    "Delete",
    "Copy",
    "Upload",
    "Complete",
    "Abort",
    "Restore",
    "Rename",
    "Update",
    "WriteGetObjectResponse",
)
_NOT_WRITES = frozenset({"CreateSession"})  # S3 Express: a credential call, no data written

# operation name -> is it an S3 write; filled on first sight (names are a small, fixed set).
_is_write: dict[str, bool] = {}


def is_write_operation(operation: Any) -> bool:
    """True for S3 operation names that write (PutObject, UploadPart, DeleteObjects, ...)."""
    known = _is_write.get(operation)
    if known is None:
        if not isinstance(operation, str):
            return False  # not an operation name (a call made on the class): never cached
        known = _is_write[operation] = (
            operation.startswith(_WRITE_PREFIXES) and operation not in _NOT_WRITES
        )
    return known


def human_size(size: int) -> str:
    """``1.2 MB``-style size (powers of 1024)."""
    if size < 1024:
        return f"{size} B"
    value, unit = float(size), "B"
    for unit in ("KB", "MB", "GB", "TB"):  # noqa: B007 (the unit reached is the answer)
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"


def s3_url(bucket: Any, key: Any = None) -> str:
    """``s3://bucket/key`` (``s3://bucket`` without a key)."""
    if key is None or key == "":
        return f"s3://{bucket}"
    return f"s3://{bucket}/{key}"


def fs_url(path: Any) -> str:
    """An fsspec-style path (``bucket/key``, ``s3://bucket/key``, ``s3a://...``) as an s3:// URL."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    for scheme in ("s3://", "s3a://", "s3n://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    return f"s3://{text}"


def body_size(body: Any) -> int | None:
    """Bytes a request body will send, when knowable without reading or moving it."""
    try:
        return _body_size(body)
    except Exception:  # an odd body object: no size, never a failed patch
        return None


def _body_size(body: Any) -> int | None:
    if body is None:
        return None
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    if isinstance(body, memoryview):
        return body.nbytes
    if isinstance(body, str):
        return len(body) if body.isascii() else len(body.encode("utf-8"))
    if isinstance(body, io.BytesIO):
        with body.getbuffer() as view:
            return max(0, view.nbytes - body.tell())
    if hasattr(type(body), "__len__"):  # s3transfer's ReadFileChunk and the like
        return len(body)
    fileno = getattr(body, "fileno", None)
    if fileno is not None:
        stat = os.fstat(fileno())
        return max(0, stat.st_size - body.tell()) if stat.st_size else None
    return None


def _copy_source_url(source: Any) -> str | None:
    if isinstance(source, Mapping):
        return s3_url(source.get("Bucket"), source.get("Key"))
    if isinstance(source, str):
        return "s3://" + source.lstrip("/").split("?", 1)[0]
    return None


def s3_detail(operation: str, params: Mapping[str, Any]) -> str:
    """``<Operation> s3://bucket/key`` plus what tells one write from another (size, part)."""
    detail = f"{operation} {s3_url(params.get('Bucket', ''), params.get('Key'))}"
    if operation == "DeleteObjects":
        objects = (params.get("Delete") or {}).get("Objects") or ()
        return f"{detail} ({len(objects)} key{'' if len(objects) == 1 else 's'})"
    if "PartNumber" in params:
        detail += f" part {params['PartNumber']}"
    source = params.get("CopySource")
    if source is not None:
        source_url = _copy_source_url(source)
        if source_url:
            detail += f" from {source_url}"
    size = params.get("ContentLength")
    if not isinstance(size, int):
        size = body_size(params.get("Body"))
    if size is not None:
        detail += f" ({human_size(size)})"
    return detail


def describe_api_call(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Detail for ``_make_api_call(operation_name, api_params)``; None for reads and non-S3."""
    operation: Any = args[0] if args else kwargs.get("operation_name")
    if not is_write_operation(operation):
        if instance is not None or not args:
            return None
        instance, args = args[0], args[1:]  # called on the class: (client, operation, params)
        operation = args[0] if args else kwargs.get("operation_name")
        if not is_write_operation(operation):
            return None
    if instance.meta.service_model.service_name != "s3":
        return None
    params = args[1] if len(args) > 1 else kwargs.get("api_params")
    return s3_detail(operation, params if isinstance(params, Mapping) else {})


# botocore's timeouts (ReadTimeoutError, ConnectTimeoutError, ...) do not derive from
# the builtin TimeoutError, yet a timed-out write is exactly what a reader looks for.
def api_call_wrapper(patch: Patch, is_async: bool) -> Wrapper:
    """The wrapper of ``_make_api_call`` (sync, or async for aiobotocore) for ``patch``."""
    describe = patch.guard(describe_api_call)

    def sync_call(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        detail = describe(instance, args, kwargs)
        span = actions.start_action(records.S3, detail) if detail is not None else None
        if span is None:
            return wrapped(*args, **kwargs)
        result = actions.call_under(span, wrapped, args, kwargs)
        span.end()
        return result

    async def async_call(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        detail = describe(instance, args, kwargs)
        span = actions.start_action(records.S3, detail) if detail is not None else None
        if span is None:
            return await wrapped(*args, **kwargs)
        result = await actions.await_under(span, wrapped, args, kwargs)
        span.end()
        return result

    return async_call if is_async else sync_call
