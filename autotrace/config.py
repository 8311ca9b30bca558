"""Settings of the agent, read from the environment: the one place for every variable name.

Kept free of heavy imports: the bootstrap imports this module in every traced process,
so paths are plain strings built with os.path (pathlib would pull in re, fnmatch,
urllib.parse and ipaddress: milliseconds before the program's first line).
"""

from __future__ import annotations

import os
import sys

# Environment variables (the launcher sets them, children inherit them).
ENV_DIR = "AUTOTRACE_DIR"  # trace directory
ENV_FILE = "AUTOTRACE_FILE"  # explicit trace file for this process (tests, tools)
ENV_DISABLE = "AUTOTRACE_DISABLE"  # "1": the bootstrap does nothing
ENV_KEEP = "AUTOTRACE_KEEP"  # how many trace files to keep (default 10)
ENV_RUN_ID = "AUTOTRACE_RUN_ID"  # id shared by every process of one run
ENV_PARENT_PID = "AUTOTRACE_PARENT_PID"  # pid of the traced process that started this one
ENV_PATCHES = "AUTOTRACE_PATCHES"  # comma list: only these patches
ENV_EXCLUDE_PATCHES = "AUTOTRACE_EXCLUDE_PATCHES"  # comma list: not these patches
ENV_STUCK_AFTER = "AUTOTRACE_STUCK_AFTER"  # seconds before an open action counts as stuck
ENV_ACTIVE = "AUTOTRACE_ACTIVE"  # set by the bootstrap while it sets up (no recursion)
# Third-party patches (entry points) with their targets: 'module:attr=mod mod,module:attr'.
ENV_EXTRA_PATCHES = "AUTOTRACE_EXTRA_PATCHES"
ENV_ENTRY_POINTS = "AUTOTRACE_ENTRY_POINTS"  # "1": the bootstrap reads the entry points itself
INSPECT_TRACE_FILE = "INSPECT_TRACE_FILE"  # inspect's own override, honoured
# The INSPECT_TRACE_FILE value the agent itself set (so that inspect writes our file):
# a child that inherits that value ignores it and picks its own per-process file.
ENV_INSPECT_FILE_SET = "AUTOTRACE_INSPECT_TRACE_FILE"

DEFAULT_KEEP = 10
DEFAULT_STUCK_AFTER = 60.0
MAX_STUCK_AFTER = 10 * 365 * 86400.0  # ten years: beyond, waits overflow the OS's timers


def env_flag(name: str) -> bool:
    """True when the variable is set to something other than '', '0', 'false' or 'no'."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def env_list(name: str) -> list[str]:
    """A comma-separated variable as a list of stripped, non-empty names."""
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


_warned: set[str] = set()  # variables already warned about in this process


def env_float(
    name: str, default: float, *, minimum: float = 0.0, maximum: float = float("inf")
) -> float:
    """A finite number in [``minimum``, ``maximum``] from the environment, else
    ``default``: unset or empty silently; malformed (``nan``, ``inf``, ``-1``, ``ten``)
    with one warning on stderr per variable and process, so a typo never turns a
    feature off unseen."""
    value = _env_number(name)
    if value is None:
        return default
    if _finite(value) and minimum <= value <= maximum:
        return value
    _warn_once(name, f"a number in [{minimum:.10g}, {maximum:.10g}]", default)
    return default


def stuck_after() -> float:
    """Seconds an open action may run before the watchdog reports it (0: never)."""
    return env_float(ENV_STUCK_AFTER, DEFAULT_STUCK_AFTER, maximum=MAX_STUCK_AFTER)


def keep_files() -> int:
    """How many trace files rotation keeps in the trace directory (a whole number >= 1)."""
    value = _env_number(ENV_KEEP)
    if value is None:
        return DEFAULT_KEEP
    if _finite(value) and value >= 1 and value.is_integer():
        return int(value)
    _warn_once(ENV_KEEP, "a whole number >= 1", DEFAULT_KEEP)
    return DEFAULT_KEEP


def _env_number(name: str) -> float | None:
    """The variable as a float (NaN when it is not a number), None when unset or empty."""
    raw = os.environ.get(name, "")
    if not raw.strip():
        return None
    try:
        return float(raw)
    except ValueError:
        return float("nan")


def _warn_once(name: str, expected: str, default: float) -> None:
    if name in _warned:
        return
    _warned.add(name)
    raw = os.environ.get(name, "")[:40]
    try:  # the program's stderr may be anything, or closed: never let this fail it
        sys.stderr.write(f"[autotrace] {name}={raw!r} is not {expected}: using {default:g}\n")
        sys.stderr.flush()
    except Exception:
        pass


def inspect_trace_dir() -> str:
    """inspect's trace directory, so that `inspect trace anomalies` finds our files.

    On Linux the XDG rule platformdirs follows ($XDG_DATA_HOME, else ~/.local/share),
    without importing platformdirs (~20 ms); elsewhere platformdirs itself.
    """
    if sys.platform.startswith("linux"):
        data = os.environ.get("XDG_DATA_HOME", "").strip()
        if not data:
            data = os.path.join(os.path.expanduser("~"), ".local", "share")
        return os.path.join(data, "inspect_ai", "traces")
    from platformdirs import user_data_dir

    return os.path.join(user_data_dir("inspect_ai"), "traces")


def trace_dir() -> str:
    """The directory trace files go to: AUTOTRACE_DIR, else inspect's trace directory."""
    configured = os.environ.get(ENV_DIR)
    return os.path.expanduser(configured) if configured else inspect_trace_dir()


def explicit_trace_file() -> str | None:
    """AUTOTRACE_FILE, else an INSPECT_TRACE_FILE the user set (not one we set, maybe in a parent)."""
    explicit = os.environ.get(ENV_FILE)
    if explicit:
        return explicit
    inspect_file = os.environ.get(INSPECT_TRACE_FILE)
    if inspect_file and inspect_file != os.environ.get(ENV_INSPECT_FILE_SET):
        return inspect_file
    return None


def trace_file_for(pid: int) -> str:
    """The file this process writes: AUTOTRACE_FILE, INSPECT_TRACE_FILE, else trace-<pid>.log."""
    explicit = explicit_trace_file()
    if explicit:
        return os.path.expanduser(explicit)
    return os.path.join(trace_dir(), f"trace-{pid}.log")


def make_private_dirs(directory: str | os.PathLike[str]) -> None:
    """Create ``directory`` and every missing parent 0700; an existing directory is left alone.

    ``os.makedirs(mode=0o700)`` gives the mode to the leaf only (parents get 0777 less the
    umask), and the umask may narrow even the leaf: each directory created here is chmod-ed.
    """
    path = os.path.abspath(os.fspath(directory))
    missing: list[str] = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # made meanwhile by another process: its mode stays
            continue
        os.chmod(path, 0o700)


def _finite(value: float) -> bool:
    """Neither infinite nor NaN (math.isfinite without importing math at start-up)."""
    return value - value == 0
