"""s3fs writes are one S3 action each, with their aiobotocore calls nested across fsspec's loop thread."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from conftest import action_records, in_thread, wait_for
from s3_server import moto_endpoint, s3_patches, s3_server  # noqa: F401

from autotrace.runtime import actions
from autotrace.startup import agent

MB = 1024 * 1024


def one(records: list[dict], detail: str, event: str) -> dict:
    found = [r for r in records if r.get("detail") == detail and r["event"] == event]
    assert len(found) == 1, (detail, event, [(r["detail"], r["event"]) for r in records])
    return found[0]


def children(records: list[dict], parent: dict) -> set[str]:
    return {
        r["detail"]
        for r in records
        if r.get("parent_id") == parent["trace_id"] and r["event"] == "enter"
    }


def test_pipe_and_put_are_one_action_each_nested_under_the_caller_across_the_loop_thread(
    trace_dir,
    tmp_path,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    s3_server.bucket("fs-writes")
    fs = s3_server.filesystem()
    local = tmp_path / "local.txt"
    local.write_bytes(b"l" * 300)
    with actions.trace_action("Log Write", "outer"):
        fs.pipe("fs-writes/a.json", b"{}")
        fs.pipe_file("s3://fs-writes/b.json", b"[1]")
        fs.put(str(local), "fs-writes/c.txt")
        fs.put_file(str(local), "fs-writes/d.txt")

    records = action_records(trace_dir)
    outer = one(records, "outer", "enter")
    expected = {
        "pipe_file s3://fs-writes/a.json (2 B)": "PutObject s3://fs-writes/a.json (2 B)",
        "pipe_file s3://fs-writes/b.json (3 B)": "PutObject s3://fs-writes/b.json (3 B)",
        "put_file s3://fs-writes/c.txt (300 B)": "PutObject s3://fs-writes/c.txt (300 B)",
        "put_file s3://fs-writes/d.txt (300 B)": "PutObject s3://fs-writes/d.txt (300 B)",
    }
    assert children(records, outer) == set(expected)
    for detail, call in expected.items():
        action = one(records, detail, "enter")
        assert action["thread"] == "fsspecIO"  # s3fs's loop thread, not the caller's
        assert children(records, action) == {call}
        one(records, detail, "exit")
        one(records, call, "exit")
    assert fs.cat("fs-writes/a.json") == b"{}"
    assert not actions.open_actions


def test_file_opened_for_writing_is_one_action_until_close(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    s3_server.bucket("fs-files")
    fs = s3_server.filesystem()
    detail = "open s3://fs-files/big.bin (wb)"
    with fs.open("fs-files/big.bin", "wb", block_size=5 * MB) as f:
        f.write(b"a" * (6 * MB))  # over one block: the multipart upload starts now
        running = [a for a in actions.open_actions.values() if a.detail == detail]
        assert running, "the file's action is open while the file is"
        records = action_records(trace_dir)
        assert [r["event"] for r in records if r["detail"] == detail] == ["enter"]
        f.write(b"b" * (1 * MB))

    records = action_records(trace_dir)
    enter, end = one(records, detail, "enter"), one(records, detail, "exit")
    assert end["bytes"] == 7 * MB
    assert children(records, enter) == {
        "CreateMultipartUpload s3://fs-files/big.bin",
        "UploadPart s3://fs-files/big.bin part 1 (6.0 MB)",
        "UploadPart s3://fs-files/big.bin part 2 (1.0 MB)",
        "CompleteMultipartUpload s3://fs-files/big.bin",
    }
    assert fs.size("fs-files/big.bin") == 7 * MB
    with fs.open("fs-files/small.txt", "w") as text:  # text mode: one PutObject on close
        text.write("hi")
    records = action_records(trace_dir)
    small = one(records, "open s3://fs-files/small.txt (wb)", "enter")
    assert children(records, small) == {"PutObject s3://fs-files/small.txt (2 B)"}
    with fs.open("fs-files/small.txt", "rb") as reading:  # reads are not actions
        assert reading.read() == b"hi"
    assert not [r for r in action_records(trace_dir) if "(rb)" in r["detail"]]
    assert not actions.open_actions


def test_rm_is_one_action_with_its_delete_nested(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    s3_server.bucket("fs-rm")
    fs = s3_server.filesystem()
    fs.pipe({"fs-rm/x/1": b"1", "fs-rm/x/2": b"2"})
    fs.rm("fs-rm/x", recursive=True)
    fs.pipe_file("fs-rm/y", b"y")
    fs.rm_file("fs-rm/y")
    records = action_records(trace_dir)
    rm = one(records, "rm s3://fs-rm/x (recursive)", "enter")
    (delete,) = children(records, rm)  # the two objects (and the "directory" x itself)
    assert delete.startswith("DeleteObjects s3://fs-rm (")
    one(records, "rm s3://fs-rm/x (recursive)", "exit")
    rm_file = one(records, "rm_file s3://fs-rm/y", "enter")
    assert children(records, rm_file) == {"DeleteObject s3://fs-rm/y"}
    assert fs.ls("fs-rm") == []


def test_failed_pipe_is_an_error_action_and_raises_as_before(
    trace_dir,
    s3_server,  # noqa: F811
):
    def pipe() -> BaseException:
        fs = s3_server.filesystem()
        with pytest.raises(FileNotFoundError) as caught:
            fs.pipe("missing-bucket/k", b"x")
        return caught.value

    plain = pipe()
    patches = [agent.load_patch(n) for n in ("aiobotocore", "s3fs")]
    for patch in patches:
        agent.install_patch(patch)
    try:
        traced = pipe()
    finally:
        for patch in patches:
            agent.uninstall_patch(patch)
    assert type(traced) is type(plain) and str(traced) == str(plain)
    records = action_records(trace_dir)
    failed = one(records, "pipe_file s3://missing-bucket/k (1 B)", "error")
    assert failed["error_type"] == "FileNotFoundError"
    put = one(records, "PutObject s3://missing-bucket/k (1 B)", "error")
    assert put["parent_id"] == failed["trace_id"]


def test_async_s3fs_writes_nest_under_the_awaiting_task(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    s3_server.bucket("fs-async")

    async def main() -> bytes:
        fs = s3_server.filesystem(asynchronous=True)
        session = await fs.set_session()
        try:
            with actions.trace_action("Subtask", "async outer"):
                await fs._pipe_file("fs-async/k", b"async")
            return await fs._cat_file("fs-async/k")
        finally:
            await session.close()

    assert asyncio.run(main()) == b"async"
    records = action_records(trace_dir)
    outer = one(records, "async outer", "enter")
    pipe = one(records, "pipe_file s3://fs-async/k (5 B)", "enter")
    assert pipe["parent_id"] == outer["trace_id"]
    assert children(records, pipe) == {"PutObject s3://fs-async/k (5 B)"}


def test_results_signatures_and_async_ness_are_unchanged(
    trace_dir,
    s3_server,  # noqa: F811
):
    import fsspec.asyn
    from s3fs.core import S3File, S3FileSystem

    names = ["_pipe_file", "_put_file", "_cp_file", "_rm", "_rm_file"]
    before = {n: inspect.signature(getattr(S3FileSystem, n)) for n in names}
    before["sync"] = inspect.signature(fsspec.asyn.sync)
    before["init"] = inspect.signature(S3File.__init__)
    before["close"] = inspect.signature(S3File.close)
    s3_server.bucket("fs-same")

    def run() -> list[object]:
        fs = s3_server.filesystem()
        fs.pipe("fs-same/k", b"v1")
        fs.cp_file("fs-same/k", "fs-same/k2")
        with fs.open("fs-same/f", "wb") as f:
            written = f.write(b"file")
        out = [written, fs.cat("fs-same/k2"), fs.cat("fs-same/f"), sorted(fs.ls("fs-same"))]
        fs.rm(["fs-same/k", "fs-same/k2", "fs-same/f"])
        return [*out, fs.ls("fs-same")]

    plain = run()
    patches = [agent.load_patch(n) for n in ("aiobotocore", "s3fs")]
    for patch in patches:
        agent.install_patch(patch)
    try:
        for name in names:
            assert inspect.iscoroutinefunction(getattr(S3FileSystem, name))
            assert inspect.signature(getattr(S3FileSystem, name)) == before[name]
        assert inspect.signature(fsspec.asyn.sync) == before["sync"]
        assert inspect.signature(S3File.__init__) == before["init"]
        assert inspect.signature(S3File.close) == before["close"]
        traced = run()
    finally:
        for patch in patches:
            agent.uninstall_patch(patch)
    assert traced == plain
    records = action_records(trace_dir)
    one(records, "cp_file s3://fs-same/k2 from s3://fs-same/k", "exit")
    one(records, "rm 3 paths s3://fs-same/k ...", "exit")


def test_s3fs_write_to_a_server_that_never_answers_is_running(
    trace_dir,
    s3_server,  # noqa: F811
    s3_patches,  # noqa: F811
):
    silent = s3_server.silent()
    fs = s3_server.filesystem(
        silent.endpoint_url,
        config_kwargs={"read_timeout": 60, "retries": {"total_max_attempts": 1}},
    )
    fs.retries = 1

    def pipe() -> None:
        with actions.trace_action("Log Write", "eval log"):
            fs.pipe("hang/log.eval", b"zip")

    thread, outcome = in_thread(pipe)
    assert silent.wait_accepted()
    running = wait_for(
        lambda: (
            {a.detail: a for a in list(actions.open_actions.values())}
            if len(actions.open_actions) == 3
            else None
        )
    )
    outer = running["eval log"]
    action = running["pipe_file s3://hang/log.eval (3 B)"]
    call = running["PutObject s3://hang/log.eval (3 B)"]
    assert action.parent_id == outer.trace_id and call.parent_id == action.trace_id
    records = action_records(trace_dir)
    assert [r["event"] for r in records] == ["enter", "enter", "enter"]

    silent.close()
    thread.join(timeout=30)
    assert not thread.is_alive() and outcome
    records = action_records(trace_dir)
    assert one(records, "pipe_file s3://hang/log.eval (3 B)", "error")
    assert not actions.open_actions
