"""Everything each patch replaces, described before and after installing it (JSON on stdout).

Run in a fresh interpreter by the behaviour suite: it imports every target module,
installs each patch, notes what ``patch.installed`` replaced and how the replacement
looks from outside (signature, async-ness, names, pickling, isinstance, descriptor
kind), uninstalls, and checks the original is back.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import pickle
import sys
import warnings
from typing import Any

from autotrace.startup import agent


def _pickles(obj: Any) -> str:
    try:
        back = pickle.loads(pickle.dumps(obj))
        copy.copy(obj)
        copy.deepcopy(obj)
    except Exception as exc:
        return f"fails: {type(exc).__name__}"
    return "same object" if back is obj else f"loads as {type(back).__name__}"


def describe(obj: Any) -> dict[str, Any]:
    try:
        signature = str(inspect.signature(obj))
    except (TypeError, ValueError) as exc:
        signature = f"no signature: {type(exc).__name__}"
    return {
        "signature": signature,
        "coroutine function": inspect.iscoroutinefunction(obj),
        "generator function": inspect.isgeneratorfunction(obj),
        "async generator function": inspect.isasyncgenfunction(obj),
        "callable": callable(obj),
        "name": getattr(obj, "__name__", None),
        "qualname": getattr(obj, "__qualname__", None),
        "module": getattr(obj, "__module__", None),
        "doc": getattr(obj, "__doc__", None),
        "pickle": _pickles(obj),
    }


def _where(parent: Any, attribute: str) -> str:
    if isinstance(parent, type):
        return f"{parent.__module__}.{parent.__qualname__}.{attribute}"
    return f"{getattr(parent, '__name__', parent)}.{attribute}"


def _kind(parent: Any, attribute: str) -> str:
    static = inspect.getattr_static(parent, attribute)
    for kind in (staticmethod, classmethod, property):
        if isinstance(static, kind):
            return kind.__name__
    return "plain"


def main() -> None:
    warnings.simplefilter("ignore")
    out: list[dict[str, Any]] = []
    for name in agent.available_patch_names():
        patch = agent.load_patch(name)
        for module_name in patch.target_modules():
            try:
                importlib.import_module(module_name)
            except ImportError:
                pass  # a module of another release of the library (optional rows)
        agent.install_patch(patch)
        enabled = patch.enabled
        installed = list(patch.installed)
        rows = []
        for parent, attribute, stored in installed:
            wrapped = getattr(parent, attribute)
            rows.append(
                {
                    "where": _where(parent, attribute),
                    "wrapped": describe(wrapped),
                    "wrapped kind": _kind(parent, attribute),
                    "_objects": (parent, attribute, stored, wrapped),
                }
            )
        agent.uninstall_patch(patch)
        for row in rows:
            parent, attribute, stored, wrapped = row.pop("_objects")
            original = getattr(parent, attribute)
            row["original"] = describe(original)
            row["original kind"] = _kind(parent, attribute)
            row["restored"] = inspect.getattr_static(parent, attribute) is stored or (
                stored is inspect.getattr_static(parent, attribute, None)
            )
            row["isinstance of the original's type"] = isinstance(wrapped, type(original))
        out.append({"patch": name, "enabled": enabled, "installed": len(installed), "rows": rows})
    json.dump(out, sys.stdout, indent=1, default=str)


if __name__ == "__main__":
    main()
