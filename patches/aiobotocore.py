"""S3 writes through aiobotocore clients (s3fs, aioboto3): one ``S3`` action per write call.

The async twin of the botocore patch: wraps ``AioBaseClient._make_api_call``, a
coroutine function (it stays one), with the same operation filter and detail.
"""

from __future__ import annotations

from autotrace.patches._s3 import api_call_wrapper
from autotrace.startup.patching import Patch, Wrap

PATCH = Patch(
    name="aiobotocore",
    description="S3 write calls of aiobotocore clients (s3fs, aioboto3) as S3 actions",
)
PATCH.wraps.append(
    Wrap(
        "aiobotocore.client", "AioBaseClient._make_api_call", wrapper=api_call_wrapper(PATCH, True)
    )
)
