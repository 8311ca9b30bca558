"""The bootstrap's work: activate the agent, then chain to the program's own sitecustomize.

Runs in every traced process, so it imports only what it needs, and nothing here may
crash the host program.
"""

from __future__ import annotations

import os
import sys

_booted = False


def boot(bootstrap_file: str, keep_folder: bool = True) -> bool:
    """Activate the agent once per process, then import the sitecustomize our folder hides.

    The agent is not set up when AUTOTRACE_DISABLE is set, nor in a process started while
    another one was setting it up (AUTOTRACE_ACTIVE), which would recurse. Returns whether
    the program has a sitecustomize of its own (then it is ``sys.modules["sitecustomize"]``).
    Without ``keep_folder``, our folder leaves ``sys.path`` (see ``_chain_sitecustomize``).
    """
    global _booted
    first, _booted = not _booted, True
    if first:
        _activate()
    return _chain_sitecustomize(os.path.dirname(os.path.abspath(bootstrap_file)), keep_folder)


def chain_only(bootstrap_file: str, keep_folder: bool = True) -> bool:
    """Only import the sitecustomize our folder hides (an interpreter without autotrace)."""
    try:
        return _chain_sitecustomize(os.path.dirname(os.path.abspath(bootstrap_file)), keep_folder)
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


def _chain_sitecustomize(own_dir: str, keep_folder: bool = True) -> bool:
    """Import the sitecustomize our directory hides, if there is one (ddtrace does the same).

    It runs exactly once: it is left in ``sys.modules`` as the program's ``sitecustomize``
    (our module stands there only until its own import ends), and what it does to
    ``sys.path`` stays. True if there is one.

    Our folder is out of ``sys.path`` while it is imported; afterwards it is put back where
    it was, or, without ``keep_folder`` (the folder the launcher put on PYTHONPATH), left
    out: the program sees ``sys.path`` as it would without us (its children still get
    the folder through PYTHONPATH), no import looks in it again, and its files
    (``_boot``) cannot be imported as top-level modules.
    """
    module = sys.modules.pop("sitecustomize", None)
    found = None
    ours = [(i, p) for i, p in enumerate(sys.path) if os.path.abspath(p or os.curdir) == own_dir]
    for index, _ in reversed(ours):
        del sys.path[index]
    try:
        import importlib

        try:
            found = importlib.import_module("sitecustomize")
        except ImportError as exc:
            if exc.name != "sitecustomize":
                sys.stderr.write(f"[autotrace] the program's sitecustomize failed: {exc!r}\n")
        except Exception as exc:
            sys.stderr.write(f"[autotrace] the program's sitecustomize failed: {exc!r}\n")
    finally:
        for index, entry in ours:
            if keep_folder:
                sys.path.insert(min(index, len(sys.path)), entry)
            else:
                sys.path_importer_cache.pop(entry, None)
        if found is not None:
            sys.modules["sitecustomize"] = found  # what `import sitecustomize` gives, as without us
        elif module is not None:
            sys.modules["sitecustomize"] = module
    return found is not None
