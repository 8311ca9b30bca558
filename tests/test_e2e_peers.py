"""A peer suite on every change: CPython's own test_subprocess, plain and traced, must agree.

The full set of peer suites (openai, anthropic, botocore, s3fs, CPython, and inspect_ai's
own tests from a checkout) is benchmarks/peers.py; this runs its fastest member with this venv's python: regrtest with
its environment checks (``--fail-env-changed``: dangling threads, changed environment),
once plain and once under ``inspect-trace run``, and compares the outcome of every test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import components
import pytest
from conftest import untraced_env

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from peers import SUITES, outcomes_of  # noqa: E402

pytestmark = pytest.mark.slow

INSPECT_TRACE = Path(sys.executable).parent / "inspect-trace"


def _run(tmp_path: Path, traced: bool) -> tuple[dict[str, str], int]:
    kind = "traced" if traced else "plain"
    report = tmp_path / f"{kind}.xml"
    command = [sys.executable, "-m", "test", "--fail-env-changed", "--junit-xml", str(report)]
    command += SUITES["cpython-subprocess"].tests[:1]  # test_subprocess
    if traced:
        command = [
            str(INSPECT_TRACE),
            "run",
            "--trace-dir",
            str(tmp_path / "traces"),
            "--",
            *command,
        ]
    done = subprocess.run(
        command, cwd=tmp_path, env=untraced_env(), capture_output=True, text=True, timeout=900
    )
    return outcomes_of(report), done.returncode


def test_cpython_test_subprocess_has_the_same_outcomes_traced(tmp_path: Path) -> None:
    components.cpython_test_package()
    plain, plain_code = _run(tmp_path, traced=False)
    traced, traced_code = _run(tmp_path, traced=True)
    assert len(plain) > 300  # the suite really ran
    assert list((tmp_path / "traces").glob("trace-*.log"))  # and was traced
    differ = {
        t: (plain.get(t), traced.get(t))
        for t in plain.keys() | traced.keys()
        if plain.get(t) != traced.get(t)
    }
    assert differ == {}
    assert traced_code == plain_code  # regrtest's verdict, env-changed checks included
