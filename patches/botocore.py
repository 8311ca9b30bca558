"""S3 writes through botocore clients (boto3): one ``S3`` action per write call.

Wraps ``botocore.client.BaseClient._make_api_call(operation_name, api_params)``.
A write to S3 (PutObject, UploadPart, CopyObject, DeleteObjects, ...) becomes
``S3: PutObject s3://bucket/key (1.2 MB)``; reads and other services pass through
after one dict lookup on the operation name. The detail is built in ``_s3``.
"""

from __future__ import annotations

from autotrace.patches._s3 import api_call_wrapper
from autotrace.startup.patching import Patch, Wrap

PATCH = Patch(
    name="botocore", description="S3 write calls of botocore clients (boto3) as S3 actions"
)
PATCH.wraps.append(
    Wrap("botocore.client", "BaseClient._make_api_call", wrapper=api_call_wrapper(PATCH, False))
)
