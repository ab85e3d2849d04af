"""The garbage collector's settings for a process that sequences, serves or audits.

Such a process keeps a large working set for as long as it runs (the modules, the
sequencer's cache of document states or the audit's states: ~70 tracked objects
each, ~1.4 million at 20,000 documents) and allocates a few hundred objects per event
or request that die within a batch.  With CPython's defaults (a young collection every 700 allocations)
a batch's still-live objects are promoted on every young collection, and the oldest
generation, collected in full once what was promoted since reaches a quarter of what
it holds, was walked every few thousand events: measured appending 200,000 events in
one process, 58 full collections took 12 s of 108 s, more at each size.  A young
collection every 50,000 allocations (the count is of objects made less objects
freed) lets a batch die young: no full collection in 150,000 events (2 with 10,000,
44 with 700).  What start-up built is frozen out of the collector's way, so a full
collection walks only what the process made since.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_GC_THRESHOLD = 50_000  # allocations between collections of the youngest generation


@contextmanager
def long_running() -> Iterator[None]:
    """Within: what exists now is frozen, and the young generation is collected every
    ``YOUNG_GC_THRESHOLD`` allocations (or as rarely as it already was).  Both are
    undone on the way out.  Objects frozen are still freed when nothing refers to them;
    only a reference cycle among them waits for the way out."""
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(YOUNG_GC_THRESHOLD, thresholds[0]), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
