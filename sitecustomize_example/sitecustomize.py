"""Put this folder on PYTHONPATH to trace a program without `inspect-trace run`.

    PYTHONPATH=sitecustomize_example python prog.py

AUTOTRACE_DISABLE=1 turns it off.
"""

try:
    from autotrace.startup.bootstrap import _boot

    _boot.boot(__file__)
except ImportError:  # autotrace not installed in this interpreter: do nothing
    pass
