"""The outside components some tests need, installed on first use when they are missing.

So the README's test command works on a fresh machine, and a required component never
skips: Debian's ``chromium`` (the timeline tests), the ``docker`` CLI (a daemon that never
answers), and Arize Phoenix in a venv of its own (the OTLP backend). ``.ci/run`` installs
the same things ahead of time (Phoenix in the background) only to save time. A failed
install is a test failure with the installer's last lines, never a skip.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PHOENIX_VENV = Path(
    os.environ.get("AUTOTRACE_PHOENIX_VENV", Path.home() / ".cache" / "autotrace-phoenix")
)
PHOENIX_REQUIREMENT = "arize-phoenix>=12"
# How the tests and benchmarks start chromium: as root it needs --no-sandbox; the rest keep
# it off the (closed) network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_TIMEOUT = 1800  # seconds: Phoenix resolves and installs a few hundred MB


def _run(command: list[str], what: str, **kwargs: object) -> None:
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            **kwargs,  # type: ignore[call-overload]
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"installing {what} failed: {exc}")
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        pytest.fail(f"installing {what} failed (exit {done.returncode}):\n{tail}")


def _locked(name: str) -> int:
    """An exclusive lock held while one process installs ``name`` (parallel runs wait)."""
    path = Path.home() / ".cache" / f"autotrace-install-{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _apt_install(package: str, program: str, *, installed: bool | None = None) -> str:
    found = shutil.which(program)
    if found and installed is not False:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(f"{program} is missing; install Debian's {package} (apt-get install {package})")
    fd = _locked(package)
    try:
        if installed is False or not shutil.which(program):
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            _run(["apt-get", "update", "-qq"], package, env=env)
            _run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                package,
                env=env,
            )
    finally:
        os.close(fd)
    found = shutil.which(program)
    if not found:
        pytest.fail(f"{package} installed, but {program} is not on PATH")
    return found


def chromium() -> str:
    """The path of Debian's chromium, installed when missing."""
    return _apt_install("chromium", "chromium")


def docker_cli() -> str:
    """The path of the docker CLI (Debian's docker.io), installed when missing."""
    return _apt_install("docker.io", "docker")


def phoenix_venv() -> Path:
    """The venv of Arize Phoenix, made and installed when missing."""
    phoenix = PHOENIX_VENV / "bin" / "phoenix"
    if phoenix.exists():
        return PHOENIX_VENV
    fd = _locked("phoenix")
    try:
        if not phoenix.exists():
            _run([sys.executable, "-m", "venv", "--clear", str(PHOENIX_VENV)], "a venv for Phoenix")
            pip = [str(PHOENIX_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            _run([*pip, PHOENIX_REQUIREMENT], "Arize Phoenix")
    finally:
        os.close(fd)
    if not phoenix.exists():
        pytest.fail(f"Arize Phoenix installed in {PHOENIX_VENV}, but it has no bin/phoenix")
    return PHOENIX_VENV


def cpython_test_package() -> None:
    """CPython's own ``test`` package for this interpreter (Debian ships it apart, as
    libpythonX.Y-testsuite), installed when missing."""
    probe = [sys.executable, "-c", "import test.test_subprocess"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    _apt_install(f"libpython{version}-testsuite", "true", installed=False)
    if subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.fail(f"CPython's test package is missing for {sys.executable}")
