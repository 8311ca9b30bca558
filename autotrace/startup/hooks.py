"""Post-import hooks that cost nothing until a watched module is imported.

wrapt's ``when_imported`` would do, but importing wrapt costs ~60 ms (it imports
asyncio and importlib.metadata), far over our start-up budget; so does importlib.abc
(~24 ms), so the finder and loader below only follow its protocols. This finder only
looks at names it watches; the callback (a patch installer) imports wrapt then.
"""

from __future__ import annotations

import _thread
import importlib.machinery
import sys

from autotrace.runtime import forks

TYPE_CHECKING = False  # typing costs milliseconds: imported by type checkers only
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

    Callback = Callable[[ModuleType], None]

_hooks: dict[str, list[Callback]] = {}
_lock = _thread.RLock()


def _new_lock_in_child() -> None:
    # A thread of the parent may have held the lock at fork time: that thread does
    # not exist in the child, so the child's first watched import would wait forever.
    global _lock
    _lock = _thread.RLock()


forks.after_fork_in_child(_new_lock_in_child)
_resolving = _thread._local()


class _HookLoader:
    """Wraps the real loader: runs the module, then the hooks for its name."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        if spec is not None:
            spec.loader = self.loader  # the module sees its own loader, as without us
        module.__loader__ = self.loader
        self.loader.exec_module(module)
        _fire(module.__name__, module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, get_source, ...
        return getattr(self.loader, name)


class _HookFinder:
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _hooks or getattr(_resolving, "active", False):
            return None
        _resolving.active = True
        try:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
            if spec is None:
                for finder in sys.meta_path:
                    if finder is self or not hasattr(finder, "find_spec"):
                        continue
                    spec = finder.find_spec(fullname, path, target)
                    if spec is not None:
                        break
        finally:
            _resolving.active = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _HookLoader(spec.loader)  # type: ignore[assignment]
        return spec


_finder = _HookFinder()


def _fire(name: str, module: ModuleType) -> None:
    # A callback may register more callbacks for this module (a deferred patch that
    # loads and installs itself): those run too, in the same pass.
    called: list[Callback] = []
    while True:
        with _lock:
            pending = [cb for cb in _hooks.get(name, ()) if cb not in called]
        if not pending:
            return
        for callback in pending:
            called.append(callback)
            callback(module)  # installers guard themselves


def when_imported(name: str, callback: Callback) -> None:
    """Call ``callback(module)`` once ``name`` is imported (at once if it already is)."""
    with _lock:
        _hooks.setdefault(name, []).append(callback)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__spec__", None) is not None:
        _initialized = not getattr(module.__spec__, "_initializing", False)
        if _initialized:
            callback(module)


def remove_hook(name: str, callback: Callback) -> None:
    """Forget a callback registered with ``when_imported``."""
    with _lock:
        callbacks = _hooks.get(name, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            _hooks.pop(name, None)
