"""The `inspect-trace` command: click commands and all rendering (rich tables, pages)."""
