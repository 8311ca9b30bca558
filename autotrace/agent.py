"""Activation: register one post-import hook per patch target. Called by the bootstrap.

Kept light (no wrapt, rich or click): it runs at start-up of every traced process.
"""

from __future__ import annotations

import importlib
import os
import sys

from autotrace import config, hooks
from autotrace.patching import Patch

_active: dict[str, Patch] = {}


def available_patch_names() -> list[str]:
    """Names of the patch modules shipped in autotrace.patches."""
    from autotrace import patches

    names = set()
    for directory in patches.__path__:
        try:
            for entry in os.listdir(directory):
                if entry.endswith(".py") and not entry.startswith("_"):
                    names.add(entry[:-3])
        except OSError:
            continue
    return sorted(names)


def load_patch(name: str) -> Patch:
    """The ``PATCH`` of ``autotrace.patches.<name>`` (or of a 'module:attr' reference)."""
    if ":" in name:
        module_name, attr = name.split(":", 1)
        return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]
    return importlib.import_module(f"autotrace.patches.{name}").PATCH  # type: ignore[no-any-return]


def selected_patch_names() -> list[str]:
    """Shipped patches filtered by AUTOTRACE_PATCHES / AUTOTRACE_EXCLUDE_PATCHES."""
    only = config.env_list(config.ENV_PATCHES)
    excluded = set(config.env_list(config.ENV_EXCLUDE_PATCHES))
    names = only or available_patch_names()
    return [name for name in names if name not in excluded]


def install_patch(patch: Patch) -> None:
    """Register the hooks of one patch (installed now for targets already imported)."""
    if patch.name in _active:
        return
    _active[patch.name] = patch
    patch.enabled = True
    for module_name in patch.target_modules():
        hooks.when_imported(module_name, patch.install_module)


def uninstall_patch(patch: Patch) -> None:
    """Remove the hooks and wrappers of one patch (tests)."""
    for module_name in patch.target_modules():
        hooks.remove_hook(module_name, patch.install_module)
    patch.uninstall()
    _active.pop(patch.name, None)


def active_patches() -> dict[str, Patch]:
    """The patches installed in this process, by name."""
    return dict(_active)


def activate() -> None:
    """Install every selected patch's hooks; never raises."""
    for name in selected_patch_names():
        try:
            install_patch(load_patch(name))
        except Exception as exc:
            sys.stderr.write(f"[autotrace] patch {name} disabled: could not be loaded: {exc!r}\n")
