"""The S3 detail: which operations are writes, the URL, the size, and nothing secret."""

from __future__ import annotations

import io

import boto3
import pytest

from autotrace.patches._s3 import (
    body_size,
    describe_api_call,
    fs_url,
    human_size,
    is_write_operation,
    s3_detail,
)


@pytest.mark.parametrize(
    "operation",
    [
        "PutObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "CopyObject",
        "DeleteObject",
        "DeleteObjects",
        "PutObjectTagging",
        "PutObjectAcl",
        "RestoreObject",
        "CreateBucket",
        "PutBucketPolicy",
        "WriteGetObjectResponse",
    ],
)
def test_write_operations_are_recognised(operation):
    assert is_write_operation(operation)


@pytest.mark.parametrize(
    "operation",
    [
        "GetObject",
        "HeadObject",
        "ListObjectsV2",
        "ListParts",
        "SelectObjectContent",
        "CreateSession",
    ],
)
def test_reads_and_session_calls_are_not_writes(operation):
    assert not is_write_operation(operation)


def test_detail_names_operation_url_part_source_and_size():
    assert s3_detail(
        "PutObject", {"Bucket": "b", "Key": "a/b c.txt", "Body": b"x" * 1_300_000}
    ) == ("PutObject s3://b/a/b c.txt (1.2 MB)")
    assert (
        s3_detail(
            "UploadPartCopy",
            {"Bucket": "b", "Key": "k", "PartNumber": 2, "CopySource": "/src/key?versionId=1"},
        )
        == "UploadPartCopy s3://b/k part 2 from s3://src/key"
    )
    assert s3_detail("RestoreObject", {"Bucket": "b", "Key": "k"}) == "RestoreObject s3://b/k"
    assert s3_detail("DeleteObjects", {"Bucket": "b", "Delete": {"Objects": [{"Key": "k"}]}}) == (
        "DeleteObjects s3://b (1 key)"
    )
    assert s3_detail("PutObject", {"Bucket": "b", "Key": "k", "ContentLength": 2048}) == (
        "PutObject s3://b/k (2.0 KB)"
    )


def test_detail_leaves_out_every_parameter_value_but_bucket_and_key():
    detail = s3_detail(
        "PutObject",
        {
            "Bucket": "b",
            "Key": "k",
            "Body": b"body",
            "SSECustomerKey": "c2VjcmV0LWtleQ==",
            "Metadata": {"token": "t0ken-value"},
            "ACL": "private",
        },
    )
    assert detail == "PutObject s3://b/k (4 B)"


def test_body_size_neither_reads_nor_moves_file_bodies(tmp_path):
    buffer = io.BytesIO(b"0123456789")
    buffer.seek(4)
    assert body_size(buffer) == 6 and buffer.tell() == 4
    buffer.write(b"still writable")  # the size probe released its buffer view
    path = tmp_path / "f.bin"
    path.write_bytes(b"z" * 100)
    with open(path, "rb") as f:
        f.seek(10)
        assert body_size(f) == 90 and f.tell() == 10
    assert body_size("héllo") == 6
    assert body_size(object()) is None
    assert body_size(None) is None


def test_sizes_and_urls_read_as_people_write_them():
    assert [human_size(n) for n in (0, 1023, 1024, 1536, 5 * 1024**2, 3 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.0 KB",
        "1.5 KB",
        "5.0 MB",
        "3.0 GB",
    ]
    assert fs_url("bucket/key") == fs_url("s3://bucket/key") == fs_url("s3a://bucket/key")
    assert fs_url("bucket/key") == "s3://bucket/key"


def test_describe_skips_other_services_and_reads():
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    s3, dynamodb = session.client("s3"), session.client("dynamodb")
    assert describe_api_call(s3, ("GetObject", {"Bucket": "b", "Key": "k"}), {}) is None
    assert describe_api_call(dynamodb, ("PutItem", {"TableName": "t"}), {}) is None
    assert describe_api_call(s3, ("PutObject", {"Bucket": "b", "Key": "k"}), {}) == (
        "PutObject s3://b/k"
    )
    # a call made on the class: the client is the first argument
    assert describe_api_call(None, (s3, "PutObject", {"Bucket": "b", "Key": "k"}), {}) == (
        "PutObject s3://b/k"
    )
