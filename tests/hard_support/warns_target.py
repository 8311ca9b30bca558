"""A library function that warns at its caller's line (stacklevel=2), as deprecations do."""

from __future__ import annotations

import warnings


def deprecated_call(x: int) -> int:
    """Doubles ``x``, with a DeprecationWarning blamed on the caller."""
    warnings.warn("deprecated_call is deprecated", DeprecationWarning, stacklevel=2)
    return x * 2


async def deprecated_coroutine(x: int) -> int:
    """``deprecated_call`` as a coroutine function: the warning names the line awaiting it."""
    warnings.warn("deprecated_coroutine is deprecated", DeprecationWarning, stacklevel=2)
    return x * 2
