"""``python -m autotrace`` is ``inspect-trace``."""

from autotrace.cli.launch import entry

if __name__ == "__main__":
    entry()
