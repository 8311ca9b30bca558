"""What a patch is, and the one boundary where patch errors are caught.

A patch module in ``autotrace.patches`` defines ``PATCH = Patch(...)``: the modules
it targets and a table of ``Wrap`` rows (the callable to wrap, the action name, a
function that builds the detail). Installing happens in a post-import hook, so the
agent never imports a library itself; uninstalling puts the originals back.
"""

from __future__ import annotations

from autotrace.runtime import guard

# Loaded at start-up when a patch targets a module that is already imported (os):
# typing, dataclasses, inspect, wrapt and the action API are imported only when used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

    Describe = Callable[[Any, tuple[Any, ...], dict[str, Any]], "str | None"]
    Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class Wrap:
    """One wrapped callable: ``name`` is a dotted path inside ``module`` ("Class.method").

    Either ``action`` + ``describe`` (detail from ``(instance, args, kwargs)``; None
    means "not traced, pass through"), or a full wrapt-style ``wrapper``. An
    ``optional`` row whose target this version of the library lacks is skipped instead
    of disabling the patch.
    """

    __slots__ = ("module", "name", "action", "describe", "wrapper", "optional")

    def __init__(
        self,
        module: str,
        name: str,
        action: str | None = None,
        describe: Describe | None = None,
        wrapper: Wrapper | None = None,
        optional: bool = False,
    ) -> None:
        self.module = module
        self.name = name
        self.action = action
        self.describe = describe
        self.wrapper = wrapper
        self.optional = optional

    def __repr__(self) -> str:
        return f"Wrap({self.module!r}, {self.name!r}, action={self.action!r})"


class Patch:
    """A library patch: its target modules, its wrap table and optional custom hooks.

    ``modules``: extra modules to watch besides those named by wraps (for
    ``on_import``, the custom install called after the wraps of that module).
    A patch without wraps is installed without importing wrapt; so is one with
    ``plain_functions`` (for modules every program imports early, such as subprocess):
    each of its targets that is a plain synchronous Python function is replaced by a
    plain function (see ``_function_stand_in``), others fall back to wrapt.
    """

    def __init__(
        self,
        name: str,
        description: str,
        wraps: list[Wrap] | None = None,
        modules: tuple[str, ...] = (),
        on_import: Callable[[ModuleType], None] | None = None,
        on_remove: Callable[[], None] | None = None,
        enabled: bool = True,
        plain_functions: bool = False,
    ) -> None:
        self.name = name
        self.description = description
        self.wraps: list[Wrap] = wraps if wraps is not None else []
        self.modules = modules
        self.on_import = on_import
        self.on_remove = on_remove
        self.enabled = enabled
        self.plain_functions = plain_functions
        self.installed: list[tuple[Any, str, Any]] = []
        self.skipped = 0  # calls passed through untraced because of an odd object

    def __repr__(self) -> str:
        return f"Patch({self.name!r}, enabled={self.enabled})"

    def needs_wrapt(self) -> bool:
        """Whether installing this patch may import wrapt (it has wraps, not all plain)."""
        return bool(self.wraps) and not self.plain_functions

    def target_modules(self) -> list[str]:
        """Every module whose import installs part of this patch."""
        names = [w.module for w in self.wraps] + list(self.modules)
        return list(dict.fromkeys(names))

    def install_module(self, module: ModuleType) -> None:
        """Install the wraps for ``module``; a failure disables the whole patch once."""
        if not self.enabled:
            return
        try:
            for row in self.wraps:
                if row.module == module.__name__:
                    if row.optional and not _has_path(module, row.name):
                        continue
                    self._wrap(module, row)
            if self.on_import is not None and module.__name__ in self.target_modules():
                self.on_import(module)
        except Exception as exc:
            self.fail(f"could not be installed on {module.__name__}: {exc!r}")

    def _wrap(self, module: ModuleType, row: Wrap) -> None:
        parent, attribute, original = _resolve_path(module, row.name)
        stored = vars(parent).get(attribute, original) if isinstance(parent, type) else original
        # wrapt 2's FunctionWrapper is not an instance of wrapt.ObjectProxy, so the mark
        # alone says "ours"; the stored attribute too, for a class reached through two modules.
        if any(getattr(found, "_self_autotrace", False) is True for found in (original, stored)):
            return  # already ours (installed twice, or the class reached through two modules)
        from autotrace.runtime.invisible import hide_from_warnings

        # The wrapper stands between the program and the library: warnings skip it.
        wrapper = hide_from_warnings(row.wrapper or self._action_wrapper(row, original))
        if self.plain_functions and _is_plain_function(stored):
            proxy = _function_stand_in(stored, wrapper, isinstance(parent, type))
        else:
            proxy = _traced_function_type()(original, wrapper)  # imports wrapt only now
        proxy._self_autotrace = True
        setattr(parent, attribute, proxy)
        self.installed.append((parent, attribute, stored))

    def _action_wrapper(self, row: Wrap, original: Any) -> Wrapper:
        import inspect

        from autotrace.runtime import actions

        action, describe = row.action or self.name, row.describe
        patch = self

        def skip(exc: Exception) -> None:
            patch.skip(f"could not describe a {row.name} call: {exc!r}")

        def detail_of(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
            if not patch.enabled or describe is None:
                return None
            # An odd object: this call only goes untraced, the patch stays on.
            detail: str | None = guard.call(describe, instance, args, kwargs, on_error=skip)
            return detail

        if inspect.iscoroutinefunction(original):
            from autotrace.runtime.invisible import hide_from_warnings

            @hide_from_warnings  # it stands between the program and the library too
            async def traced(
                wrapped: Callable[..., Any],
                args: tuple[Any, ...],
                kwargs: dict[str, Any],
                detail: str,
            ) -> Any:
                with actions.trace_action(action, detail):
                    return await wrapped(*args, **kwargs)

            def async_wrapper(
                wrapped: Callable[..., Any],
                instance: Any,
                args: tuple[Any, ...],
                kwargs: dict[str, Any],
            ) -> Any:
                # Decided when the coroutine is made (normally the moment it is awaited):
                # a call not traced gets the original's own coroutine, with no coroutine
                # of ours around it that every resumption would pass through.
                detail = detail_of(instance, args, kwargs)
                if detail is None:
                    return wrapped(*args, **kwargs)
                return traced(wrapped, args, kwargs, detail)

            return async_wrapper

        def sync_wrapper(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            detail = detail_of(instance, args, kwargs)
            if detail is None:
                return wrapped(*args, **kwargs)
            with actions.trace_action(action, detail):
                return wrapped(*args, **kwargs)

        return sync_wrapper

    def uninstall(self) -> None:
        """Put every wrapped callable back as it was."""
        while self.installed:
            parent, attribute, original = self.installed.pop()
            guard.call(_put_back, parent, attribute, original)
        if self.on_remove is not None:
            guard.call(self.on_remove)

    def skip(self, reason: str) -> None:
        """One call goes through untraced (an odd object, such as a Popen without a pid);
        the patch stays on. Said once, in the trace only: the program sees nothing."""
        self.skipped += 1
        if self.skipped > 1:
            return
        try:
            from autotrace.runtime import actions

            actions.agent_message(f"patch {self.name} skipped a call: {reason}", patch=self.name)
        except Exception:
            pass

    def fail(self, reason: str) -> None:
        """Turn this patch off: one stderr line, one ``[autotrace]`` record, calls pass through."""
        if not self.enabled:
            return
        self.enabled = False
        report(f"patch {self.name} disabled: {reason}", patch=self.name)

    def guard(self, fn: Callable[..., Any], default: Any = None) -> Callable[..., Any]:
        """``fn`` with its errors turning this patch off instead of reaching the program."""
        name = getattr(fn, "__name__", fn)

        def call(*args: Any, **kwargs: Any) -> Any:
            if not self.enabled:
                return default
            return guard.call(
                fn,
                *args,
                on_error=lambda exc: self.fail(f"{name!s} failed: {exc!r}"),
                default=default,
                **kwargs,
            )

        return call


def report(message: str, **fields: Any) -> None:
    """One stderr line and one ``[autotrace]`` record (the agent's own trouble); never raises."""
    guard.warn(message)
    guard.call(_record, message, fields)


def _record(message: str, fields: dict[str, Any]) -> None:
    from autotrace.runtime import actions  # the action API only when there is a record

    actions.agent_message(message, **fields)


def _put_back(parent: Any, attribute: str, original: Any) -> None:
    if _inherited(parent, attribute) is original:
        delattr(parent, attribute)  # it was inherited: inherit it again
    else:
        setattr(parent, attribute, original)


def _resolve_path(module: ModuleType, dotted: str) -> tuple[Any, str, Any]:
    """(parent, attribute, original) of ``Class.method`` in ``module``, as wrapt resolves it:
    on a class, the attribute as stored on the first class of the MRO that has it."""
    parent: Any = module
    path = dotted.split(".")
    original = getattr(parent, path[0])
    attribute = path[0]
    for attribute in path[1:]:
        parent = original
        original = getattr(parent, attribute)
        if isinstance(parent, type):
            original = next(
                (vars(c)[attribute] for c in parent.__mro__ if attribute in vars(c)), original
            )
    return parent, attribute, original


def _plain() -> None:
    pass


_FUNCTION = type(_plain)
# Generators and coroutines: a plain stand-in would change what inspect says of them.
_NOT_PLAIN_FLAGS = (
    0x20 | 0x80 | 0x100 | 0x200
)  # GENERATOR, COROUTINE, ITERABLE_COROUTINE, ASYNC_GENERATOR


def _is_plain_function(obj: Any) -> bool:
    return type(obj) is _FUNCTION and not obj.__code__.co_flags & _NOT_PLAIN_FLAGS


def _function_stand_in(original: Any, wrapper: Wrapper, method: bool) -> Any:
    """A plain function that calls ``wrapper(wrapped, instance, args, kwargs)`` as wrapt would.

    Stored where the original was, it is what the original is: a function (so it binds
    as a method, pickles by its qualified name, and ``type()`` is unchanged), with the
    original's names and doc, and ``__wrapped__`` for ``inspect.signature``.
    """
    if method:

        def stand_in(*args: Any, **kwargs: Any) -> Any:
            if not args:  # called on the class without self: let the original complain
                return wrapper(original, None, args, kwargs)
            instance = args[0]
            return wrapper(original.__get__(instance, type(instance)), instance, args[1:], kwargs)

    else:

        def stand_in(*args: Any, **kwargs: Any) -> Any:
            return wrapper(original, None, args, kwargs)

    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(stand_in, name, getattr(original, name))
    stand_in.__dict__.update(original.__dict__)
    stand_in.__wrapped__ = original  # type: ignore[attr-defined]
    return stand_in


def _has_path(module: ModuleType, dotted: str) -> bool:
    target: Any = module
    for part in dotted.split("."):
        target = getattr(target, part, _MISSING)
        if target is _MISSING:
            return False
    return True


_MISSING = object()


def _inherited(parent: Any, attribute: str) -> Any:
    """What a class would inherit as ``attribute`` from its bases (None if not a class)."""
    if not isinstance(parent, type):
        return None
    for base in parent.__mro__[1:]:
        if attribute in vars(base):
            return vars(base)[attribute]
    return None


_TRACED_FUNCTION: Any = None


def _traced_function_type() -> Any:
    """wrapt's FunctionWrapper that pickles and copies as the function it wraps.

    wrapt's proxies refuse pickle and copy; a plain function pickles by its qualified
    name and copies as itself, and a method bound to a class or instance pickles as
    ``getattr(owner, name)``. Built on first use: wrapt is imported only then.
    """
    global _TRACED_FUNCTION
    if _TRACED_FUNCTION is not None:
        return _TRACED_FUNCTION
    import copy
    from types import ModuleType

    import wrapt

    # Same names as wrapt's classes: they are those classes, plus pickling and copying.
    class BoundFunctionWrapper(wrapt.BoundFunctionWrapper):  # type: ignore[misc]
        def _self_target(self) -> Any:
            if self._self_instance is not None:
                return self._self_instance
            owner = getattr(self, "_self_owner", None)  # wrapt < 2 does not keep it
            if owner is None:
                raise TypeError(f"cannot pickle or copy {self.__qualname__}: no owner")
            return owner

        def __reduce_ex__(self, protocol: Any) -> Any:
            return (getattr, (self._self_target(), self.__name__))

        def __reduce__(self) -> Any:
            return self.__reduce_ex__(2)

        def __copy__(self) -> Any:
            return getattr(self._self_target(), self.__name__)

        def __deepcopy__(self, memo: Any) -> Any:
            return getattr(copy.deepcopy(self._self_target(), memo), self.__name__)

    class FunctionWrapper(wrapt.FunctionWrapper):  # type: ignore[misc]
        __bound_function_wrapper__ = BoundFunctionWrapper

        def __reduce_ex__(self, protocol: Any) -> Any:
            owner = getattr(self.__wrapped__, "__self__", None)
            if owner is not None and not isinstance(owner, ModuleType):
                return (getattr, (owner, self.__name__))  # a bound method held by a module
            return self.__qualname__  # a global, found again by module and name

        def __reduce__(self) -> Any:
            return self.__reduce_ex__(2)

        def __copy__(self) -> Any:
            return self

        def __deepcopy__(self, memo: Any) -> Any:
            return self

    _TRACED_FUNCTION = FunctionWrapper
    return FunctionWrapper
