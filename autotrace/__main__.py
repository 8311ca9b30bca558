"""``python -m autotrace`` is ``inspect-trace``."""

from autotrace.cli import main

if __name__ == "__main__":
    main()
