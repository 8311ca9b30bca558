"""Start-up imports only what it must, and chains to the program's own sitecustomize once.

A traced ``python -c pass`` is compared with an untraced one (``sys.modules`` in each):
every module the agent adds must be in the lists below. A new one fails this test: add it
only if it is small and needed before the program's first line (and say why).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import untraced_env

from autotrace.startup import bootstrap

BOOTSTRAP_DIR = str(Path(bootstrap.__file__).parent)
EXAMPLE_DIR = str(Path(__file__).parent.parent / "sitecustomize_example")

# Our own start-up modules (os_system is installed at start-up: os is already imported).
OWN = {
    "autotrace",
    "autotrace.config",
    "autotrace.patches",
    "autotrace.patches.os_system",
    "autotrace.runtime",
    "autotrace.runtime.forks",
    "autotrace.runtime.guard",
    "autotrace.runtime.process_info",
    "autotrace.startup",
    "autotrace.startup.agent",
    "autotrace.startup.bootstrap",
    "autotrace.startup.bootstrap._boot",
    "autotrace.startup.hooks",
    "autotrace.startup.patching",
    "autotrace.startup.targets",
    "sitecustomize",  # the bootstrap itself
}
# Small standard modules start-up may add (each well under a millisecond).
STDLIB = {
    "__future__",  # `from __future__ import annotations`
    "importlib",  # hooks.py: importlib.machinery.PathFinder for watched names
    "importlib._bootstrap",
    "importlib._bootstrap_external",
    "importlib.machinery",
    "warnings",  # imported by importlib's package
}
NEVER = {"pathlib", "re", "enum", "typing", "dataclasses", "wrapt", "inspect", "socket", "json"}

SYS_MODULES = "import sys; print(' '.join(sorted(sys.modules)))"


def _modules(env: dict[str, str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", SYS_MODULES], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("path", [BOOTSTRAP_DIR, EXAMPLE_DIR], ids=["launcher", "example"])
def test_traced_python_gains_only_the_listed_modules(tmp_path: Path, path: str) -> None:
    base = untraced_env(AUTOTRACE_DIR=str(tmp_path))
    base.pop("PYTHONPATH", None)
    bare = _modules(base)
    traced = _modules(dict(base, PYTHONPATH=path))
    gained = traced - bare
    assert gained - OWN - STDLIB == set()
    assert {"autotrace.startup.agent", "autotrace.patches.os_system"} <= gained  # active
    assert not (NEVER - bare) & traced


@pytest.mark.parametrize("activation", ["launcher", "example"])
def test_program_sitecustomize_runs_once_in_the_traced_program(
    tmp_path: Path, activation: str
) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "sitecustomize.py").write_text(
        "import os, sys\n"
        "with open(os.environ['MARKER'], 'a') as f:\n"
        "    f.write(repr(sys.orig_argv) + '\\n')\n"
    )
    marker = tmp_path / "marker"
    env = untraced_env(MARKER=str(marker), AUTOTRACE_DIR=str(tmp_path / "t"))
    program = [sys.executable, "-c", "import subprocess; subprocess.run(['true'])"]
    if activation == "launcher":
        env["PYTHONPATH"] = str(user)
        command = ["inspect-trace", "run", "--", *program]
    else:
        env["PYTHONPATH"] = os.pathsep.join([EXAMPLE_DIR, str(user)])
        command = program
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    runs = marker.read_text().splitlines()
    program_runs = [line for line in runs if "inspect-trace" not in line]
    assert len(program_runs) == 1, runs
    assert len(list((tmp_path / "t").glob("trace-*.log"))) == 1  # and the agent was active


@pytest.mark.xfail(
    strict=True,
    reason="the launcher is itself a Python process started with the user's PYTHONPATH: "
    "site imports the user's sitecustomize before inspect-trace's code runs",
)
def test_launcher_process_does_not_run_the_program_sitecustomize(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    marker = tmp_path / "marker"
    (user / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'a').write('ran\\n')\n")
    env = untraced_env(PYTHONPATH=str(user), AUTOTRACE_DIR=str(tmp_path / "t"))
    done = subprocess.run(
        ["inspect-trace", "run", "--", "true"], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0
    assert not marker.exists()
