"""The bootstrap: activation in every process, chaining, guards, child processes, patch errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import read_records, untraced_env

from autotrace import config
from autotrace.startup import bootstrap

BOOTSTRAP_DIR = str(Path(bootstrap.__file__).parent)
EXAMPLE_DIR = str(Path(__file__).parent.parent / "sitecustomize_example")

# What the bootstrap must never import at start-up (each costs milliseconds).
# autotrace.startup.patching is imported (the os_system patch is installed at start-up), and
# must stay as light: it imports none of these itself.
HEAVY_MODULES = {
    "wrapt",
    "rich",
    "click",
    "platformdirs",
    "json",
    "asyncio",
    "typing",
    "importlib.metadata",
    "autotrace.runtime.actions",
    "autotrace.runtime.writer",
    "autotrace.records",
    "autotrace.redact",
    "dataclasses",
    "inspect",
    "subprocess",
}


def _env(trace_dir: Path, *path: str, **extra: str) -> dict[str, str]:
    env = untraced_env()
    env["PYTHONPATH"] = os.pathsep.join(path)
    env[config.ENV_DIR] = str(trace_dir)
    env["XDG_CACHE_HOME"] = str(trace_dir.parent / "cache")  # must stay untouched
    env.update(extra)
    return env


def _launcher_env(trace_dir: Path, **extra: str) -> dict[str, str]:
    """The environment `inspect-trace run` gives the command (with the patch target table)."""
    from autotrace.cli import launch as launcher

    env = launcher.environment(str(trace_dir), [], [], None)
    env.update(extra)
    return env


def _python(
    code: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _files(trace_dir: Path) -> dict[int, list[dict]]:
    return {
        int(path.name[len("trace-") : -len(".log")]): read_records(path)
        for path in trace_dir.glob("trace-*.log")
    }


def test_bootstrap_imports_nothing_heavy_at_start_up(tmp_path: Path) -> None:
    result = _python("import sys; print(','.join(sorted(sys.modules)))", _launcher_env(tmp_path))
    loaded = set(result.stdout.strip().split(","))
    assert "autotrace.startup.agent" in loaded  # the agent is active
    assert loaded & HEAVY_MODULES == set()


def test_child_processes_are_traced_with_run_id_and_parent_pid(tmp_path: Path) -> None:
    trace_dir = tmp_path / "t"
    code = """
        import os, subprocess, sys
        subprocess.run([sys.executable, "-c", "import subprocess; subprocess.run(['true'])"], check=True)
        print(os.getpid())
    """
    result = _python(code, _env(trace_dir, BOOTSTRAP_DIR, AUTOTRACE_RUN_ID="run-42"))
    parent = int(result.stdout)
    files = _files(trace_dir)
    assert len(files) == 2 and parent in files
    child = next(pid for pid in files if pid != parent)
    for pid, records in files.items():
        header = records[0]
        assert header["message"] == "[autotrace] process start"
        assert header["run_id"] == "run-42"
        assert header["pid"] == pid
    assert files[parent][0]["parent_pid"] is None
    assert files[child][0]["parent_pid"] == parent
    assert files[child][0]["argv"][1] == "-c"
    # Each file has the one Subprocess action its process started.
    assert [r["event"] for r in files[child] if "action" in r] == ["enter", "exit"]


def test_header_argv_is_redacted(tmp_path: Path) -> None:
    trace_dir = tmp_path / "t"
    code = "import subprocess; subprocess.run(['true'])"
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--password",
            "hunter2secret",
            "OPENAI_API_KEY=sk-abcdefghijklmnopqrstu",
        ],
        env=_env(trace_dir, BOOTSTRAP_DIR),
        check=True,
        timeout=60,
    )
    (records,) = _files(trace_dir).values()
    text = str(records[0]["argv"])
    assert "hunter2secret" not in text and "sk-abcdefghijklmnopqrstu" not in text


def test_disable_turns_the_agent_off(tmp_path: Path) -> None:
    trace_dir = tmp_path / "t"
    code = "import subprocess, sys; subprocess.run(['true']); print('autotrace.startup.agent' in sys.modules)"
    result = _python(code, _env(trace_dir, BOOTSTRAP_DIR, AUTOTRACE_DISABLE="1"))
    assert result.stdout.strip() == "False"
    assert not trace_dir.exists()


def test_sitecustomize_example_activates_the_agent(tmp_path: Path) -> None:
    trace_dir = tmp_path / "t"
    result = _python("import subprocess; subprocess.run(['true'])", _env(trace_dir, EXAMPLE_DIR))
    assert result.returncode == 0, result.stderr
    (records,) = _files(trace_dir).values()
    assert [r["event"] for r in records if "action" in r] == ["enter", "exit"]


@pytest.mark.parametrize("dirs", [[BOOTSTRAP_DIR], [EXAMPLE_DIR, BOOTSTRAP_DIR]])
def test_program_sitecustomize_runs_exactly_once_after_the_agent(
    tmp_path: Path, dirs: list[str]
) -> None:
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    marker = tmp_path / "marker"
    (user_dir / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            with open({str(marker)!r}, "a") as f:
                f.write(str("autotrace.startup.agent" in sys.modules) + "\\n")
            USER_SITECUSTOMIZE = True
            """
        )
    )
    result = _python("print('ok')", _env(tmp_path / "t", *dirs, str(user_dir)))
    assert result.returncode == 0, result.stderr
    assert marker.read_text().splitlines() == ["True"]  # once, with our hooks already set


def test_process_started_while_the_agent_sets_up_does_not_set_it_up_again(tmp_path: Path) -> None:
    # A patch module that starts a Python child while it is being loaded at start-up.
    lib = tmp_path / "lib"
    lib.mkdir()
    out = tmp_path / "child.txt"
    (lib / "spawning_patch.py").write_text(
        textwrap.dedent(
            f"""
            import subprocess, sys
            from autotrace.startup.patching import Patch
            subprocess.run([sys.executable, "-c",
                "import sys, os; open({str(out)!r}, 'a').write(str('autotrace.startup.agent' in sys.modules) + os.environ.get('AUTOTRACE_ACTIVE', '') + '\\\\n')"])
            PATCH = Patch(name="spawning", description="starts a process while loading")
            """
        )
    )
    env = _env(
        tmp_path / "t", BOOTSTRAP_DIR, str(lib), AUTOTRACE_EXTRA_PATCHES="spawning_patch:PATCH"
    )
    result = _python("import os; print(os.environ.get('AUTOTRACE_ACTIVE'))", env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"  # the guard is gone once set-up is over
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("False")


BROKEN_PATCHES = {
    "raises_on_install": """
        from autotrace.startup.patching import Patch

        def boom(module):
            raise RuntimeError("deliberately broken")

        PATCH = Patch(name="broken", description="raises while installing", modules=("colorsys",), on_import=boom)
    """,
    "raises_on_import": """
        raise RuntimeError("deliberately broken at import")
    """,
}


@pytest.mark.parametrize("kind", sorted(BROKEN_PATCHES))
def test_broken_patch_is_reported_once_and_the_program_goes_on(tmp_path: Path, kind: str) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "brokenpatch.py").write_text(textwrap.dedent(BROKEN_PATCHES[kind]))
    trace_dir = tmp_path / "t"
    env = _env(
        trace_dir,
        BOOTSTRAP_DIR,
        str(lib),
        AUTOTRACE_EXTRA_PATCHES="brokenpatch:PATCH=colorsys",
    )
    code = """
        import colorsys, subprocess
        print(colorsys.rgb_to_hsv(1, 0, 0), subprocess.run(['true']).returncode)
    """
    result = _python(code, env)
    assert result.returncode == 0
    assert result.stdout.strip() == "(0.0, 1.0, 1) 0"
    warnings = [line for line in result.stderr.splitlines() if "[autotrace]" in line]
    assert len(warnings) == 1 and "deliberately broken" in warnings[0]
    (records,) = _files(trace_dir).values()
    notes = [r for r in records if "deliberately broken" in r["message"]]
    assert len(notes) == 1 and notes[0]["message"].startswith("[autotrace] ")
    assert "action" not in notes[0]
    # The other patches still work.
    assert [r["event"] for r in records if r.get("action") == "Subprocess"] == ["enter", "exit"]


def test_entry_points_are_read_only_when_asked(tmp_path: Path) -> None:
    code = "import sys; print('importlib.metadata' in sys.modules)"
    plain = _python(code, _launcher_env(tmp_path))
    asked = _python(code, _launcher_env(tmp_path, AUTOTRACE_ENTRY_POINTS="1"))
    # Asked, with no distribution declaring the group: found so by a cheap look at the
    # entry_points.txt files, without importing importlib.metadata.
    assert (plain.stdout.strip(), asked.stdout.strip()) == ("False", "False")
    # A distribution on the path that declares the group: importlib.metadata reads it.
    site = tmp_path / "site"
    dist = site / "declaring-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: declaring\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[autotrace.patches]\nmine = declaring:PATCH\n")
    (site / "declaring.py").write_text("")
    env = _launcher_env(tmp_path, AUTOTRACE_ENTRY_POINTS="1")
    env["PYTHONPATH"] += os.pathsep + str(site)
    declared = _python(code, env)
    assert declared.stdout.strip() == "True", declared.stderr


def test_example_activation_imports_no_patch_before_its_target(tmp_path: Path) -> None:
    # The static table names the targets: no patch is imported to learn them, nothing cached.
    code = "import sys; print(sorted(m for m in sys.modules if m.startswith('autotrace.patches.')))"
    env = _env(tmp_path / "t", EXAMPLE_DIR)
    result = _python(code, env)
    assert result.stdout.strip() == "['autotrace.patches.os_system']", result.stderr
    assert not (tmp_path / "cache").exists()


def test_third_party_patch_without_targets_is_loaded_at_start_up(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "colorpatch.py").write_text(
        textwrap.dedent(
            """
            from autotrace.startup.patching import Patch, Wrap
            PATCH = Patch(
                name="color",
                description="colorsys conversions",
                wraps=[Wrap("colorsys", "rgb_to_hsv", action="Color", describe=lambda i, a, k: "hsv")],
            )
            """
        )
    )
    trace_dir = tmp_path / "t"
    env = _env(trace_dir, BOOTSTRAP_DIR, str(lib), AUTOTRACE_EXTRA_PATCHES="colorpatch:PATCH")
    result = _python("import colorsys; colorsys.rgb_to_hsv(1, 0, 0)", env)
    assert result.returncode == 0 and "[autotrace]" not in result.stderr, result.stderr
    (records,) = _files(trace_dir).values()
    assert [(r["action"], r["event"]) for r in records if "action" in r] == [
        ("Color", "enter"),
        ("Color", "exit"),
    ]


def test_program_that_imports_wrapt_first_is_still_traced(tmp_path: Path) -> None:
    # wrapt imports asyncio, which imports subprocess: a target seen while wrapt is half done.
    trace_dir = tmp_path / "t"
    code = """
        import wrapt, subprocess, asyncio
        subprocess.run(["true"])
        async def main():
            proc = await asyncio.create_subprocess_exec("true")
            await proc.wait()
        asyncio.run(main())
    """
    result = _python(code, _launcher_env(trace_dir))
    assert result.returncode == 0 and "[autotrace]" not in result.stderr, result.stderr
    (records,) = _files(trace_dir).values()
    assert [r["event"] for r in records if "action" in r] == ["enter", "exit"] * 2


def test_program_sees_sys_path_as_without_the_launcher(tmp_path: Path) -> None:
    """The launcher's folder leaves sys.path once the bootstrap ran (children still get it
    through PYTHONPATH), and what the program's own sitecustomize did to sys.path stays."""
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "sitecustomize.py").write_text("import sys\nsys.path.append('/added-by-user')\n")
    code = """
        import json, os, subprocess, sys
        child = subprocess.run(
            [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"],
            capture_output=True, text=True, check=True,
        )
        print(json.dumps([sys.path, json.loads(child.stdout), os.environ["PYTHONPATH"]]))
    """
    plain = _python(code, _env(tmp_path / "t", str(user_dir)))
    traced = _python(code, _env(tmp_path / "t", BOOTSTRAP_DIR, str(user_dir)))
    assert plain.returncode == 0 and traced.returncode == 0, traced.stderr
    plain_path, _, _ = json.loads(plain.stdout)
    traced_path, child_path, python_path = json.loads(traced.stdout)
    assert "/added-by-user" in plain_path
    assert traced_path == plain_path
    # The child booted too (else our folder, first on its PYTHONPATH, would be in its path).
    assert child_path == plain_path
    assert python_path.split(os.pathsep)[0] == BOOTSTRAP_DIR
    (records,) = _files(tmp_path / "t").values()
    assert [r["event"] for r in records if r.get("action") == "Subprocess"] == ["enter", "exit"]


def test_interpreter_without_autotrace_runs_quietly_and_chains(tmp_path: Path) -> None:
    # A python outside this venv (here: the base interpreter) inherits PYTHONPATH too.
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "sitecustomize.py").write_text("print('user sitecustomize')\n")
    env = _env(tmp_path / "t", BOOTSTRAP_DIR, str(user_dir))
    result = subprocess.run(
        [str(base_python), "-c", "print('program')"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["user sitecustomize", "program"]
    assert result.stderr == ""


def test_forked_child_writes_its_own_file_with_the_parent_pid(tmp_path: Path) -> None:
    trace_dir = tmp_path / "t"
    code = """
        import os, subprocess
        subprocess.run(["true"])
        child = os.fork()
        if child == 0:
            subprocess.run(["true"])
            os._exit(0)
        os.waitpid(child, 0)
        print(os.getpid(), child)
    """
    result = _python(code, _launcher_env(trace_dir))
    parent, child = map(int, result.stdout.split())
    files = _files(trace_dir)
    assert set(files) == {parent, child}
    assert files[child][0]["parent_pid"] == parent
    assert files[child][0]["run_id"] == files[parent][0]["run_id"]
    for records in files.values():
        assert [r["event"] for r in records if "action" in r] == ["enter", "exit"]
