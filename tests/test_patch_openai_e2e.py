"""End to end: a program run by ``inspect-trace run`` (agent activated by the bootstrap,
hooks registered before openai / anthropic are imported) shows its stalled model stream
as a running Model action."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import read_records
from llm_server import LLMServer

INSPECT_TRACE = Path(sys.executable).parent / "inspect-trace"
OPENAI_KEY = "sk-test-0123456789abcdef0123456789"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef012345"

CLIENT = f"""
import asyncio, os
import anthropic, openai

base = os.environ["LLM_URL"]
o = openai.OpenAI(base_url=base + "/v1", api_key="{OPENAI_KEY}", max_retries=0)
reply = o.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
print(reply.choices[0].message.content, flush=True)

async def main():
    a = anthropic.AsyncAnthropic(base_url=base, api_key="{ANTHROPIC_KEY}", max_retries=0)
    args = dict(model="claude-x", max_tokens=10, messages=[{{"role": "user", "content": "hi"}}])
    async with a.messages.stream(**args) as stream:
        async for _ in stream.text_stream:
            pass

asyncio.run(main())
"""


@pytest.fixture
def llm() -> Iterator[LLMServer]:
    with LLMServer([{"do": "reply"}, {"do": "stall", "chunks": 3}]) as server:
        yield server


@pytest.mark.slow
def test_stalled_stream_in_a_traced_program_is_a_running_model_action(
    llm: LLMServer, tmp_path: Path
) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    trace_dir = tmp_path / "traces"
    env = {**os.environ, "LLM_URL": llm.base_url}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [str(INSPECT_TRACE), "run", "--trace-dir", str(trace_dir), "--"]
    proc = subprocess.Popen(
        [*command, sys.executable, str(script)],
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        llm.wait_hanging(1, timeout=60)
        (trace,) = trace_dir.glob("trace-*.log")
        actions = [r for r in read_records(trace) if r.get("action") == "Model"]
        assert [(r["event"], r["detail"]) for r in actions] == [
            ("enter", "generate (openai/gpt-4o-mini)"),
            ("exit", "generate (openai/gpt-4o-mini)"),
            ("enter", "generate (anthropic/claude-x)"),
        ]
        report = subprocess.run(
            [str(INSPECT_TRACE), "anomalies", "--json", str(trace)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        running = json.loads(report.stdout)["running"]
        assert [r["detail"] for r in running] == ["generate (anthropic/claude-x)"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    raw = trace.read_bytes()
    assert OPENAI_KEY.encode() not in raw and ANTHROPIC_KEY.encode() not in raw
