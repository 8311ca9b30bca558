"""Behaviour preservation across every patch: the program cannot tell the agent is there.

Two generic checks over what the patch authors' own tests leave out:

- every callable any patch replaces (read from ``patch.installed``, so new rows are
  covered without touching this file) keeps its signature, async-ness, generator-ness,
  names, docstring, descriptor kind and ``isinstance``, and is put back on uninstall;
- the same calls through subprocess, openai, anthropic and boto3, run plain and under
  ``inspect-trace run``, give identical results, exceptions (type, message, cause chain,
  pickling), warnings (category, message, file and line), types, async-ness, and stream
  and context-manager behaviour.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hard_support.traces import report, scan_dir
from llm_server import LLMServer
from s3_server import moto_endpoint, s3_server  # noqa: F401  (pytest fixtures)

from autotrace.startup import agent

HERE = Path(__file__).parent
WRAP_PROPS = HERE / "hard_support" / "wrap_props.py"
PROGRAM = HERE / "hard_support" / "behaviour_program.py"
INSPECT_TRACE = Path(sys.executable).parent / "inspect-trace"
PATCHES = agent.available_patch_names()


@pytest.fixture(scope="module")
def wrap_table() -> dict[str, Any]:
    """What each patch replaces, looked at before and after (in a fresh interpreter)."""
    done = subprocess.run(
        [sys.executable, str(WRAP_PROPS)], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    return {entry["patch"]: entry for entry in json.loads(done.stdout)}


SAME = (
    "signature",
    "coroutine function",
    "generator function",
    "async generator function",
    "callable",
    "name",
    "qualname",
    "module",
    "doc",
)


@pytest.mark.parametrize("patch", PATCHES)
def test_every_wrapped_callable_looks_like_the_original_and_is_put_back(
    wrap_table: dict[str, Any], patch: str
) -> None:
    entry = wrap_table[patch]
    assert entry["enabled"], f"{patch} disabled itself while installing"
    assert entry["installed"] > 0 and entry["rows"]
    for row in entry["rows"]:
        where = row["where"]
        for key in SAME:
            assert row["wrapped"][key] == row["original"][key], (where, key)
        assert row["wrapped kind"] == row["original kind"], where
        assert row["isinstance of the original's type"], where
        assert row["restored"], f"{where} not restored on uninstall"


def test_wrapped_callables_pickle_and_copy_where_the_originals_do(
    wrap_table: dict[str, Any],
) -> None:
    broken = [
        row["where"]
        for entry in wrap_table.values()
        for row in entry["rows"]
        if not row["original"]["pickle"].startswith("fails")
        and row["wrapped"]["pickle"].startswith("fails")
    ]
    assert broken == []


STEPS = [
    {"do": "reply", "text": "hello"},  # openai create
    {"do": "error", "status": 500, "message": "the server broke"},  # openai error
    {"do": "reply", "text": "streamed reply"},  # openai stream
    {"do": "reply", "text": "async"},  # openai async
    {"do": "reply", "text": "claude says"},  # anthropic create
    {"do": "error", "status": 400, "message": "bad request body"},  # anthropic error
    {"do": "reply", "text": "claude streams"},  # anthropic stream
    {"do": "reply", "text": "async claude"},  # anthropic async stream
]


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.slow
def test_the_same_calls_behave_identically_with_and_without_the_agent(
    tmp_path: Path,
    llm: LLMServer,
    s3_server,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    env = {
        **os.environ,
        **s3_server.env,
        "LLM_URL": llm.base_url,
        "CLOSED_URL": _closed_url(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("AUTOTRACE_DIR", "AUTOTRACE_FILE", "INSPECT_TRACE_FILE"):
        env.pop(name, None)
    trace_dir = tmp_path / "traces"
    outputs = {}
    for mode, prefix in (
        ("plain", []),
        ("traced", [str(INSPECT_TRACE), "run", "--trace-dir", str(trace_dir), "--"]),
    ):
        llm.script([dict(step) for step in STEPS])
        s3_server.reset()
        done = subprocess.run(
            [*prefix, sys.executable, str(PROGRAM)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        assert "[autotrace]" not in done.stderr, done.stderr
        outputs[mode] = json.loads(done.stdout)
    plain, traced = outputs["plain"], outputs["traced"]
    assert sorted(plain) == sorted(traced)
    differences = {
        name: (plain[name], traced[name]) for name in plain if plain[name] != traced[name]
    }
    assert differences == {}, json.dumps(differences, indent=1)
    # The traced run really went through the patches.
    events = Counter(r["action"] for r in scan_dir(trace_dir).actions() if r["event"] == "enter")
    assert events["Subprocess"] >= 5 and events["Model"] >= 9 and events["S3"] >= 3, events
    report(
        request.config,
        "behaviour",
        scenarios=len(plain),
        differences=len(differences),
        traced_actions=sum(events.values()),
    )


def _call_and_catch() -> list[tuple[str, str, int]]:
    from hard_support import warns_target

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warns_target.deprecated_call(2)
    return [(str(w.message), os.path.basename(w.filename), w.lineno) for w in caught]


def test_a_warning_blamed_on_the_caller_keeps_its_file_and_line(trace_dir: Path) -> None:
    from autotrace.startup.patching import Patch, Wrap

    plain = _call_and_catch()
    patch = Patch(
        name="hard-warns",
        description="test target",
        wraps=[Wrap("hard_support.warns_target", "deprecated_call", "Tool Call", lambda *a: "x")],
    )
    agent.install_patch(patch)
    try:
        traced = _call_and_catch()
    finally:
        agent.uninstall_patch(patch)
    assert plain[0][1] == "test_hard_behaviour.py"
    assert traced == plain


def test_an_async_call_not_traced_gets_the_librarys_coroutine_and_a_traced_one_is_an_action(
    trace_dir: Path,
) -> None:
    """A wrapped coroutine function whose call is not traced (the detail is None) returns
    the library's own coroutine; a traced call is one action, and the warning the library
    blames on its caller names the caller's line either way, as without the agent."""
    import asyncio

    from conftest import action_records
    from hard_support import warns_target

    from autotrace.startup.patching import Patch, Wrap

    original = warns_target.deprecated_coroutine

    async def awaiting(coroutine: Any) -> Any:
        return await coroutine  # the line the warning names

    def run(x: int) -> tuple[Any, int, list[tuple[str, str, int]]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            coroutine = warns_target.deprecated_coroutine(x)
            code = coroutine.cr_code
            result = asyncio.run(awaiting(coroutine))
        return (
            code,
            result,
            [(str(w.message), os.path.basename(w.filename), w.lineno) for w in caught],
        )

    plain = run(3)
    patch = Patch(
        name="hard-async",
        description="test target",
        wraps=[
            Wrap(
                "hard_support.warns_target",
                "deprecated_coroutine",
                "Tool Call",
                lambda instance, args, kwargs: None if args[0] < 0 else f"x={args[0]}",
            )
        ],
    )
    agent.install_patch(patch)
    try:
        untraced = run(-1)
        traced = run(3)
    finally:
        agent.uninstall_patch(patch)
    assert warns_target.deprecated_coroutine is original
    assert untraced[0] is original.__code__ and untraced[1] == -2
    assert traced[0] is not original.__code__ and traced[1:] == plain[1:]  # result, warning
    assert plain[2] and plain[2][0][1] == "test_hard_behaviour.py"
    assert untraced[2] == plain[2]
    events = [(r["event"], r["detail"]) for r in action_records(trace_dir)]
    assert events == [("enter", "x=3"), ("exit", "x=3")]
