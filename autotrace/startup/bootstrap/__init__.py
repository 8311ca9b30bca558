"""The directory that `inspect-trace run` puts first on PYTHONPATH (holds sitecustomize.py)."""
