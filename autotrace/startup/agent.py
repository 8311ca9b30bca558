"""Activation: register one post-import hook per patch target. Called by the bootstrap.

Kept light (no wrapt, rich, click, typing, importlib.metadata): it runs at start-up of
every traced process. A patch module is not even imported at start-up when its target
modules are known from AUTOTRACE_PATCH_TARGETS (the launcher sets it, and the first
process of a run that had to import the patches sets it for its children): the hook
loads the patch on the first import of one of its targets.

Patches are named by a reference: a shipped patch by its module name in
``autotrace.patches`` ("subprocess"), a third-party one as "module:attr" (from the
entry-point group ``autotrace.patches``, resolved by the launcher and passed in
AUTOTRACE_EXTRA_PATCHES).
"""

from __future__ import annotations

import os
import sys
import threading

from autotrace import config
from autotrace.startup import hooks

TYPE_CHECKING = False  # typing costs milliseconds at start-up
if TYPE_CHECKING:
    from types import ModuleType

    from autotrace.startup.patching import Patch

ENTRY_POINT_GROUP = "autotrace.patches"

_active: dict[str, Patch] = {}
_deferred: dict[str, _Deferred] = {}
_lock = threading.RLock()


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


def entry_point_patches() -> dict[str, str]:
    """Third-party patches of the entry-point group ``autotrace.patches``: name -> 'module:attr'.

    importlib.metadata is slow (tens of ms): the launcher calls this, the bootstrap only
    when AUTOTRACE_ENTRY_POINTS=1.
    """
    from importlib.metadata import entry_points

    found: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        value = ep.value if ":" in ep.value else f"{ep.value}:PATCH"
        found.setdefault(ep.name, value.replace(" ", ""))
    return found


def load_patch(name: str) -> Patch:
    """The ``PATCH`` of ``autotrace.patches.<name>`` (or of a 'module:attr' reference)."""
    import importlib

    if ":" in name:
        module_name, attr = name.split(":", 1)
        return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]
    return importlib.import_module(f"autotrace.patches.{name}").PATCH  # type: ignore[no-any-return]


def selected_patch_names() -> list[str]:
    """Shipped patches filtered by AUTOTRACE_PATCHES / AUTOTRACE_EXCLUDE_PATCHES."""
    shipped = available_patch_names()
    only = config.env_list(config.ENV_PATCHES)
    excluded = set(config.env_list(config.ENV_EXCLUDE_PATCHES))
    names = [name for name in only if name in shipped] if only else shipped
    return [name for name in names if name not in excluded]


def selected_patch_refs() -> list[str]:
    """Every patch this process installs: shipped names, then 'module:attr' references."""
    refs = selected_patch_names()
    refs += config.env_list(config.ENV_EXTRA_PATCHES)
    if config.env_flag(config.ENV_ENTRY_POINTS):
        only = config.env_list(config.ENV_PATCHES)
        excluded = set(config.env_list(config.ENV_EXCLUDE_PATCHES))
        try:
            for name, ref in entry_point_patches().items():
                if (not only or name in only) and name not in excluded:
                    refs.append(ref)
        except Exception as exc:
            _report(f"entry points of {ENTRY_POINT_GROUP} could not be read: {exc!r}")
    return list(dict.fromkeys(refs))


def parse_targets(text: str) -> dict[str, list[str]]:
    """AUTOTRACE_PATCH_TARGETS ('ref=mod,mod;ref=mod') as a dict."""
    table: dict[str, list[str]] = {}
    for item in text.split(";"):
        ref, sep, modules = item.partition("=")
        if sep and ref.strip():
            table[ref.strip()] = [m.strip() for m in modules.split(",") if m.strip()]
    return table


def format_targets(table: dict[str, list[str]]) -> str:
    """The inverse of ``parse_targets``."""
    return ";".join(f"{ref}={','.join(modules)}" for ref, modules in table.items())


def patch_targets(refs: list[str]) -> dict[str, list[str]]:
    """The target modules of each reference, from the cheapest source that has them.

    AUTOTRACE_PATCH_TARGETS (set by the launcher or a parent), else the user cache of the
    shipped patches (valid while their files are unchanged), else importing the patch.
    What was learnt goes into the variable, so children need neither. A reference that
    cannot be loaded is reported and left out.
    """
    known = parse_targets(os.environ.get(config.ENV_PATCH_TARGETS, ""))
    table: dict[str, list[str]] = {}
    learnt = imported = False
    cache: dict[str, list[str]] | None = None
    for ref in refs:
        if ref in known:
            table[ref] = known[ref]
            continue
        if ":" not in ref:
            if cache is None:
                cache = _read_cache()
            if ref in cache:
                table[ref] = known[ref] = cache[ref]
                learnt = True
                continue
        try:
            patch = load_patch(ref)
            table[ref] = known[ref] = list(patch.target_modules())
            learnt = True
            imported = imported or ":" not in ref
        except Exception as exc:
            _report(f"patch {ref} disabled: could not be loaded: {exc!r}", patch=ref)
    if learnt:
        os.environ[config.ENV_PATCH_TARGETS] = format_targets(known)
    if imported:
        _write_cache({ref: targets for ref, targets in known.items() if ":" not in ref})
    return table


def _cache_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "autotrace", "patch-targets")


def _cache_key() -> str:
    """What the cached table depends on: our version and every shipped patch file."""
    from autotrace import __version__, patches

    parts = [__version__]
    for directory in patches.__path__:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if name.endswith(".py"):
                st = os.stat(os.path.join(directory, name))
                parts.append(f"{directory}/{name}:{st.st_mtime_ns}:{st.st_size}")
    return "|".join(parts)


def _read_cache() -> dict[str, list[str]]:
    """The cached target table of the shipped patches, or {} when missing or stale."""
    try:
        with open(_cache_path(), encoding="utf-8") as f:
            key, _, table = f.read().partition("\n")
        if key == _cache_key():
            return parse_targets(table.strip())
    except Exception:
        pass
    return {}


def _write_cache(table: dict[str, list[str]]) -> None:
    """Store the table for the next first process (atomic replace); errors are ignored."""
    try:
        path = _cache_path()
        config.make_private_dirs(os.path.dirname(path))
        temporary = f"{path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            f.write(f"{_cache_key()}\n{format_targets(table)}\n")
        os.replace(temporary, path)
    except Exception:
        pass


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
            _report(f"patch {self.ref} disabled: could not be loaded: {exc!r}", patch=self.ref)
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
    if not patch.wraps:  # custom hooks only (os.system at start-up): wrapt is not needed
        _install_reported(patch)
        return
    if _wrapt_is_importing():
        with _lock:
            _waiting_for_wrapt.append(patch)
        return
    try:
        import wrapt  # noqa: F401  (its import may queue other patches, installed below)
    except Exception as exc:
        _report(f"patch {patch.name} disabled: wrapt cannot be imported: {exc!r}", patch=patch.name)
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
        _report(f"patch {patch.name} disabled: {exc!r}", patch=patch.name)


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
        table = patch_targets(selected_patch_refs())
    except Exception as exc:
        _report(f"no patch installed: {exc!r}")
        return
    if table:
        # The program may import wrapt itself, and a target in the middle of it.
        hooks.when_imported("wrapt", _install_waiting)
    for ref, targets in table.items():
        deferred = _Deferred(ref, targets)
        with _lock:
            if ref in _deferred:
                continue
            _deferred[ref] = deferred
        try:
            deferred.register()
        except Exception as exc:
            _report(f"patch {ref} disabled: {exc!r}", patch=ref)


def _report(message: str, **fields: object) -> None:
    """One stderr line and one ``[autotrace]`` record; never raises."""
    try:
        sys.stderr.write(f"[autotrace] {message}\n")
    except Exception:
        pass
    try:
        from autotrace.runtime import actions

        actions.agent_message(message, **fields)
    except Exception:
        pass
