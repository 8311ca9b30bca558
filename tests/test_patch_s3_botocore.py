"""S3 write calls through botocore (boto3) and aiobotocore are S3 actions; the rest passes through."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from conftest import action_records, in_thread, installed_patch, wait_for
from s3_server import FAKE_CREDENTIALS, moto_endpoint, s3_patches, s3_server  # noqa: F401

from autotrace.runtime import actions
from autotrace.startup import agent


def s3_records(directory: Path) -> list[dict]:
    return [r for r in action_records(directory) if r["action"] == "S3"]


def ended(records: list[dict], event: str = "exit") -> dict[str, dict]:
    """detail -> end record, for the end records with ``event``."""
    return {r["detail"]: r for r in records if r["event"] == event}


def test_s3_object_writes_are_one_action_each_with_operation_url_and_size(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    s3 = s3_server.client()
    s3.create_bucket(Bucket="writes")
    s3.put_object(Bucket="writes", Key="dir/a.txt", Body=b"x" * 1500)
    s3.copy_object(
        Bucket="writes", Key="b.txt", CopySource={"Bucket": "writes", "Key": "dir/a.txt"}
    )
    s3.put_object_tagging(
        Bucket="writes", Key="b.txt", Tagging={"TagSet": [{"Key": "t", "Value": "v"}]}
    )
    s3.put_object_acl(Bucket="writes", Key="b.txt", ACL="private")
    upload = s3.create_multipart_upload(Bucket="writes", Key="big")["UploadId"]
    part = s3.upload_part(Bucket="writes", Key="big", UploadId=upload, PartNumber=1, Body=b"p" * 10)
    s3.complete_multipart_upload(
        Bucket="writes",
        Key="big",
        UploadId=upload,
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    aborted = s3.create_multipart_upload(Bucket="writes", Key="gone")["UploadId"]
    s3.abort_multipart_upload(Bucket="writes", Key="gone", UploadId=aborted)
    s3.delete_object(Bucket="writes", Key="dir/a.txt")
    s3.delete_objects(Bucket="writes", Delete={"Objects": [{"Key": "b.txt"}, {"Key": "big"}]})

    records = s3_records(trace_dir)
    exits = ended(records)
    assert set(exits) == {
        "CreateBucket s3://writes",
        "PutObject s3://writes/dir/a.txt (1.5 KB)",
        "CopyObject s3://writes/b.txt from s3://writes/dir/a.txt",
        "PutObjectTagging s3://writes/b.txt",
        "PutObjectAcl s3://writes/b.txt",
        "CreateMultipartUpload s3://writes/big",
        "UploadPart s3://writes/big part 1 (10 B)",
        "CompleteMultipartUpload s3://writes/big",
        "CreateMultipartUpload s3://writes/gone",
        "AbortMultipartUpload s3://writes/gone",
        "DeleteObject s3://writes/dir/a.txt",
        "DeleteObjects s3://writes (2 keys)",
    }
    enters = {r["trace_id"]: r for r in records if r["event"] == "enter"}
    for end in exits.values():
        enter = enters[end["trace_id"]]
        assert enter["detail"] == end["detail"]
        assert end["message"] == f"S3: {end['detail']} (exit)"
        assert end["duration"] >= 0
    assert len(records) == 2 * len(exits)  # one enter and one exit each, nothing else
    assert not actions.open_actions


def test_reads_and_other_services_pass_through_untraced(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    s3 = s3_server.client()
    bucket = s3_server.bucket("reads")  # CreateBucket: the only traced call
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")  # and this one
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    s3.head_object(Bucket=bucket, Key="k")
    s3.list_objects_v2(Bucket=bucket)
    s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "k"})
    import boto3

    sqs = boto3.client("sqs", endpoint_url=s3_server.endpoint_url, region_name=s3_server.region)
    sqs.create_queue(QueueName="not-s3")  # a Create* of another service
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName="not-s3")["QueueUrl"])

    details = [r["detail"] for r in action_records(trace_dir) if r["event"] == "enter"]
    assert details == ["CreateBucket s3://reads", "PutObject s3://reads/k (1 B)"]


def test_failing_write_is_an_error_action_and_raises_the_same_exception(
    trace_dir,
    s3_server,  # noqa: F811
):
    s3 = s3_server.client()

    def failing_put():
        with pytest.raises(Exception) as caught:
            s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"1")
        return caught.value

    plain = failing_put()
    with installed_patch("botocore"):
        traced = failing_put()

    assert type(traced) is type(plain) and type(plain).__name__ == "NoSuchBucket"
    assert str(traced) == str(plain)
    records = s3_records(trace_dir)
    assert [r["event"] for r in records] == ["enter", "error"]
    error = records[1]
    assert error["detail"] == "PutObject s3://no-such-bucket/k (1 B)"
    assert error["error_type"] == "NoSuchBucket"
    assert "does not exist" in error["error"]


def test_results_are_the_same_with_and_without_the_patch(trace_dir, s3_server):  # noqa: F811
    s3 = s3_server.client()
    s3_server.bucket("same")

    def run() -> list[object]:
        put = s3.put_object(Bucket="same", Key="k", Body=b"payload")
        got = s3.get_object(Bucket="same", Key="k")
        deleted = s3.delete_objects(Bucket="same", Delete={"Objects": [{"Key": "k"}]})
        return [
            put["ETag"],
            put["ResponseMetadata"]["HTTPStatusCode"],
            got["Body"].read(),
            got["ContentLength"],
            deleted["Deleted"],
        ]

    plain = run()
    with installed_patch("botocore"):
        traced = run()
    assert traced == plain
    assert len(s3_records(trace_dir)) == 4  # PutObject and DeleteObjects, enter + exit


def test_wrapped_api_call_keeps_signature_and_async_ness(s3_patches):  # noqa: F811
    from aiobotocore.client import AioBaseClient
    from botocore.client import BaseClient

    sync_signature = inspect.signature(BaseClient._make_api_call)
    async_signature = inspect.signature(AioBaseClient._make_api_call)
    for patch in list(s3_patches.values()):
        agent.uninstall_patch(patch)
    assert inspect.signature(BaseClient._make_api_call) == sync_signature
    assert inspect.signature(AioBaseClient._make_api_call) == async_signature
    assert not inspect.iscoroutinefunction(BaseClient._make_api_call)
    assert inspect.iscoroutinefunction(AioBaseClient._make_api_call)
    for patch in s3_patches.values():
        agent.install_patch(patch)
    assert type(BaseClient.__dict__["_make_api_call"]).__name__ == "FunctionWrapper"
    assert inspect.iscoroutinefunction(AioBaseClient._make_api_call)
    assert not inspect.iscoroutinefunction(BaseClient._make_api_call)


def test_aiobotocore_writes_are_actions_nested_under_the_calling_task(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    from aiobotocore.session import get_session

    async def main() -> bytes:
        session = get_session()
        async with session.create_client(
            "s3", endpoint_url=s3_server.endpoint_url, region_name=s3_server.region
        ) as client:
            await client.create_bucket(Bucket="aio")
            with actions.trace_action("Log Write", "outer"):
                await client.put_object(Bucket="aio", Key="k", Body=b"abc")
            with pytest.raises(client.exceptions.NoSuchBucket):
                await client.put_object(Bucket="aio-missing", Key="k", Body=b"abc")
            got = await client.get_object(Bucket="aio", Key="k")
            return await got["Body"].read()

    assert asyncio.run(main()) == b"abc"
    records = action_records(trace_dir)
    outer = next(r for r in records if r["action"] == "Log Write")
    put = [r for r in records if r.get("detail") == "PutObject s3://aio/k (3 B)"]
    assert [r["event"] for r in put] == ["enter", "exit"]
    assert all(r["parent_id"] == outer["trace_id"] for r in put)
    failed = [r for r in records if r.get("detail") == "PutObject s3://aio-missing/k (3 B)"]
    assert [r["event"] for r in failed] == ["enter", "error"]
    assert failed[1]["error_type"] == "NoSuchBucket"
    assert not any(r["detail"].startswith("GetObject") for r in records)


def test_credentials_and_signatures_never_reach_the_trace(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    s3 = s3_server.client()
    s3_server.bucket("secrets")
    s3.put_object(Bucket="secrets", Key="k", Body=b"secret body", Metadata={"owner": "me"})
    url = s3.generate_presigned_url("put_object", Params={"Bucket": "secrets", "Key": "k"})
    assert "Signature" in url
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.put_object(Bucket="missing-bucket", Key="k", Body=b"x")

    text = "".join(p.read_text() for p in trace_dir.glob("trace-*.log"))
    assert "PutObject s3://secrets/k" in text
    for secret in [*FAKE_CREDENTIALS.values(), "Signature", "X-Amz-Credential", "secret body"]:
        assert secret not in text


def test_write_to_a_server_that_never_answers_is_a_running_action(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    silent = s3_server.silent()
    s3 = s3_server.client(
        silent.endpoint_url,
        connect_timeout=5,
        read_timeout=60,
        retries={"total_max_attempts": 1},
    )
    thread, outcome = in_thread(lambda: s3.put_object(Bucket="hang", Key="stuck.json", Body=b"{}"))
    assert silent.wait_accepted()
    running = wait_for(lambda: [a for a in list(actions.open_actions.values()) if a.action == "S3"])
    assert running[0].detail == "PutObject s3://hang/stuck.json (2 B)"
    records = s3_records(trace_dir)
    assert [r["event"] for r in records] == ["enter"]  # in the file: started, not ended
    assert records[0]["trace_id"] == running[0].trace_id

    silent.close()  # the server goes away: the call fails, the action ends
    thread.join(timeout=30)
    assert not thread.is_alive() and outcome
    records = s3_records(trace_dir)
    assert [r["event"] for r in records] == ["enter", "error"]
    assert records[1]["error_type"] == type(outcome[0]).__name__
    assert not actions.open_actions


def test_write_that_times_out_is_a_timeout_action(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    from botocore.exceptions import ReadTimeoutError

    silent = s3_server.silent()
    s3 = s3_server.client(silent.endpoint_url, read_timeout=0.5, retries={"total_max_attempts": 1})
    with pytest.raises(ReadTimeoutError):
        s3.put_object(Bucket="hang", Key="k", Body=b"1")
    records = s3_records(trace_dir)
    assert [r["event"] for r in records] == ["enter", "timeout"]  # not a plain error


def test_uninstalled_patches_put_every_original_back_and_write_nothing(
    trace_dir,
    s3_server,  # noqa: F811
):
    import aioboto3.s3.inject as inject
    import fsspec.asyn
    from aiobotocore.client import AioBaseClient
    from botocore.client import BaseClient
    from s3fs.core import S3File, S3FileSystem
    from s3transfer.manager import TransferManager
    from s3transfer.tasks import Task

    owners = [BaseClient, AioBaseClient, TransferManager, Task, S3FileSystem, S3File]
    before = [dict(vars(owner)) for owner in owners] + [dict(vars(fsspec.asyn)), dict(vars(inject))]
    patches = [
        agent.load_patch(name)
        for name in ("botocore", "aiobotocore", "s3transfer", "s3fs", "aioboto3")
    ]
    for patch in patches:
        agent.install_patch(patch)
    for patch in patches:
        agent.uninstall_patch(patch)
    after = [dict(vars(owner)) for owner in owners] + [dict(vars(fsspec.asyn)), dict(vars(inject))]
    for was, now in zip(before, after, strict=True):
        changed = {k for k in was.keys() | now.keys() if was.get(k) is not now.get(k)}
        assert not changed  # S3File.close was inherited: it is inherited again
    s3_server.client().create_bucket(Bucket="untraced")
    s3_server.filesystem().pipe("untraced/k", b"v")
    assert action_records(trace_dir) == []
