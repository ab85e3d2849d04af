"""Ed25519 signature checks in worker processes, for auditing large bundles.

A bundle's verifier parses and replays entries on one thread (each needs the
state its predecessors left); the signature checks can run anywhere, ahead of
the replay.  Threads cannot do them *while* the main thread parses: a thread
coming back from PyNaCl (which releases the GIL) waits for the main thread to
give the GIL up, and the main thread holds it as long as it has Python to run.
Worker processes have a GIL each, so they check one chunk while the main
thread parses the next.

The results are only a hint: ``Workers.check`` says which (key, message,
signature) triples verified, and encd.parties.verify_signers checks again,
itself, any signature it is not told verified under the key it requires.  A
worker that fails or dies costs speed, never a verdict.

This module imports nothing of encd's, so that a worker starts fast.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

Job = tuple[bytes, bytes, bytes]
"""(Ed25519 public key, message, signature)."""


def _serve(conn: Connection) -> None:  # pragma: no cover - runs in the worker process
    """A worker: read the CPUs to run on and a list of jobs (pickled), answer one byte per
    job (1: verified)."""
    from nacl.bindings import crypto_sign_open

    # A forked worker has a copy of every file its parent had open (sockets, databases);
    # it needs its pipe and nothing else, and must not keep the others alive.
    mine = conn.fileno()
    os.closerange(3, mine)
    os.closerange(mine + 1, _MAX_FD)

    placed: frozenset[int] | None = None
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        cpus: frozenset[int] | None
        jobs: list[Job]
        cpus, jobs = pickle.loads(data)
        if cpus is not None and cpus != placed:
            # run where the caller runs now (a benchmark pins and unpins its process)
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, cpus)
            placed = cpus
        out = bytearray(len(jobs))
        for i, (key, message, signature) in enumerate(jobs):
            try:
                crypto_sign_open(signature + message, key)
            except Exception:
                continue  # the caller's own check will say why
            out[i] = 1
        conn.send_bytes(bytes(out))


try:
    _MAX_FD = max(os.sysconf("SC_OPEN_MAX"), 256)
except (AttributeError, ValueError, OSError):  # pragma: no cover
    _MAX_FD = 65536


def _cpus() -> frozenset[int] | None:
    """The CPUs the calling thread may run on, where the system says."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return None


def _context() -> Any:
    """fork when this process has no other thread (fast, and safe then), else forkserver."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


class Workers:
    """A few worker processes, one user at a time (``acquire``/``release``).

    ``send`` gives each worker its share of a batch of jobs; ``receive`` returns
    one bool per job, in order.  One batch is out at a time.
    """

    def __init__(self, count: int) -> None:
        context = _context()
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for _ in range(count):
            mine, theirs = context.Pipe()
            proc = context.Process(target=_serve, args=(theirs,), daemon=True, name="encd-sigcheck")
            proc.start()
            theirs.close()
            self._conns.append(mine)
            self._procs.append(proc)
        self._shares: list[int] | None = None  # jobs per worker of the batch out
        self._total = 0
        self.lock = threading.Lock()
        self.broken = False

    def send(self, jobs: Sequence[Job]) -> None:
        assert self._shares is None, "one batch at a time"
        count = len(self._conns)
        size = -(-len(jobs) // count) if jobs else 0
        shares: list[int] = []
        self._total = len(jobs)
        cpus = _cpus()
        try:
            for i, conn in enumerate(self._conns):
                part = list(jobs[i * size : (i + 1) * size])
                shares.append(len(part))
                if part:
                    conn.send_bytes(pickle.dumps((cpus, part), protocol=pickle.HIGHEST_PROTOCOL))
        except (OSError, ValueError):
            self.broken = True
        except BaseException:  # interrupted half-way: what the pipes hold is unknown
            self.broken = True
            raise
        finally:
            self._shares = shares

    def receive(self) -> list[bool]:
        shares, self._shares = self._shares, None
        assert shares is not None, "nothing was sent"
        out: list[bool] = []
        for conn, share in zip(self._conns, shares, strict=False):
            if not share:
                continue
            answer = b""
            if not self.broken:
                try:
                    answer = conn.recv_bytes()
                except (EOFError, OSError):
                    self.broken = True
                except BaseException:  # interrupted: answers may be left in the pipes
                    self.broken = True
                    raise
            if len(answer) != share:  # a worker gone: nothing it had counts as checked
                self.broken = True
                answer = bytes(share)
            out.extend(flag == 1 for flag in answer)
        out.extend([False] * (self._total - len(out)))  # jobs a failed send never gave
        return out

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        for proc in self._procs:
            proc.join(timeout=1)
            if proc.is_alive():  # pragma: no cover
                proc.kill()


_WORKERS: Workers | None = None
_START = threading.Lock()


def workers() -> Workers | None:
    """The process's workers, started on first use (None where processes cannot start)."""
    global _WORKERS
    with _START:
        if _WORKERS is not None and _WORKERS.broken and _WORKERS.lock.acquire(blocking=False):
            _WORKERS.close()
            _WORKERS.lock.release()
            _WORKERS = None
        if _WORKERS is None:
            try:
                _WORKERS = Workers(os.cpu_count() or 1)
            except OSError:  # pragma: no cover - no processes here
                return None
        return _WORKERS


__all__ = ["Job", "Workers", "workers"]
