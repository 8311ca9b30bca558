"""The static table of patch targets: it matches the patches, and start-up writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import untraced_env

from autotrace import patches
from autotrace.startup import agent, bootstrap, targets

BOOTSTRAP_DIR = str(Path(bootstrap.__file__).parent)
EXAMPLE_DIR = str(Path(__file__).parent.parent / "sitecustomize_example")


def test_every_patch_module_is_in_the_table() -> None:
    shipped = {
        name[:-3]
        for directory in patches.__path__
        for name in os.listdir(directory)
        if name.endswith(".py") and not name.startswith("_")
    }
    assert shipped == set(targets.SHIPPED)


@pytest.mark.parametrize("name", sorted(targets.SHIPPED))
def test_table_lists_the_targets_the_patch_declares(name: str) -> None:
    assert list(targets.SHIPPED[name]) == agent.load_patch(name).target_modules()


def test_selection_keeps_only_and_drops_excluded() -> None:
    names = ["a", "b", "c"]
    assert targets.select(names, [], []) == names
    assert targets.select(names, ["b", "c"], ["c"]) == ["b"]
    assert targets.select(names, [], ["a"]) == ["b", "c"]


def test_extra_patches_round_trip() -> None:
    table = {"pkg.mod:PATCH": ["colorsys", "json.decoder"], "other:P": []}
    assert targets.parse_extra(targets.format_extra(table)) == table
    assert targets.parse_extra("pkg:PATCH") == {"pkg:PATCH": []}


PROGRAM = """
import asyncio, json, subprocess, sys
subprocess.run(["true"])
async def main():
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()
asyncio.run(main())
subprocess.run([sys.executable, "-c", "import subprocess; subprocess.run(['true'])"])
"""


@pytest.mark.parametrize("activation", ["launcher", "example"])
def test_traced_program_writes_nothing_outside_the_trace_directory(
    tmp_path: Path, activation: str
) -> None:
    home, cache, data, trace_dir = (tmp_path / n for n in ("home", "cache", "data", "traces"))
    for directory in (home, cache, data):
        directory.mkdir()
    env = untraced_env(
        HOME=str(home),
        XDG_CACHE_HOME=str(cache),
        XDG_DATA_HOME=str(data),
        AUTOTRACE_DIR=str(trace_dir),
        PYTHONDONTWRITEBYTECODE="1",
    )
    if activation == "launcher":
        command = ["inspect-trace", "run", "--", sys.executable, "-c", PROGRAM]
    else:
        env["PYTHONPATH"] = EXAMPLE_DIR
        command = [sys.executable, "-c", PROGRAM]
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert len(list(trace_dir.glob("trace-*.log"))) == 2  # traced, both processes
    for directory in (home, cache, data):
        assert list(directory.rglob("*")) == [], directory
