"""Read side: trace files, the row model, the run view (plain data: no click, no rich)."""
