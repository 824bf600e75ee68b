"""The run directory: the store (append-only events, atomic summaries) and the report of its results."""
