"""Where batches run: inline (the engine thread) or ray (workers of a Ray cluster)."""
