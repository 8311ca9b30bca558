"""The moto fixture itself: reachable, reset per test, proxies stall on demand."""

from __future__ import annotations

import pytest
from s3_server import moto_endpoint, s3_server  # noqa: F401  (pytest fixtures)


def test_moto_fixture_serves_boto3_and_s3fs(s3_server):  # noqa: F811
    bucket = s3_server.bucket("fixture-bucket")
    s3_server.client().put_object(Bucket=bucket, Key="a.txt", Body=b"hello")
    fs = s3_server.filesystem()
    assert fs.cat(f"{bucket}/a.txt") == b"hello"


def test_stalled_proxy_stops_answering(s3_server):  # noqa: F811
    from botocore.exceptions import ReadTimeoutError

    s3_server.bucket("stall-bucket")
    proxy = s3_server.stallable()
    client = s3_server.client(
        proxy.endpoint_url, read_timeout=0.5, retries={"max_attempts": 1, "mode": "standard"}
    )
    assert client.list_objects_v2(Bucket="stall-bucket")["KeyCount"] == 0
    proxy.stall()
    with pytest.raises(ReadTimeoutError):
        client.list_objects_v2(Bucket="stall-bucket")
