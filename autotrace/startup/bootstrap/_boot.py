"""The bootstrap's work: activate the agent, then chain to the program's own sitecustomize.

Runs in every traced process, so it imports only what it needs, and nothing here may
crash the host program.
"""

from __future__ import annotations

import os
import sys

_booted = False


def boot(bootstrap_file: str) -> bool:
    """Activate the agent once per process, then import the sitecustomize our folder hides.

    The agent is not set up when AUTOTRACE_DISABLE is set, nor in a process started while
    another one was setting it up (AUTOTRACE_ACTIVE), which would recurse. Returns whether
    the program has a sitecustomize of its own (then it is ``sys.modules["sitecustomize"]``).
    """
    global _booted
    first, _booted = not _booted, True
    if first:
        _activate()
    return _chain_sitecustomize(os.path.dirname(os.path.abspath(bootstrap_file)))


def chain_only(bootstrap_file: str) -> bool:
    """Only import the sitecustomize our folder hides (an interpreter without autotrace)."""
    try:
        return _chain_sitecustomize(os.path.dirname(os.path.abspath(bootstrap_file)))
    except Exception:
        return False


def _activate() -> None:
    from autotrace.runtime import guard

    guard.call(_activate_agent, on_error=lambda exc: guard.warn(f"agent not started: {exc!r}"))


def _activate_agent() -> None:
    from autotrace import config

    if config.env_flag(config.ENV_DISABLE) or os.environ.get(config.ENV_ACTIVE):
        return
    os.environ[config.ENV_ACTIVE] = str(os.getpid())
    try:
        from autotrace.runtime import process_info
        from autotrace.startup import agent

        process_info.claim()
        agent.activate()
    finally:
        os.environ.pop(config.ENV_ACTIVE, None)


def _chain_sitecustomize(own_dir: str) -> bool:
    """Import the sitecustomize our directory hides, if there is one (ddtrace does the same).

    It runs exactly once: it is left in ``sys.modules`` as the program's ``sitecustomize``
    (our module stands there only until its own import ends). True if there is one.
    """
    module = sys.modules.pop("sitecustomize", None)
    found = None
    saved_path = list(sys.path)
    try:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != own_dir]
        import importlib

        try:
            found = importlib.import_module("sitecustomize")
        except ImportError as exc:
            if exc.name != "sitecustomize":
                sys.stderr.write(f"[autotrace] the program's sitecustomize failed: {exc!r}\n")
        except Exception as exc:
            sys.stderr.write(f"[autotrace] the program's sitecustomize failed: {exc!r}\n")
    finally:
        sys.path[:] = saved_path
        if found is not None:
            sys.modules["sitecustomize"] = found  # what `import sitecustomize` gives, as without us
        elif module is not None:
            sys.modules["sitecustomize"] = module
    return found is not None
