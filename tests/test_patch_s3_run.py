"""Under `inspect-trace run`, a child's boto3, s3transfer and s3fs writes are nested S3 actions."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import action_records
from s3_server import moto_endpoint, s3_server  # noqa: F401

SCRIPT = """
import io
import boto3, s3fs
s3 = boto3.client("s3")  # endpoint, credentials and region from the environment
s3.create_bucket(Bucket="child")
s3.upload_fileobj(io.BytesIO(b"abc"), "child", "transfer")
s3fs.S3FileSystem().pipe("child/piped", b"xy")
with s3fs.S3FileSystem(skip_instance_cache=True).open("child/file", "wb") as f:
    f.write(b"z")
"""


@pytest.mark.slow
def test_child_process_s3_writes_are_traced_and_nested(tmp_path, s3_server):  # noqa: F811
    traces = tmp_path / "traces"
    env = {**os.environ, **s3_server.env}
    result = subprocess.run(
        ["inspect-trace", "run", "--trace-dir", str(traces), "--", sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    records = [r for r in action_records(traces) if r["action"] == "S3"]
    by_detail = {r["detail"]: r for r in records if r["event"] == "enter"}
    assert set(by_detail) == {
        "CreateBucket s3://child",
        "upload_fileobj s3://child/transfer",
        "PutObject s3://child/transfer (3 B)",
        "pipe_file s3://child/piped (2 B)",
        "PutObject s3://child/piped (2 B)",
        "open s3://child/file (wb)",
        "PutObject s3://child/file (1 B)",
    }
    for parent, child in [
        ("upload_fileobj s3://child/transfer", "PutObject s3://child/transfer (3 B)"),
        ("pipe_file s3://child/piped (2 B)", "PutObject s3://child/piped (2 B)"),
        ("open s3://child/file (wb)", "PutObject s3://child/file (1 B)"),
    ]:
        assert by_detail[child]["parent_id"] == by_detail[parent]["trace_id"]
    assert sorted(r["event"] for r in records).count("exit") == len(by_detail)
