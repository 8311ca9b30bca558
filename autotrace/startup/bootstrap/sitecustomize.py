"""Bootstrap: activates the agent in every Python process started under `inspect-trace run`.

An interpreter without autotrace (another venv, a system python) inherits PYTHONPATH
too: it gets no agent, no error, and still runs its own sitecustomize.

Afterwards ``sys.modules["sitecustomize"]`` is the program's own sitecustomize, or, when
it has none, there is none: this module ends by raising the one ImportError that
``site`` takes for "no sitecustomize" (the agent is active by then), so the import
system drops it from ``sys.modules`` and a later ``import sitecustomize`` fails as it
would without us. This folder, which the launcher put on PYTHONPATH, leaves ``sys.path``
once it is done (children get it again through PYTHONPATH): the program sees ``sys.path``
as without us.
"""

_has_own = False
try:
    from autotrace.startup.bootstrap import _boot
except ImportError:
    import importlib.util as _util
    import os as _os

    _spec = _util.spec_from_file_location(
        "_autotrace_boot", _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_boot.py")
    )
    if _spec is not None and _spec.loader is not None:
        _fallback = _util.module_from_spec(_spec)
        _spec.loader.exec_module(_fallback)
        _has_own = _fallback.chain_only(__file__, keep_folder=False)
else:
    _has_own = _boot.boot(__file__, keep_folder=False)

if not _has_own:
    raise ImportError("No module named 'sitecustomize'", name="sitecustomize")
