"""Starting a command with the agent active, and the console script that does it first.

Every traced run waits for this process before its command starts, so nothing here
imports click, typing or anything else slow: `inspect-trace run -- CMD` (no option of
``run``'s) starts CMD straight from ``entry``, in the time Python itself takes to start;
with options, or for any other verb, ``entry`` hands over to the click group
(``autotrace.cli.main``), whose `run` parses them and calls the same functions.

The launcher does almost nothing (as ddtrace-run): it puts the bootstrap folder first on
PYTHONPATH, passes its settings as AUTOTRACE_* variables and execs the command, so the
exit code, signals, stdin and the terminal are the command's own. The slow look-ups
(entry points, each patch's target modules) happen here once, not in every process.
"""

from __future__ import annotations

import os
import sys
import time

from autotrace import config
from autotrace.startup import agent, bootstrap, targets

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

BOOTSTRAP_DIR = os.path.dirname(os.path.abspath(bootstrap.__file__))


class LaunchError(Exception):
    """The command cannot be started as asked: one line for the user (exit 1)."""


def names(value: str | None) -> list[str]:
    """The names of a comma-separated option value."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def command_of(args: tuple[str, ...] | list[str]) -> list[str]:
    """The command in ``run``'s arguments once its options are read (one ``--`` left
    in front of it is not part of it)."""
    command = list(args)
    return command[1:] if command[:1] == ["--"] else command


def patch_catalog() -> list[dict[str, Any]]:
    """Every known patch: shipped ones, then those of the ``autotrace.patches`` entry points."""
    entries = [
        {"name": name, "ref": name, "source": "shipped"} for name in agent.available_patch_names()
    ]
    try:
        third_party = agent.entry_point_patches()
    except Exception as exc:
        raise LaunchError(
            f"cannot read the {agent.ENTRY_POINT_GROUP} entry points: {exc!r}"
        ) from exc
    for name, ref in sorted(third_party.items()):
        if not any(entry["name"] == name for entry in entries):
            entries.append({"name": name, "ref": ref, "source": "entry point"})
    return entries


def environment(
    trace_dir: str | None,
    only: list[str],
    excluded: list[str],
    stuck_after: float | None,
) -> dict[str, str]:
    """The environment of the traced command."""
    catalog = patch_catalog()
    known = {entry["name"] for entry in catalog}
    unknown = [name for name in only + excluded if name not in known]
    if unknown:
        raise LaunchError(f"unknown patch {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    chosen = set(targets.select(known, only, excluded))
    env = dict(os.environ)
    for name in (
        config.ENV_ACTIVE,
        config.ENV_PARENT_PID,
        config.ENV_ENTRY_POINTS,
        config.ENV_EXTRA_PATCHES,
        config.ENV_PATCHES,
        config.ENV_EXCLUDE_PATCHES,
    ):
        env.pop(name, None)
    env[config.ENV_RUN_ID] = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    if trace_dir:
        env[config.ENV_DIR] = os.path.abspath(os.path.expanduser(trace_dir))
    if only:
        env[config.ENV_PATCHES] = ",".join(only)
    if excluded:
        env[config.ENV_EXCLUDE_PATCHES] = ",".join(excluded)
    # A malformed number is reported once, here, and every process gets the value in use.
    if env.get(config.ENV_KEEP, "").strip():
        env[config.ENV_KEEP] = str(config.keep_files())
    if stuck_after is None and env.get(config.ENV_STUCK_AFTER, "").strip():
        stuck_after = config.stuck_after()
    if stuck_after is not None:
        env[config.ENV_STUCK_AFTER] = repr(stuck_after)
    # Third-party patches with their targets, so that no traced process imports a patch
    # before the program imports one of its targets (shipped ones: autotrace.startup.targets).
    extra: dict[str, list[str]] = {}
    for entry in catalog:
        if entry["source"] != "entry point" or entry["name"] not in chosen:
            continue
        try:
            extra[entry["ref"]] = list(agent.load_patch(entry["ref"]).target_modules())
        except Exception as exc:
            _say(f"[autotrace] patch {entry['name']} cannot be loaded: {exc!r}")
    if extra:
        env[config.ENV_EXTRA_PATCHES] = targets.format_extra(extra)
    python_path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOTSTRAP_DIR + (os.pathsep + python_path if python_path else "")
    return env


def start(command: list[str], env: dict[str, str]) -> NoReturn:
    """Become ``command`` (exit 127 / 126 with one line when it cannot be started)."""
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        _cannot_start(command[0], "command not found", 127)
    except PermissionError:
        _cannot_start(command[0], "permission denied", 126)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the command
        _cannot_start(command[0], getattr(exc, "strerror", None) or exc, 126)


def _cannot_start(program: str, reason: object, code: int) -> NoReturn:
    from autotrace.cli.console import visible

    _say(f"inspect-trace run: {visible(program)}: {visible(reason)}")
    raise SystemExit(code) from None


def _say(line: str) -> None:
    """One line on stderr, whatever it can encode (as the click verbs write theirs)."""
    from autotrace.cli.console import tolerant_streams

    tolerant_streams()
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _plain_run(argv: list[str]) -> list[str] | None:
    """The command of ``run`` given none of its options (``run -- CMD`` or ``run CMD``,
    as click reads them), else None."""
    if argv[:1] != ["run"] or len(argv) < 2:
        return None
    if argv[1] != "--" and argv[1].startswith("-"):
        return None  # an option of run's (or --help): click's to read
    command = command_of(argv[2:] if argv[1] == "--" else argv[1:])
    return command or None


def entry() -> None:
    """The console script (and ``python -m autotrace``)."""
    command = _plain_run(sys.argv[1:])
    if command is not None:
        try:
            env = environment(None, [], [], None)
        except LaunchError as exc:
            _say(f"Error: {exc}")
            raise SystemExit(1) from None
        start(command, env)
    from autotrace.cli.console import mark_own_process
    from autotrace.cli.main import main

    mark_own_process()
    main()
