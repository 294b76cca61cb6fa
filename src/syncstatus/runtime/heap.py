"""Garbage collection tuned for a long-running batch consumer.

A batch allocates many short-lived objects (rows, events, aggregates, views) that reference
counting frees when the batch ends; cyclic garbage is rare. With CPython's default first
threshold (700 allocations) the collector ran dozens of times per batch and walked every
survivor each time: 64–70 µs per event in `python -m bench.engine --profile`. So, once start-up
is over, what exists (modules, the machine's tables, the object graph) is frozen out of the
collector's sight, and the youngest generation waits for 50,000 more allocations than frees.
A batch of 1,000 events of as many connections keeps 20,000–30,000 objects alive until it
ends: at 10,000 the collector still walked them about once a batch, 15–20 µs per event.
"""

from __future__ import annotations

import gc

YOUNGEST_THRESHOLD = 50_000


def settle_after_start() -> None:
    """Call once, when the process is built and before it starts consuming."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNGEST_THRESHOLD, middle, oldest)
