"""Put this folder on PYTHONPATH to trace a program without `inspect-trace run`.

    PYTHONPATH=sitecustomize_example python prog.py

AUTOTRACE_DISABLE=1 turns it off.
"""

try:
    from autotrace.startup.bootstrap import _boot
except ImportError:  # autotrace not installed in this interpreter: do nothing
    _boot = None

# No sitecustomize of the program's: leave none in sys.modules, as without this folder
# (site takes exactly this error for "no sitecustomize"; the agent is active by then).
if _boot is not None and not _boot.boot(__file__):
    raise ImportError("No module named 'sitecustomize'", name="sitecustomize")
