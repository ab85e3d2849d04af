"""Where the time goes: py-spy's collapsed stacks summed per function.

py-spy (``bench.measures.profiled``) samples every thread of a process 200
times a second and writes one line per distinct stack: frames from the
thread's root to the running function, ``;``-separated, then the number of
samples.  It is asked for every thread, idle or not (its own idle detection
does not hold on every kernel), and the samples whose running frame is a
wait (``WAITS``: a lock or condition, a queue, the event loop's ``select``,
a sleep, a join) are set apart here, so the rest are where threads were
busy: running Python, or in C (SQLite, fsync, Ed25519) on its behalf.

Per function, *cumulative* counts the busy samples in which it is anywhere
on the stack (once per stack, so recursion does not count twice), *self*
those in which it is the running frame; both as a share of all busy
samples, summed over the threads.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
#: Running frames that are waits, not work.
WAITS = frozenset(
    {
        "Condition.wait (threading.py)",
        "Event.wait (threading.py)",
        "Thread.join (threading.py)",
        "Thread._wait_for_tstate_lock (threading.py)",
        "_worker (concurrent/futures/thread.py)",  # blocked on its work queue
        "EpollSelector.select (selectors.py)",
        "select (selectors.py)",
        "Queue.get (queue.py)",
        # threads whose own frame runs only to block in a C call on their work queue
        # (SimpleQueue.get shows no Python frame of its own): the submitter, the nonce writer
        "Submitter._run (api/submitter.py)",
        "NonceStore._run (ledger/nonces.py)",
        "Connection._recv (multiprocessing/connection.py)",  # waiting for sigcheck workers
        "main (bench/serve.py)",  # waiting on stdin
        "_supervise.<locals>.announce (bench/serve.py)",  # sleeping once the workers answer
        "main (multiprocessing/resource_tracker.py)",  # reading its pipe
        "socket.accept (socket.py)",  # the sequencer process, waiting for a worker
        # the sequencer process's threads per worker: one blocked in recv on the worker's
        # socket, one on its queue of answers to send (SimpleQueue.get: no frame of its own)
        "_exactly (ledger/sequencer.py)",
        "SequencerServer._answer (ledger/sequencer.py)",
        # and its thread that tells every worker the log's new size, blocked on its queue
        # (SimpleQueue.get again), and its thread blocked in recv on its lifeline to the
        # process that started it: both show only their own frame while they wait
        "SequencerServer._announce (ledger/sequencer.py)",
        "_sequencer.<locals>.watch (api/server.py)",
        "profiled (bench/measures.py)",  # sleeping while py-spy attaches
        "sleep",
    }
)
#: Frames every stack of a thread or of a benchmark process goes through: left out.
_PLUMBING = ("(threading.py)", "(<frozen runpy>)", "(bench/child.py)")


@dataclass(frozen=True)
class Row:
    function: str
    cumulative: float  # share of the busy samples, 0-1
    own: float


@dataclass
class Profile:
    cumulative: Counter[str]
    own: Counter[str]
    busy: int
    waiting: int


def _function(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match['name']} ({match['file']})"


def load(path: Path) -> Profile:
    profile = Profile(Counter(), Counter(), 0, 0)
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames or frames[-1] in WAITS or frames[-1].startswith("sleep"):
            profile.waiting += count
            continue
        profile.busy += count
        kept = [f for f in frames if not f.endswith(_PLUMBING)] or frames[-1:]
        for name in set(kept):
            profile.cumulative[name] += count
        profile.own[frames[-1]] += count
    return profile


def top(path: Path, limit: int = 25) -> tuple[list[Row], list[Row], Profile]:
    """The ``limit`` functions with the most cumulative busy samples and with the most self
    samples, and the profile."""
    p = load(path)
    total = max(p.busy, 1)
    by_cumulative = [
        Row(name, count / total, p.own[name] / total)
        for name, count in p.cumulative.most_common(limit)
    ]
    by_self = [
        Row(name, p.cumulative[name] / total, count / total)
        for name, count in p.own.most_common(limit)
    ]
    return by_cumulative, by_self, p


#: The project's own code: listed apart, so it is not lost among the frameworks' frames.
OWN = ("(encd/", "(ledger/", "(api/")


def render(path: Path, title: str, limit: int = 25) -> str:
    by_cumulative, by_self, p = top(path, limit)
    total = max(p.busy, 1)
    own = [
        Row(name, count / total, p.own[name] / total)
        for name, count in p.cumulative.most_common()
        if any(marker in name for marker in OWN)
    ][:limit]
    lines = [
        title,
        f"{p.busy} busy samples of {p.busy + p.waiting} (py-spy, every thread; "
        "shares are of the busy samples, summed over threads)",
        "",
        "By cumulative time (the function or anything it calls is running):",
        f"{'cumulative':>10} {'self':>6}  function",
    ]
    lines += [f"{r.cumulative:>10.1%} {r.own:>6.1%}  {r.function}" for r in by_cumulative]
    lines += ["", "encd's own functions (encd/, ledger/, api/) by cumulative time:"]
    lines.append(f"{'cumulative':>10} {'self':>6}  function")
    lines += [f"{r.cumulative:>10.1%} {r.own:>6.1%}  {r.function}" for r in own]
    lines += ["", "By self time (the function itself is running):"]
    lines.append(f"{'self':>10} {'cumul.':>6}  function")
    lines += [f"{r.own:>10.1%} {r.cumulative:>6.1%}  {r.function}" for r in by_self]
    return "\n".join(lines) + "\n"
