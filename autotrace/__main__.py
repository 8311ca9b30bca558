"""``python -m autotrace`` is ``inspect-trace``."""

from autotrace.cli.main import entry

if __name__ == "__main__":
    entry()
