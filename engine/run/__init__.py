"""Running a queue: the queue and its batches, the steering (stop, pause, skip, live reload), the loaded
backend, the executors (inline, ray) and the session that wires a run to its run directory."""
