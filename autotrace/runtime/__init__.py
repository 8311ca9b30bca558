"""Runtime: what runs inside the traced program, on its path or in its background.

Actions, the writer, the watchdog and its stacks channel, stream endings, redaction and
the process header. Imports little (every traced process pays for it): never click,
rich or numpy.
"""
