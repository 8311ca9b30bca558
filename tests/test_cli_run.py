"""`inspect-trace run` and `inspect-trace patches`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import read_records, untraced_env

from autotrace import config
from autotrace.startup import agent


def _env(**extra: str) -> dict[str, str]:
    return untraced_env(**extra)


def _run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("env", _env())
    return subprocess.run(
        ["inspect-trace", "run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,  # type: ignore[arg-type]
    )


def test_run_execs_the_command_with_its_exit_code_stdin_and_pid(tmp_path: Path) -> None:
    code = "import os, sys; print(os.getpid(), sys.stdin.read()); sys.exit(7)"
    proc = subprocess.Popen(
        ["inspect-trace", "run", "--trace-dir", str(tmp_path), "--", sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    out, _ = proc.communicate("from stdin", timeout=120)
    assert proc.returncode == 7
    pid, text = out.split(" ", 1)
    assert int(pid) == proc.pid  # exec: the command is the launcher's own process
    assert text.strip() == "from stdin"


def test_run_passes_settings_as_environment(tmp_path: Path) -> None:
    code = "import os, sys; print(os.environ['PYTHONPATH'].split(os.pathsep)[0]); print({k: v for k, v in os.environ.items() if k.startswith('AUTOTRACE_')})"
    result = _run(
        "--trace-dir",
        str(tmp_path),
        "--exclude-patches",
        "botocore",
        "--stuck-after",
        "5",
        sys.executable,
        "-c",
        code,
    )
    assert result.returncode == 0, result.stderr
    first_path, settings_text = result.stdout.splitlines()
    settings = eval(settings_text)
    assert first_path == str(
        Path(__import__("autotrace.startup.bootstrap").startup.bootstrap.__file__).parent
    )
    assert settings[config.ENV_DIR] == str(tmp_path)
    assert settings[config.ENV_EXCLUDE_PATCHES] == "botocore"
    assert settings[config.ENV_STUCK_AFTER] == "5.0"
    assert settings[config.ENV_RUN_ID]
    # Shipped patches' targets come from the static table: nothing else is passed.
    assert "AUTOTRACE_PATCH_TARGETS" not in settings
    assert config.ENV_EXTRA_PATCHES not in settings


# `run` with options goes through click; without, the console script starts the command
# itself (autotrace.cli.launch): both must behave the same.
WITH_AND_WITHOUT_OPTIONS = pytest.mark.parametrize(
    "with_options", [True, False], ids=["click", "quick"]
)


def _options(tmp_path: Path, with_options: bool) -> tuple[str, ...]:
    return ("--trace-dir", str(tmp_path)) if with_options else ()


@WITH_AND_WITHOUT_OPTIONS
def test_missing_command_is_one_line_and_127(tmp_path: Path, with_options: bool) -> None:
    options = _options(tmp_path, with_options)
    result = _run(*options, "--", "autotrace-no-such-command", "x")
    assert result.returncode == 127
    assert result.stderr.strip().splitlines() == [
        "inspect-trace run: autotrace-no-such-command: command not found"
    ]


@WITH_AND_WITHOUT_OPTIONS
def test_command_that_is_not_executable_is_126(tmp_path: Path, with_options: bool) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\necho hi\n")
    result = _run(*_options(tmp_path, with_options), str(script))
    assert result.returncode == 126
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--", "CMD"],
        ["CMD"],
        ["--", "--", "CMD"],
        ["CMD", "--", "x"],
        ["CMD", "--help"],
        ["--trace-dir", "DIR", "--", "CMD"],
        ["--trace-dir", "DIR", "CMD", "--stuck-after", "3"],
    ],
)
def test_run_without_options_starts_the_same_command_in_the_same_environment(
    tmp_path: Path, args: list[str]
) -> None:
    """What `run` hands the command (argv, AUTOTRACE_* settings, PYTHONPATH) is the same
    whether click reads its arguments or the console script starts the command itself."""
    # the run id has the launcher's pid in it; the agent in the command sets the other two
    skip = {config.ENV_RUN_ID, config.ENV_PARENT_PID, config.ENV_ACTIVE}
    show = (
        f"SKIP = {sorted(skip)!r}\n"
        "import json, os, sys; print(json.dumps([sys.argv[1:], {k: v for k, v in "
        "os.environ.items() if k.startswith('AUTOTRACE_') and k not in SKIP}, "
        "os.environ['PYTHONPATH']]))"
    )
    words = [str(tmp_path) if a == "DIR" else a for a in args]
    command = [sys.executable, "-c", show]
    at = words.index("CMD")
    words[at : at + 1] = command
    env = _env(AUTOTRACE_DIR=str(tmp_path))
    quick = subprocess.run(
        ["inspect-trace", "run", *words], capture_output=True, text=True, env=env, timeout=120
    )
    assert quick.returncode == 0, quick.stderr
    # the same arguments, read by the click command
    from click.testing import CliRunner

    from autotrace.cli.run import run_command

    seen: list[tuple[list[str], dict[str, str]]] = []

    def start(command: list[str], command_env: dict[str, str]) -> None:
        seen.append((command, command_env))

    import autotrace.cli.launch as launch

    original, launch.start = launch.start, start  # type: ignore[assignment]
    try:
        result = CliRunner().invoke(run_command, words, env=env)
    finally:
        launch.start = original
    assert result.exit_code == 0, result.output
    [(clicked, clicked_env)] = seen
    argv, settings, python_path = json.loads(quick.stdout)
    assert clicked[:3] == command and clicked[3:] == argv
    assert python_path == clicked_env["PYTHONPATH"]
    assert settings == {
        k: v
        for k, v in clicked_env.items()
        if k.startswith("AUTOTRACE_") and k != "AUTOTRACE_RUN_ID"
    }


def test_the_quick_launcher_imports_neither_click_nor_rich_nor_typing() -> None:
    """`inspect-trace run -- CMD` is a process every traced run waits for: it starts the
    command without the modules that take tens of milliseconds to import."""
    probe = (
        "import os, sys\n"
        "sys.argv = ['inspect-trace', 'run', '--', 'true']\n"
        "def start(*args):\n"
        "    heavy = sorted(m for m in ('click', 'rich', 'typing') if m in sys.modules)\n"
        "    print(' '.join(['started', *heavy])); os._exit(0)\n"
        "os.execvpe = start\n"
        "from autotrace.cli.launch import entry\n"
        "entry()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"


def test_unknown_patch_name_is_refused(tmp_path: Path) -> None:
    result = _run("--patches", "nope", "true")
    assert result.returncode != 0
    assert "unknown patch nope" in result.stderr


def test_python_script_module_and_console_script_are_traced(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("import subprocess; subprocess.run(['true'])\n")
    (tmp_path / "script.py").write_text("import subprocess; subprocess.run(['true'])\n")
    (tmp_path / "test_x.py").write_text(
        "import subprocess\n\ndef test_x():\n    subprocess.run(['true'])\n"
    )
    commands = [
        [sys.executable, "script.py"],
        [sys.executable, "-m", "pkg"],
        ["pytest", "-q", "-p", "no:cacheprovider", "test_x.py"],
    ]
    for index, command in enumerate(commands):
        trace_dir = tmp_path / f"traces{index}"
        result = _run("--trace-dir", str(trace_dir), "--", *command, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        records = [r for path in trace_dir.glob("trace-*.log") for r in read_records(path)]
        assert [r["event"] for r in records if r.get("action") == "Subprocess"] == [
            "enter",
            "exit",
        ], command
        assert records[0]["message"] == "[autotrace] process start"


def test_patches_option_limits_what_is_installed(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text("import subprocess; subprocess.run(['true'])\n")
    result = _run(
        "--trace-dir",
        str(tmp_path / "t"),
        "--patches",
        "botocore",
        sys.executable,
        "script.py",
        cwd=tmp_path,
    )
    assert result.returncode == 0
    assert not (tmp_path / "t").exists()  # nothing traced: no file at all


def test_entry_point_patches_are_passed_to_the_traced_process(tmp_path: Path) -> None:
    # A third-party distribution registering a patch in the entry-point group.
    site = tmp_path / "site"
    dist = site / "thirdparty_patch-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-patch\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[autotrace.patches]\nthirdparty = thirdparty_patch:PATCH\n"
    )
    (site / "thirdparty_patch.py").write_text(
        textwrap.dedent(
            """
            from autotrace.startup.patching import Patch, Wrap
            PATCH = Patch(
                name="thirdparty",
                description="colorsys conversions",
                wraps=[Wrap("colorsys", "rgb_to_hsv", action="Color", describe=lambda i, a, k: "rgb_to_hsv")],
            )
            """
        )
    )
    env = _env(PYTHONPATH=str(site))
    listing = subprocess.run(
        ["inspect-trace", "patches", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["thirdparty"]["source"] == "entry point"
    assert rows["thirdparty"]["targets"] == ["colorsys"]
    (tmp_path / "script.py").write_text("import colorsys; print(colorsys.rgb_to_hsv(1, 0, 0))\n")
    result = _run(
        "--trace-dir", str(tmp_path / "t"), sys.executable, "script.py", cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    records = [r for path in (tmp_path / "t").glob("trace-*.log") for r in read_records(path)]
    assert [(r["action"], r["event"]) for r in records if "action" in r] == [
        ("Color", "enter"),
        ("Color", "exit"),
    ]


def test_patches_lists_targets_and_whether_libraries_are_installed() -> None:
    result = subprocess.run(
        ["inspect-trace", "patches", "--json"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(agent.available_patch_names()) <= set(rows)
    row = rows["subprocess"]
    assert row["targets"] == ["subprocess", "asyncio.base_subprocess"]
    assert row["libraries"] == {"subprocess": True, "asyncio": True}
    assert row["description"]
    table = subprocess.run(
        ["inspect-trace", "patches"],
        env=_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "subprocess" in table.stdout and "asyncio.base_subprocess" in table.stdout
