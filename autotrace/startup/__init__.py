"""Start-up: the bootstrap, post-import hooks and the patch registry.

Runs in every traced process before the program: imports almost nothing.
"""
