"""Activation: register one post-import hook per patch target. Called by the bootstrap.

Kept light (no wrapt, rich, click, typing, importlib.metadata): it runs at start-up of
every traced process. The target modules of the shipped patches come from the static
table in ``autotrace.startup.targets``: a patch module is imported only when the program
first imports one of its targets, and nothing is read from or written to disk.

Patches are named by a reference: a shipped patch by its module name in
``autotrace.patches`` ("subprocess"), a third-party one as "module:attr" (from the
entry-point group ``autotrace.patches``, resolved with its targets by the launcher and
passed in AUTOTRACE_EXTRA_PATCHES).
"""

from __future__ import annotations

import _thread
import os
import sys

from autotrace import config
from autotrace.startup import hooks, targets
from autotrace.startup.patching import report

TYPE_CHECKING = False  # typing costs milliseconds at start-up
if TYPE_CHECKING:
    from types import ModuleType

    from autotrace.startup.patching import Patch

ENTRY_POINT_GROUP = "autotrace.patches"

_active: dict[str, Patch] = {}
_deferred: dict[str, _Deferred] = {}
_lock = _thread.RLock()


def available_patch_names() -> list[str]:
    """Names of the patches shipped in autotrace.patches."""
    return sorted(targets.SHIPPED)


def entry_point_patches() -> dict[str, str]:
    """Third-party patches of the entry-point group ``autotrace.patches``: name -> 'module:attr'.

    importlib.metadata is slow (tens of ms to import): the launcher calls this, the
    bootstrap only when AUTOTRACE_ENTRY_POINTS=1, and it is imported only when some
    installed distribution may declare the group.
    """
    if not _may_declare_patches():
        return {}
    from importlib.metadata import entry_points

    found: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        value = ep.value if ":" in ep.value else f"{ep.value}:PATCH"
        found.setdefault(ep.name, value.replace(" ", ""))
    return found


def _may_declare_patches() -> bool:
    """Whether an installed distribution may declare an ``autotrace.patches`` entry point.

    Looks where importlib.metadata's path finder looks, more cheaply: the
    ``entry_points.txt`` of each ``*.dist-info`` / ``*.egg-info`` directory in the
    directories of ``sys.path``. Anything it cannot see that way (a zip or egg file on
    the path, a meta-path finder of its own that finds distributions) answers yes.
    """
    from importlib.machinery import PathFinder

    if any(
        hasattr(finder, "find_distributions") and finder is not PathFinder
        for finder in sys.meta_path
    ):
        return True
    for entry in sys.path:
        directory = entry or "."
        if os.path.isfile(directory):
            return True  # a zip or an egg: importlib.metadata reads it
        try:
            names = os.listdir(directory)
        except OSError:
            continue  # a path that does not exist holds nothing
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(directory, name, "entry_points.txt"), "rb") as f:
                    if ENTRY_POINT_GROUP.encode() in f.read():
                        return True
            except OSError:
                continue  # no entry points (or an .egg-info file: its entries are none)
    return False


def load_patch(name: str) -> Patch:
    """The ``PATCH`` of ``autotrace.patches.<name>`` (or of a 'module:attr' reference)."""
    import importlib

    if ":" in name:
        module_name, attr = name.split(":", 1)
        return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]
    return importlib.import_module(f"autotrace.patches.{name}").PATCH  # type: ignore[no-any-return]


def selected_targets() -> dict[str, list[str]]:
    """Every patch this process installs, with its target modules: {ref: modules}.

    Shipped patches from the static table, filtered by AUTOTRACE_PATCHES /
    AUTOTRACE_EXCLUDE_PATCHES; then the third-party ones of AUTOTRACE_EXTRA_PATCHES (and
    of the entry points when AUTOTRACE_ENTRY_POINTS=1). A third-party patch whose targets
    are not given is loaded to learn them; one that cannot be loaded is reported.
    """
    only = config.env_list(config.ENV_PATCHES)
    excluded = config.env_list(config.ENV_EXCLUDE_PATCHES)
    table = {
        name: list(targets.SHIPPED[name])
        for name in targets.select(available_patch_names(), only, excluded)
    }
    extra = targets.parse_extra(os.environ.get(config.ENV_EXTRA_PATCHES, ""))
    if config.env_flag(config.ENV_ENTRY_POINTS):
        try:
            found = entry_point_patches()
        except Exception as exc:
            report(f"entry points of {ENTRY_POINT_GROUP} could not be read: {exc!r}")
            found = {}
        for name in targets.select(found, only, excluded):
            extra.setdefault(found[name], [])
    for ref, modules in extra.items():
        if ref in table:
            continue
        if not modules:
            try:
                modules = list(load_patch(ref).target_modules())
            except Exception as exc:
                report(f"patch {ref} disabled: could not be loaded: {exc!r}", patch=ref)
                continue
        table[ref] = modules
    return table


class _Deferred:
    """The start-up hook of one patch: loads and installs it when a target is first imported."""

    def __init__(self, ref: str, targets: list[str]) -> None:
        self.ref = ref
        self.targets = targets
        self.done = False

    def register(self) -> None:
        for module_name in self.targets:
            hooks.when_imported(module_name, self)
            if self.done:
                return

    def unregister(self) -> None:
        for module_name in self.targets:
            hooks.remove_hook(module_name, self)

    def __call__(self, module: ModuleType) -> None:
        with _lock:  # not held while loading: the patch's imports may wait on other imports
            if self.done:
                return
            self.done = True
            _deferred.pop(self.ref, None)
        self.unregister()
        try:
            patch = load_patch(self.ref)
        except Exception as exc:
            report(f"patch {self.ref} disabled: could not be loaded: {exc!r}", patch=self.ref)
            return
        _install_when_wrapt_is_ready(patch)


# Patches loaded while wrapt was half imported (wrapt imports asyncio, which imports
# subprocess, a target): installed once wrapt's import has finished.
_waiting_for_wrapt: list[Patch] = []


def _wrapt_is_importing() -> bool:
    module = sys.modules.get("wrapt")
    spec = getattr(module, "__spec__", None)
    return module is not None and bool(getattr(spec, "_initializing", False))


def _install_when_wrapt_is_ready(patch: Patch) -> None:
    if not patch.needs_wrapt():  # os.system at start-up, subprocess: no wrapt
        _install_reported(patch)
        return
    if _wrapt_is_importing():
        with _lock:
            _waiting_for_wrapt.append(patch)
        return
    try:
        import wrapt  # noqa: F401  (its import may queue other patches, installed below)
    except Exception as exc:
        report(f"patch {patch.name} disabled: wrapt cannot be imported: {exc!r}", patch=patch.name)
        return
    _install_reported(patch)
    _install_waiting()


def _install_waiting(module: object = None) -> None:
    """Install the patches that waited for wrapt (a hook on wrapt itself, and after our import)."""
    # Called as wrapt's hook, wrapt has run to the end though it is still marked initializing.
    ready = module is not None
    while True:
        with _lock:
            if not _waiting_for_wrapt or (not ready and _wrapt_is_importing()):
                return
            patch = _waiting_for_wrapt.pop(0)
        _install_reported(patch)


def _install_reported(patch: Patch) -> None:
    try:
        # Registers the patch's own hooks: installed at once on targets already
        # imported; a module being imported now gets it from hooks._fire.
        install_patch(patch)
    except Exception as exc:
        report(f"patch {patch.name} disabled: {exc!r}", patch=patch.name)


def install_patch(patch: Patch) -> None:
    """Register the hooks of one patch (installed now for targets already imported)."""
    with _lock:
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
    with _lock:
        _active.pop(patch.name, None)


def activate() -> None:
    """Register the hooks of every selected patch; never raises.

    A patch is loaded when one of its target modules is imported (at once if one already is).
    """
    try:
        table = selected_targets()
    except Exception as exc:
        report(f"no patch installed: {exc!r}")
        return
    if table:
        # The program may import wrapt itself, and a target in the middle of it.
        hooks.when_imported("wrapt", _install_waiting)
    for ref, modules in table.items():
        deferred = _Deferred(ref, modules)
        with _lock:
            if ref in _deferred:
                continue
            _deferred[ref] = deferred
        try:
            deferred.register()
        except Exception as exc:
            report(f"patch {ref} disabled: {exc!r}", patch=ref)
