"""Benchmarks of encd against the machine's own limits (issue 6, docs/benchmarks.md).

``python -m bench.run`` (``make bench``, ``make bench-full``) measures every
figure as a ratio to a limit measured in the same run on the same machine:
raw PyNaCl verification, a FastAPI hello-world on uvicorn, pymerkle.  Each
group of measurements runs in a fresh Python process (``bench.child``), some
pinned to one core, and servers run in processes of their own
(``bench.serve``), so no measurement shares an interpreter lock with the
load that drives it.
"""
