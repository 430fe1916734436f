"""Pure building blocks: records, errors, sampling, smoothing, events, health, metrics.

No threads, no I/O, nothing of the layers above."""
