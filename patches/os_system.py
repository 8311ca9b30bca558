"""Commands run by ``os.system`` and ``os.spawn*`` in ``P_WAIT`` mode: one ``Subprocess``
action each (``Docker`` when the program is docker, docker-compose or podman), from
the call to its return.

- enter: when the call starts; the detail is the command as the subprocess patch
  builds it (redacted, shortened).
- exit: when the call returns, with ``returncode``: the exit code, or minus the signal
  that ended the command (``os.system``'s wait status decoded as subprocess does).
- error: when the call raises (a command with a NUL byte, a failed fork).

``os`` is imported before any program code, so this patch is installed at start-up:
it only puts a stand-in for the builtin ``os.system`` (``BuiltinStandIn``, no wrapt)
and a function in place of ``os._spawnvef`` (which every ``os.spawn*`` function calls
on POSIX). The action API is imported at the first call. ``os.spawn*`` with
``P_NOWAIT`` returns at once and is not traced.
"""

from __future__ import annotations

import os
import sys

from autotrace.startup.patching import Patch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

    from autotrace.runtime.actions import OpenAction

# The originals our replacements call. Kept after uninstall (Patch.uninstall puts them
# back in os): a replacement the program holds on to still calls through.
_originals: dict[str, Any] = {}


def _start(command: Any) -> OpenAction | None:
    """The open action of a command about to run (None: not traced)."""
    if not PATCH.enabled or not isinstance(command, (str, bytes, os.PathLike, list, tuple)):
        return None
    if sys.is_finalizing():  # a __del__ at interpreter teardown: nothing can be imported
        return None
    try:
        from autotrace.patches.subprocess import describe
        from autotrace.runtime import actions

        name, detail = describe(command)
        return actions.start_action(name, detail)
    except Exception as exc:
        PATCH.fail(f"describing {command!r:.80} failed: {exc!r}")
        return None


def _run(span: OpenAction | None, call: Any, args: Any, kwargs: Any, status: bool) -> Any:
    """Call the original with ``span`` open; end it with the outcome."""
    if span is None:
        return call(*args, **kwargs)
    try:
        result = call(*args, **kwargs)
    except BaseException as exc:
        span.end(exc)
        raise
    returncode = result
    if status and isinstance(result, int):
        try:
            returncode = os.waitstatus_to_exitcode(result)
        except ValueError:  # -1: the shell could not be started
            pass
    span.end(extra={"returncode": returncode})
    return result


def _system(*args: Any, **kwargs: Any) -> Any:
    command = args[0] if len(args) == 1 and not kwargs else kwargs.get("command")
    if len(args) + len(kwargs) != 1:  # let the original reject the call
        command = None
    return _run(_start(command), _originals["system"], args, kwargs, status=True)


def _spawnvef(*args: Any, **kwargs: Any) -> Any:
    # _spawnvef(mode, file, args, env, func), always called positionally by os.spawn*.
    argv = args[2] if len(args) == 5 and not kwargs and args[0] == os.P_WAIT else None
    return _run(_start(argv), _originals["_spawnvef"], args, kwargs, status=False)


class BuiltinStandIn:
    """Stands in for a builtin function (os.system) without wrapt, whose import would
    cost tens of milliseconds at start-up.

    It looks like the builtin from outside: ``isinstance``, name, doc, module,
    ``inspect.signature`` (through ``__wrapped__``), repr, pickling, and, unlike a
    Python function, it does not bind as a method when stored on a class.
    """

    def __init__(self, original: Any, call: Any) -> None:
        self.__dict__.update(
            __wrapped__=original,
            _call=call,
            _autotrace=True,
            __name__=original.__name__,
            __qualname__=original.__qualname__,
            __doc__=original.__doc__,
            __module__=original.__module__,
        )

    @property  # type: ignore[misc]  # read-only on purpose: isinstance looks at __class__
    def __class__(self) -> type:
        return type(self.__wrapped__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # __self__, __text_signature__, ...
        try:
            wrapped = self.__dict__["__wrapped__"]
        except KeyError:  # not initialised (a copy made without __init__)
            raise AttributeError(name) from None
        return getattr(wrapped, name)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.__qualname__  # a global: found again as the stand-in in its module

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)


def _stand_in(modules: list[ModuleType], name: str, call: Any) -> None:
    original = getattr(modules[0], name, None)
    if original is None or getattr(original, "_autotrace", False):
        return
    if callable(getattr(original, "__get__", None)):  # a Python function: one of ours binds too
        replacement: Any = call
        for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(replacement, attribute, getattr(original, attribute))
        replacement.__wrapped__ = original  # inspect.signature follows it
        replacement._autotrace = True
    else:
        replacement = BuiltinStandIn(original, call)
    _originals[name] = original
    for module in modules:
        if getattr(module, name, None) is original:
            setattr(module, name, replacement)
            PATCH.installed.append((module, name, original))


def _on_import(module: ModuleType) -> None:
    if module.__name__ == "os":
        # posix.system is os.system: pickle finds a builtin through its own module.
        posix = sys.modules.get(os.name)
        _stand_in([module] + ([posix] if posix is not None else []), "system", _system)
        _stand_in([module], "_spawnvef", _spawnvef)


PATCH = Patch(
    name="os_system",
    description="os.system and os.spawn* (P_WAIT): Subprocess / Docker",
    modules=("os",),
    on_import=_on_import,
)
