"""boto3 managed transfers (and aioboto3's) are one S3 action with their part calls nested."""

from __future__ import annotations

import asyncio
import inspect
import io
import os
from pathlib import Path

import pytest
from conftest import action_records, in_thread, wait_for
from s3_server import moto_endpoint, s3_patches, s3_server  # noqa: F401

from autotrace.runtime import actions
from autotrace.startup import agent

MB = 1024 * 1024


def s3_records(directory: Path) -> list[dict]:
    return [r for r in action_records(directory) if r["action"] == "S3"]


def one(records: list[dict], detail: str, event: str) -> dict:
    found = [r for r in records if r["detail"] == detail and r["event"] == event]
    assert len(found) == 1, (detail, event, [(r["detail"], r["event"]) for r in records])
    return found[0]


def small_parts():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB)


def test_upload_file_is_one_action_spanning_its_parts_on_worker_threads(
    trace_dir,
    tmp_path,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    s3 = s3_server.client()
    s3_server.bucket("transfers")
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(11 * MB))
    s3.upload_file(str(local), "transfers", "big.bin", Config=small_parts())

    records = s3_records(trace_dir)
    enter = one(records, "upload_file s3://transfers/big.bin (11.0 MB)", "enter")
    end = one(records, "upload_file s3://transfers/big.bin (11.0 MB)", "exit")
    assert "parent_id" not in enter  # a root action: nothing was open in the caller
    children = [r for r in records if r.get("parent_id") == enter["trace_id"]]
    child_details = {r["detail"] for r in children if r["event"] == "enter"}
    assert child_details == {
        "CreateMultipartUpload s3://transfers/big.bin",
        "UploadPart s3://transfers/big.bin part 1 (5.0 MB)",
        "UploadPart s3://transfers/big.bin part 2 (5.0 MB)",
        "UploadPart s3://transfers/big.bin part 3 (1.0 MB)",
        "CompleteMultipartUpload s3://transfers/big.bin",
    }
    assert all(r["thread"] != "MainThread" for r in children)
    assert sum(r["event"] == "exit" for r in children) == 5
    # the transfer ends after its last part: its exit is the last S3 line
    assert records[-1] == end
    assert s3.head_object(Bucket="transfers", Key="big.bin")["ContentLength"] == 11 * MB


def test_upload_fileobj_and_s3transfer_nest_under_the_callers_action(
    trace_dir,
    tmp_path,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    from boto3.s3.transfer import S3Transfer

    s3 = s3_server.client()
    s3_server.bucket("nested")
    local = tmp_path / "small.txt"
    local.write_bytes(b"hello")
    with actions.trace_action("Log Write", "outer"):
        s3.upload_fileobj(io.BytesIO(b"abc"), "nested", "obj")
        S3Transfer(s3).upload_file(str(local), "nested", "via-s3transfer")

    records = action_records(trace_dir)
    outer = one(records, "outer", "enter")
    fileobj = one(records, "upload_fileobj s3://nested/obj", "enter")
    transfer = one(records, "upload_file s3://nested/via-s3transfer (5 B)", "enter")
    assert fileobj["parent_id"] == outer["trace_id"] == transfer["parent_id"]
    put = one(records, "PutObject s3://nested/obj (3 B)", "enter")
    assert put["parent_id"] == fileobj["trace_id"]
    put2 = one(records, "PutObject s3://nested/via-s3transfer (5 B)", "enter")
    assert put2["parent_id"] == transfer["trace_id"]
    one(records, "upload_fileobj s3://nested/obj", "exit")


def test_managed_copy_is_one_action_with_its_copy_call_nested(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    s3 = s3_server.client()
    s3_server.bucket("copies")
    s3.put_object(Bucket="copies", Key="src", Body=b"data")
    s3.copy({"Bucket": "copies", "Key": "src"}, "copies", "dst")
    records = s3_records(trace_dir)
    copy = one(records, "copy s3://copies/dst from s3://copies/src", "enter")
    one(records, "copy s3://copies/dst from s3://copies/src", "exit")
    inner = one(records, "CopyObject s3://copies/dst from s3://copies/src", "enter")
    assert inner["parent_id"] == copy["trace_id"]


def test_failed_transfer_is_an_error_action_and_raises_as_before(
    trace_dir,
    s3_server,  # noqa: F811
):
    s3 = s3_server.client()

    def upload() -> BaseException:
        with pytest.raises(Exception) as caught:
            s3.upload_fileobj(io.BytesIO(b"x"), "missing-bucket", "k")
        return caught.value

    plain = upload()
    patches = [agent.load_patch("botocore"), agent.load_patch("s3transfer")]
    for patch in patches:
        agent.install_patch(patch)
    try:
        traced = upload()
    finally:
        for patch in patches:
            agent.uninstall_patch(patch)
    assert type(traced) is type(plain)
    assert str(traced) == str(plain)

    records = s3_records(trace_dir)
    transfer_end = [r for r in records if r["detail"].startswith("upload_fileobj")][-1]
    assert transfer_end["event"] == "error"
    assert transfer_end["error_type"] == "NoSuchBucket"
    put_end = one(records, "PutObject s3://missing-bucket/k (1 B)", "error")
    assert put_end["parent_id"] == transfer_end["trace_id"]


def test_transfer_action_ends_when_the_future_completes(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    from s3transfer.manager import TransferManager

    s3 = s3_server.client()
    s3_server.bucket("futures")
    with TransferManager(s3) as manager:
        future = manager.upload(io.BytesIO(b"12345"), "futures", "k")
        wait_for(future.done)
        # nobody called result(): the action ended with the transfer itself
        end = wait_for(
            lambda: [
                r
                for r in s3_records(trace_dir)
                if r["detail"] == "upload_fileobj s3://futures/k" and r["event"] == "exit"
            ]
        )
        assert end and not actions.open_actions
        assert future.result() is None


def test_transfer_to_a_server_that_never_answers_is_running_with_its_part(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    silent = s3_server.silent()
    s3 = s3_server.client(silent.endpoint_url, read_timeout=60, retries={"total_max_attempts": 1})
    thread, outcome = in_thread(lambda: s3.upload_fileobj(io.BytesIO(b"{}"), "hang", "eval.json"))
    assert silent.wait_accepted()
    running = wait_for(
        lambda: (
            {a.detail: a for a in list(actions.open_actions.values())}
            if len(actions.open_actions) == 2
            else None
        )
    )
    transfer = running["upload_fileobj s3://hang/eval.json"]
    part = running["PutObject s3://hang/eval.json (2 B)"]
    assert part.parent_id == transfer.trace_id
    assert part.thread_name != "MainThread"
    assert [r["event"] for r in s3_records(trace_dir)] == ["enter", "enter"]

    silent.close()
    thread.join(timeout=30)
    assert not thread.is_alive() and outcome
    events = {(r["detail"], r["event"]) for r in s3_records(trace_dir)}
    assert ("upload_fileobj s3://hang/eval.json", "error") in events
    assert ("PutObject s3://hang/eval.json (2 B)", "error") in events
    assert not actions.open_actions


def test_transfer_entry_points_keep_their_signatures(s3_patches):  # noqa: F811
    import aioboto3.s3.inject as inject
    from s3transfer.manager import TransferManager
    from s3transfer.tasks import Task

    wrapped = {
        "upload": inspect.signature(TransferManager.upload),
        "copy": inspect.signature(TransferManager.copy),
        "call": inspect.signature(Task.__call__),
        "init": inspect.signature(Task.__init__),
        "aio_upload": inspect.signature(inject.upload_fileobj),
    }
    for patch in s3_patches.values():
        agent.uninstall_patch(patch)
    assert wrapped == {
        "upload": inspect.signature(TransferManager.upload),
        "copy": inspect.signature(TransferManager.copy),
        "call": inspect.signature(Task.__call__),
        "init": inspect.signature(Task.__init__),
        "aio_upload": inspect.signature(inject.upload_fileobj),
    }
    for patch in s3_patches.values():
        agent.install_patch(patch)
    for name in ("upload_fileobj", "upload_file", "copy"):
        assert inspect.iscoroutinefunction(getattr(inject, name))
        assert type(vars(inject)[name]).__name__ == "FunctionWrapper"


@pytest.mark.filterwarnings("ignore:coroutine:RuntimeWarning")  # aioboto3 7.0's own bug
def test_aioboto3_transfers_are_one_action_each_with_their_parts_nested(
    trace_dir,
    tmp_path,
    s3_server,  # noqa: F811
):
    import aioboto3

    s3_server.bucket("aio-transfers")
    local = tmp_path / "local.bin"
    local.write_bytes(b"f" * 2048)

    async def call(method: str, *args: object) -> object:
        session = aioboto3.Session()
        async with session.client(
            "s3", endpoint_url=s3_server.endpoint_url, region_name=s3_server.region
        ) as client:
            try:
                return await getattr(client, method)(*args)
            except Exception as exc:  # aioboto3 7.0 fails on Python >= 3.11 (asyncio.wait)
                return (type(exc), str(exc))

    def both() -> list[object]:
        return [
            asyncio.run(call("upload_fileobj", io.BytesIO(b"q" * 100), "aio-transfers", "k")),
            asyncio.run(call("upload_file", str(local), "aio-transfers", "f")),
        ]

    plain = both()
    patches = [agent.load_patch(n) for n in ("aiobotocore", "aioboto3")]
    for patch in patches:
        agent.install_patch(patch)
    try:
        traced = both()
    finally:
        for patch in patches:
            agent.uninstall_patch(patch)
    assert traced == plain

    records = s3_records(trace_dir)
    for detail, key, size, result in [
        ("upload_fileobj s3://aio-transfers/k", "k", "100 B", plain[0]),
        ("upload_file s3://aio-transfers/f (2.0 KB)", "f", "2.0 KB", plain[1]),
    ]:
        transfer = one(records, detail, "enter")
        end = [r for r in records if r["trace_id"] == transfer["trace_id"]][-1]
        assert end["event"] == ("exit" if result is None else "error")
        calls = {
            r["detail"]
            for r in records
            if r.get("parent_id") == transfer["trace_id"] and r["event"] == "enter"
        }
        # aioboto3 7.0 always uploads in parts; later releases PUT small bodies at once
        assert calls in (
            {
                f"CreateMultipartUpload s3://aio-transfers/{key}",
                f"UploadPart s3://aio-transfers/{key} part 1 ({size})",
            },
            {f"PutObject s3://aio-transfers/{key} ({size})"},
        )
    # upload_file calls upload_fileobj itself: still one transfer action
    assert sum(r["detail"].startswith("upload_") for r in records if r["event"] == "enter") == 2
