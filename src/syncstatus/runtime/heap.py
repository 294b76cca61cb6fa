"""Garbage collection tuned for a long-running batch consumer.

A batch allocates many short-lived objects (rows, events, aggregates, views) that reference
counting frees when the batch ends; cyclic garbage is rare. With CPython's default first
threshold (700 allocations) the collector ran dozens of times per batch and walked every
survivor each time: 64–70 µs per event in `python -m bench.engine --profile`. So, once start-up
is over, what exists (modules, the machine's tables, the object graph) is frozen out of the
collector's sight, and the youngest generation waits for 50 allocations (beyond frees) per
event of a full batch. A batch of 1,000 events of as many connections keeps 20,000–30,000
objects alive until it ends: at a fixed 10,000 the collector still ran two or three times a
batch, 10.8–12.8 µs per event (`bench.engine` prints the collector's time in each loop).
"""

from __future__ import annotations

import gc

ALLOCATIONS_PER_EVENT = 50
CPYTHON_DEFAULT = 700


def youngest_threshold(batch_size: int) -> int:
    """Never below CPython's own default, for the smallest batches."""
    return max(ALLOCATIONS_PER_EVENT * batch_size, CPYTHON_DEFAULT)


def settle_after_start(batch_size: int) -> None:
    """Call once, when the process is built and before it starts consuming batches of at most
    `batch_size` messages."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(youngest_threshold(batch_size), middle, oldest)
