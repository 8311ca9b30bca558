"""Patches, one module per library; installed as ``autotrace.patches``.

Each module defines ``PATCH = autotrace.startup.patching.Patch(...)``. A module here must
not import its library at top level: its hooks run when the program imports it.
"""
