"""Frame choice: "where it waits" is the program's innermost line, else the innermost line
of an installed package, never the stdlib's when anything else is on the stack.

The end-to-end cases install a tiny agent package (a wheel) with pip into a
``site-packages`` folder of the test (``pip install --target``) and run it traced: once as the whole
program (every caller frame is in site-packages), once called from a script.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_e2e_hangs import (
    SITECUSTOMIZE,
    Traced,
    marker_line,
    wait_for_stuck,
)

from autotrace.runtime import watchdog


def entry(file: str, line: int = 1, function: str = "f") -> dict[str, object]:
    return {"file": file, "line": line, "function": function}


STDLIB = os.path.dirname(os.__file__)
SITE = "/venv/lib/python3.11/site-packages"


def test_program_frame_is_preferred_to_installed_and_stdlib_frames() -> None:
    stack = [
        entry("/home/me/prog.py", 3, "main"),
        entry(f"{SITE}/agent/tools.py", 10, "call_tool"),
        entry(f"{STDLIB}/subprocess.py", 1264, "Popen.wait"),
    ]
    assert watchdog.where_of(stack) == "/home/me/prog.py:3 in main"


def test_installed_frame_is_chosen_when_the_program_has_none() -> None:
    stack = [
        entry(f"{STDLIB}/runpy.py", 86, "_run_code"),
        entry(f"{SITE}/agent/__main__.py", 2, "<module>"),
        entry(f"{SITE}/agent/tools.py", 10, "call_tool"),
        entry(f"{STDLIB}/subprocess.py", 1264, "Popen.wait"),
        entry("<frozen importlib._bootstrap>", 1, "_call"),
    ]
    assert watchdog.where_of(stack) == f"{SITE}/agent/tools.py:10 in call_tool"


def test_only_stdlib_frames_give_the_innermost() -> None:
    stack = [entry(f"{STDLIB}/threading.py", 1, "run"), entry(f"{STDLIB}/time.py", 2, "x")]
    assert watchdog.where_of(stack) == f"{STDLIB}/time.py:2 in x"
    assert watchdog.where_of([]) == ""


def test_frame_kinds() -> None:
    assert watchdog.frame_kind(f"{STDLIB}/subprocess.py") == watchdog.STDLIB
    # site-packages below the stdlib directory (a pyenv or system Python) is installed code
    assert watchdog.frame_kind(f"{STDLIB}/site-packages/x/y.py") == watchdog.INSTALLED
    assert watchdog.frame_kind("/usr/lib/python3/dist-packages/x.py") == watchdog.INSTALLED
    assert watchdog.frame_kind("/work/project/agent.py") == watchdog.PROGRAM


AGENT_FILES = {
    "tinyagent/__init__.py": "",
    "tinyagent/tools.py": (
        'import subprocess\n\ndef call_tool():\n    subprocess.run(["sleep", "600"])  # WAITS\n'
    ),
    "tinyagent/__main__.py": "from tinyagent.tools import call_tool\n\ncall_tool()\n",
    "tinyagent-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinyagent\nVersion: 0.1\n",
    "tinyagent-0.1.dist-info/WHEEL": (
        "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    ),
}


def _wheel(directory: Path) -> Path:
    """tinyagent as a wheel, written by hand (no build backend needed offline)."""
    path = directory / "tinyagent-0.1-py3-none-any.whl"
    rows = []
    with zipfile.ZipFile(path, "w") as whl:
        for name, text in AGENT_FILES.items():
            whl.writestr(name, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
            rows.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
        rows.append("tinyagent-0.1.dist-info/RECORD,,")
        whl.writestr("tinyagent-0.1.dist-info/RECORD", "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def installed_agent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tinyagent installed by pip into <tmp>/site-packages (what PYTHONPATH then names)."""
    root = tmp_path_factory.mktemp("tinyagent")
    target = root / "site-packages"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"),
            *("--target", str(target), str(_wheel(root))),
        ],
        check=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("AUTOTRACE_")},
    )
    assert (target / "tinyagent" / "tools.py").exists()
    return target


def agent_path(installed_agent: Path) -> str:
    return os.pathsep.join((str(SITECUSTOMIZE), str(installed_agent)))


@pytest.mark.slow
def test_installed_agent_called_from_a_script_is_named_at_the_scripts_line(
    traced: Traced, tmp_path: Path, installed_agent: Path
) -> None:
    script = tmp_path / "run_agent.py"
    script.write_text("from tinyagent.tools import call_tool\n\ncall_tool()  # WAITS\n")
    traced.start(script, PYTHONPATH=agent_path(installed_agent))
    stuck = wait_for_stuck(traced, lambda r: r.get("detail") == "sleep 600")
    assert stuck["where"] == f"{script}:{marker_line(script)} in <module>"


@pytest.mark.slow
def test_installed_agent_run_as_the_program_is_named_at_its_own_line_not_the_stdlibs(
    traced: Traced, tmp_path: Path, installed_agent: Path
) -> None:
    tools = installed_agent / "tinyagent" / "tools.py"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinyagent"],
        cwd=tmp_path,
        env=traced.env(PYTHONPATH=agent_path(installed_agent)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    traced.procs.append(proc)
    stuck = wait_for_stuck(traced, lambda r: r.get("detail") == "sleep 600")
    # every frame of the program is in site-packages or the stdlib
    assert {watchdog.frame_kind(f["file"]) for f in stuck["stack"]} <= {
        watchdog.INSTALLED,
        watchdog.STDLIB,
    }
    assert stuck["stack"][-1]["file"].endswith("subprocess.py")
    assert stuck["where"] == f"{tools}:{marker_line(tools)} in call_tool"
