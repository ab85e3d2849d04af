"""append_many with its signatures checked in worker processes gives what one-by-one appends give."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from encd.errors import Error
from ledger import ledger as ledger_module
from ledger.ledger import Ledger, Receipt
from tests.kit import corridor_cast, seeded_key
from tests.ledger.test_export import big_ledger_events

LOG_KEY = seeded_key("encd.test/log", "log")


def flip_signature_bit(raw: bytes) -> bytes:
    """The event with one bit of its first signature flipped (the key hash kept)."""
    text, _, sigs = raw.partition(b"\n\n")
    lines = sigs.split(b"\n")
    prefix, _, blob = lines[0].rpartition(b" ")
    sig = bytearray(base64.b64decode(blob))
    sig[10] ^= 0x01
    lines[0] = prefix + b" " + base64.b64encode(bytes(sig))
    return text + b"\n\n" + b"\n".join(lines)


def outcome(result: Receipt | Error) -> tuple[str, Any]:
    if isinstance(result, Error):
        return type(result).__name__, str(result)
    return "receipt", (result.log_index, result.duplicate)


@pytest.mark.parametrize("workers_busy", [False, True, "none"])
def test_worker_checked_batches_match_one_by_one_appends(
    tmp_path: Path, workers_busy: bool | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cast = corridor_cast()
    parties = list(cast.log)
    raws = list(big_ledger_events(cast, documents=120, per_document=6))
    raws[5] = flip_signature_bit(raws[5])  # an issue whose carrier signature fails
    raws[130] = b"not an event"
    raws.insert(300, raws[200])  # the same event again: its first receipt
    raws[400] = flip_signature_bit(raws[400])
    assert len(raws) >= ledger_module.PROCESS_MIN_EVENTS
    held = ledger_module._workers_for(len(raws))
    if (os.cpu_count() or 1) > 1 and len(os.sched_getaffinity(0)) > 1:
        assert held is not None, "worker processes were expected on this machine"
    if workers_busy == "none":  # one core, say: every chunk is checked on the caller's thread
        monkeypatch.setattr(ledger_module, "_workers_for", lambda count: None)
        held = None
    if workers_busy and held is not None:  # an audit has them: each chunk is checked here
        monkeypatch.setattr(ledger_module, "WORKERS_WAIT", 0.01)
        held.lock.acquire()
    try:
        results = both_ways(tmp_path, parties, raws)
    finally:
        if workers_busy and held is not None:
            held.lock.release()
    assert results[0] == results[1]
    kinds = [kind for kind, _ in results[1]]
    assert kinds[5] == "VerificationError" and kinds[130] == "InvalidInput"
    assert results[1][300] == ("receipt", (results[1][200][1][0], True))
    # the documents whose issue failed: each of their later events is refused as well
    assert kinds.count("receipt") < len(raws) - 3


def both_ways(tmp_path: Path, parties: list[bytes], raws: list[bytes]) -> list[list[Any]]:
    """Outcomes of appending ``raws`` one by one, then with append_many, on fresh ledgers."""
    results: list[list[Any]] = []
    for name, many in (("one", False), ("many", True)):
        url = f"sqlite:///{tmp_path}/{name}.db"
        with Ledger(url, LOG_KEY) as ledger:
            for raw in parties:
                ledger.append(raw)
            if many:
                got = ledger.append_many(raws)
            else:
                got = []
                for raw in raws:
                    try:
                        got.append(ledger.append(raw))
                    except Error as exc:
                        got.append(exc)
            results.append([outcome(r) for r in got])
            appended = sum(1 for kind, value in results[-1] if kind == "receipt" and not value[1])
            assert ledger.size() == len(parties) + appended
    return results


@pytest.mark.parametrize("count", [1, ledger_module.PROCESS_MIN_EVENTS - 1])
def test_small_batches_stay_on_the_callers_thread(count: int) -> None:
    assert ledger_module._workers_for(count) is None
