"""Exporters: a run's records sent or written in other tracing formats (OTLP, Perfetto)."""
