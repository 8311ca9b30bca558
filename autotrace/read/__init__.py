"""Read side: trace files, the reader, the one row model and ranking, the run view.

Plain data: nothing here imports click or rich; errors are ``files.TraceReadError``.
Public API (see README "The read side"): ``files`` (open_trace, read_header,
list_trace_files, resolve_trace_file), ``reader`` (TraceReader, read_file, iter_records),
``model`` (ActionRow, Frame, Anomalies, anomalies_of, rank), ``run`` (RunTrace, run_view,
run_of, load_run), ``snapshot`` (request_snapshot).
"""
