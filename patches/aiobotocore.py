"""S3 writes through aiobotocore clients (s3fs, aioboto3): one ``S3`` action per write call.

The async twin of the botocore patch: wraps ``AioBaseClient._make_api_call``, a
coroutine function (it stays one), with the same operation filter and detail.
"""

from __future__ import annotations

from autotrace.patches.botocore import describe_api_call

from autotrace import records
from autotrace.patching import Patch, Wrap

PATCH = Patch(
    name="aiobotocore",
    description="S3 write calls of aiobotocore clients (s3fs, aioboto3) as S3 actions",
    wraps=[
        Wrap(
            "aiobotocore.client",
            "AioBaseClient._make_api_call",
            action=records.S3,
            describe=describe_api_call,
        ),
    ],
)
