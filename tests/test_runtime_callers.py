"""Work handed to another thread or loop: the stuck report names the caller that waits.

Each program hangs inside work that runs away from the program's line (an executor's
worker, asyncio.to_thread, anyio's worker threads, another thread's event loop through
run_coroutine_threadsafe or anyio.from_thread, fsspec's loop thread under s3fs). The
stuck record carries ``caller_stack`` / ``caller_where``: the program's line that waits,
marked ``# CALLER`` in each script; `anomalies` shows it on the culprit's row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from s3_server import MotoS3, moto_endpoint, s3_server  # noqa: F401  (pytest fixtures)
from test_e2e_hangs import (
    Traced,
    anomalies,
    anomalies_text,
    marker_line,
    wait_for_stuck,
)

pytestmark = pytest.mark.slow


def caller(script: Path, function: str) -> str:
    return f"{script}:{marker_line(script, 'CALLER')} in {function}"


def _stuck_with_caller(traced: Traced, detail: str) -> dict[str, Any]:
    return wait_for_stuck(
        traced, lambda r: detail in r.get("detail", "") and bool(r.get("caller_where"))
    )


HANG = 'subprocess.run(["sleep", "600"])'


@pytest.mark.parametrize(
    ("name", "body", "function"),
    [
        (
            "executor",
            "def main():\n"
            "    with concurrent.futures.ThreadPoolExecutor() as pool:\n"
            "        pool.submit(work).result()  # CALLER\n"
            "\n"
            "main()\n",
            "main",
        ),
        (
            "asyncio_to_thread",
            "async def main():\n"
            "    await asyncio.to_thread(work)  # CALLER\n"
            "\n"
            "asyncio.run(main())\n",
            "main",
        ),
        (
            "anyio_to_thread",
            "async def main():\n"
            "    await anyio.to_thread.run_sync(work)  # CALLER\n"
            "\n"
            "anyio.run(main)\n",
            "main",
        ),
    ],
)
def test_sync_work_on_a_worker_thread_names_the_waiting_caller(
    traced: Traced, tmp_path: Path, name: str, body: str, function: str
) -> None:
    script = tmp_path / f"{name}.py"
    script.write_text(
        "import asyncio, concurrent.futures, subprocess\n"
        "import anyio, anyio.to_thread\n"
        "\n"
        "def work():\n"
        f"    {HANG}  # WAITS\n"
        "\n" + body
    )
    traced.start(script)
    stuck = _stuck_with_caller(traced, "sleep 600")
    assert stuck["where"] == f"{script}:{marker_line(script)} in work"
    assert stuck["caller_where"] == caller(script, function)
    assert "called from" in stuck["message"]

    print(anomalies_text(traced.trace_dir))  # shown with -s
    culprit = anomalies(traced.trace_dir)["running"][0]
    assert culprit["detail"] == "sleep 600"
    assert culprit["caller_where"] == caller(script, function)


def test_coroutine_run_on_another_threads_loop_names_the_blocked_caller(
    traced: Traced, tmp_path: Path
) -> None:
    script = tmp_path / "threadsafe.py"
    script.write_text(
        "import asyncio, threading\n"
        "\n"
        "async def work():\n"
        '    proc = await asyncio.create_subprocess_exec("sleep", "600")\n'
        "    await proc.wait()  # WAITS\n"
        "\n"
        "def main():\n"
        "    loop = asyncio.new_event_loop()\n"
        "    threading.Thread(target=loop.run_forever, daemon=True).start()\n"
        "    asyncio.run_coroutine_threadsafe(work(), loop).result()  # CALLER\n"
        "\n"
        "main()\n"
    )
    traced.start(script)
    stuck = _stuck_with_caller(traced, "sleep 600")
    assert stuck["stack_source"] == "task"
    assert stuck["where"] == f"{script}:{marker_line(script)} in work"
    assert stuck["caller_where"] == caller(script, "main")
    print(anomalies_text(traced.trace_dir))  # shown with -s
    assert anomalies(traced.trace_dir)["running"][0]["caller_where"] == caller(script, "main")


def test_anyio_from_thread_run_names_the_worker_line_that_waits(
    traced: Traced, tmp_path: Path
) -> None:
    script = tmp_path / "from_thread.py"
    script.write_text(
        "import anyio, anyio.from_thread, anyio.to_thread\n"
        "\n"
        "async def work():\n"
        '    await anyio.run_process(["sleep", "600"])  # WAITS\n'
        "\n"
        "def blocking():\n"
        "    anyio.from_thread.run(work)  # CALLER\n"
        "\n"
        "async def main():\n"
        "    await anyio.to_thread.run_sync(blocking)\n"
        "\n"
        "anyio.run(main)\n"
    )
    traced.start(script)
    stuck = _stuck_with_caller(traced, "sleep 600")
    assert stuck["caller_where"] == caller(script, "blocking")
    # Followed back across both hops: the worker's caller (main's await) is there too.
    assert any(f["function"] == "main" for f in stuck["caller_stack"])
    assert stuck["caller_stack"][-1]["function"] != "main"
    print(anomalies_text(traced.trace_dir))  # shown with -s


def test_s3fs_write_hung_on_fsspecs_loop_thread_names_the_programs_line(
    traced: Traced,
    tmp_path: Path,
    s3_server: MotoS3,  # noqa: F811
) -> None:
    bucket = s3_server.bucket()
    proxy = s3_server.stallable()
    proxy.stall()
    script = tmp_path / "s3fs_hang.py"
    script.write_text(
        "import s3fs\n"
        "\n"
        "def save(fs):\n"
        f'    fs.pipe("{bucket}/out/result.json", b"{{}}")  # CALLER\n'
        "\n"
        "save(s3fs.S3FileSystem(skip_instance_cache=True))\n"
    )
    traced.start(script, **s3_server.env_for(proxy.endpoint_url))
    stuck = wait_for_stuck(
        traced,
        lambda r: (
            r.get("stuck_action") == "S3"
            and r.get("thread") != "MainThread"
            and bool(r.get("caller_where"))
        ),
    )
    # The action's own frames are aiobotocore's on fsspec's thread; the caller is the program.
    assert "site-packages" in stuck["where"]
    assert stuck["caller_where"] == caller(script, "save")
    assert stuck["caller_thread"] == "MainThread"

    print(anomalies_text(traced.trace_dir))  # shown with -s
    culprit = anomalies(traced.trace_dir)["running"][0]
    assert culprit["action"] == "S3"
    assert culprit["caller_where"] == caller(script, "save")
