"""Bootstrap: activates the agent in every Python process started under `inspect-trace run`."""

from autotrace.bootstrap import _boot

_boot.boot(__file__)
