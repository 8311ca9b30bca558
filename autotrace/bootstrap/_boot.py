"""The bootstrap's work: chain to the program's own sitecustomize, then activate the agent.

Nothing here may crash the host program.
"""

from __future__ import annotations

import os
import sys


def boot(bootstrap_file: str) -> None:
    """Activate the agent once per process, after any other sitecustomize on the path."""
    _chain_sitecustomize(os.path.dirname(os.path.abspath(bootstrap_file)))
    if os.environ.get("AUTOTRACE_DISABLE", "").strip().lower() in ("1", "true", "yes"):
        return
    try:
        from autotrace import agent

        agent.activate()
    except Exception as exc:  # never break the program
        try:
            sys.stderr.write(f"[autotrace] agent not started: {exc!r}\n")
        except Exception:
            pass


def _chain_sitecustomize(own_dir: str) -> None:
    """Import the sitecustomize our directory hides, if there is one (ddtrace does the same)."""
    module = sys.modules.pop("sitecustomize", None)
    saved_path = list(sys.path)
    try:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != own_dir]
        import importlib

        try:
            importlib.import_module("sitecustomize")
        except ImportError:
            pass
        except Exception as exc:
            sys.stderr.write(f"[autotrace] the program's sitecustomize failed: {exc!r}\n")
    finally:
        sys.path[:] = saved_path
        if module is not None:
            sys.modules["sitecustomize"] = module
