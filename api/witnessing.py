"""The log's side of c2sp.org/tlog-witness: new checkpoints go to the witnesses, and the
cosignatures they return are kept with the checkpoint.

The witnesses a service uses are listed in a text file (``encd serve --witnesses``; by
default ``<data dir>/witnesses.txt`` when it exists), one per line::

    # comments and blank lines are ignored
    witness <the witness's cosigner verifier key> <its submission URL prefix>

A ``#`` starts a comment.  The URL is http or https, with no user name, password or query.

``WitnessPusher`` runs in the process that appends (the sequencer), a thread per
witness: every ``interval`` seconds, if the latest checkpoint is newer than the last one
a witness cosigned, it POSTs ``<prefix>/add-checkpoint`` with a consistency proof from the size that witness
last cosigned.  A 409 names the size the witness holds: the proof is made again from
there.  A cosignature is checked against the witness's key before it is kept (the
``cosignature`` table); ``GET /log/checkpoint`` and the exports then carry it, and
``encd audit`` counts it against an auditor's quorum.  A witness that is down or
refuses is logged once when that starts and once when it ends; appends never wait for
witnesses, nor does one witness wait for another.  An answer is read to at most
``MAX_ANSWER`` bytes, unencoded; each step waits ``TIMEOUT`` seconds at most, and a body
still arriving ``TIMEOUT`` seconds after the request began is given up.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from encd.checkpoint import Checkpoint, CosignerKey, verify_cosignatures
from encd.errors import Error, InvalidInput
from encd.note import SIG_PREFIX, parse_note
from encd.validation import show
from encd.witness import SIZE_MEDIA_TYPE, AddCheckpoint
from ledger.ledger import Ledger

WITNESSES_FILE = "witnesses.txt"
INTERVAL = 1.0  # seconds between rounds
TIMEOUT = 10.0  # seconds a witness has to answer
MAX_ANSWER = 64 * 1024  # bytes of a witness's answer read, at most
CLOSE_WAIT = 2.0  # seconds a shutdown waits for exchanges under way
CLOCK_SKEW = 600  # seconds a cosignature's time may be from this host's clock

_log = logging.getLogger("uvicorn.error")


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    """A witness the log sends its checkpoints to: its cosigner key and submission prefix."""

    key: CosignerKey
    url: str

    def line(self) -> str:
        return f"witness {self.key.vkey} {self.url}"


def parse_witnesses(text: str, source: str) -> tuple[WitnessEndpoint, ...]:
    """The witnesses of a witnesses file's ``text``; InvalidInput names ``source``'s line."""
    found: dict[str, WitnessEndpoint] = {}
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        words = raw.split("#", 1)[0].split()  # (a comment may end a line)
        where = f"{source} line {number}"
        if not words:
            continue
        if words[0] != "witness":
            raise InvalidInput(
                where,
                f"expected 'witness <cosigner vkey> <URL prefix>', got {show(words[0], 40)} "
                "where 'witness' was expected",
            )
        if len(words) != 3:
            raise InvalidInput(
                where,
                f"expected 'witness <cosigner vkey> <URL prefix>': {len(words) - 1} word(s) after "
                f"'witness', not 2 (the last is {show(words[-1], 60)})",
            )
        try:
            key = CosignerKey.from_vkey(words[1])
        except InvalidInput as exc:
            raise InvalidInput(where, f"not a witness's cosigner key: {exc.message}") from None
        url = _submission_url(words[2], where)
        if key.key_id in found:
            raise InvalidInput(where, f"the witness {key.key_id} is listed twice")
        found[key.key_id] = WitnessEndpoint(key, url)
    return tuple(found.values())


def _submission_url(given: str, where: str) -> str:
    """A witness's submission prefix: http(s), a host, a port that is one, a path; no
    credentials (they would be logged), no query or fragment (``/add-checkpoint`` is
    appended to the path)."""
    try:
        parsed = httpx.URL(given)
        host, port = parsed.host, parsed.port  # (the host is decoded here: IDNA may fail)
    except (httpx.InvalidURL, UnicodeError) as exc:
        if "@" in given:
            given = "<a URL with a user name or password>"
        raise InvalidInput(where, f"not a URL: {show(given)}: {exc}") from None
    if parsed.userinfo:
        raise InvalidInput(
            where, "the URL carries a user name or password: a witness is reached without them"
        )
    if parsed.scheme not in ("http", "https") or not host:
        raise InvalidInput(where, f"expected an http:// or https:// URL, got {show(given)}")
    if port is not None and not 0 < port < 65536:
        raise InvalidInput(where, f"the port {port} is not one (1 to 65535): {show(given)}")
    if parsed.query or parsed.fragment or "?" in given or "#" in given:
        raise InvalidInput(
            where, f"a witness's URL prefix has no query or fragment, got {show(given)}"
        )
    return given.rstrip("/")


@functools.lru_cache(maxsize=8)
def configured_witnesses(lines: tuple[str, ...]) -> tuple[WitnessEndpoint, ...]:
    """The witnesses of a service's settings (``Settings.witnesses``), parsed once."""
    return parse_witnesses("\n".join(lines), "witnesses")


def load_witnesses(path: Path, required: bool) -> tuple[WitnessEndpoint, ...]:
    """The witnesses file at ``path``: none if it is missing and not ``required``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise InvalidInput(str(path), "no such file") from None
        return ()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise InvalidInput(str(path), f"cannot read it: {reason}") from None
    return parse_witnesses(text, str(path))


@dataclass
class _Known:
    """What the log knows of one witness: the size it last cosigned (as far as we know),
    and what went wrong in the last round (logged when it changes)."""

    size: int | None = None
    trouble: str = ""
    cosigned: set[int] = field(default_factory=set)


class _Slot:
    """The checkpoint a witness's thread is to send next: only the latest is kept."""

    def __init__(self) -> None:
        self._latest: tuple[bytes, int] | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()

    def hand(self, latest: tuple[bytes, int]) -> None:
        with self._lock:
            self._latest = latest
            self._ready.set()

    def wake(self) -> None:
        """Wake the thread waiting on the slot (to see that it is to stop)."""
        self._ready.set()

    def empty(self) -> bool:
        with self._lock:
            return self._latest is None

    def take(self, timeout: float) -> tuple[bytes, int] | None:
        if not self._ready.wait(timeout):
            return None
        with self._lock:
            self._ready.clear()
            latest, self._latest = self._latest, None
        return latest


class WitnessPusher:
    """Sends the log's new checkpoints to ``witnesses`` and keeps their cosignatures.

    Each witness has its own thread: one that answers slowly, or not at all, delays
    only its own cosignatures.  An exchange with a witness ends after ``timeout``
    seconds of answer (checked as its answer arrives; each read waits ``timeout`` at
    most).  ``close`` hands every witness the log's last checkpoint, so that the
    witnesses have seen the log as it stopped (a receipt given in its last second
    carries a checkpoint no round had sent yet; a restore of an older backup would then
    be a fork no witness could refuse), and waits ``CLOSE_WAIT`` seconds at most for
    them: a witness cannot hold up a shutdown.
    """

    def __init__(
        self,
        ledger: Ledger,
        witnesses: Sequence[WitnessEndpoint],
        *,
        interval: float = INTERVAL,
        timeout: float = TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.ledger = ledger
        self.witnesses = tuple(witnesses)
        self.interval = interval
        self.timeout = timeout
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self._known = {w.key.key_id: _Known() for w in self.witnesses}
        self._stop = threading.Event()  # the threads end once their slot is empty
        self._rounds_end = threading.Event()
        self._closed = threading.Event()
        self._slots = {w.key.key_id: _Slot() for w in self.witnesses}
        self._threads = [
            threading.Thread(target=self._send, args=(w,), name=f"encd-witness-{i}", daemon=True)
            for i, w in enumerate(self.witnesses)
        ]
        self._rounds = threading.Thread(target=self._run, name="encd-witnesses", daemon=True)

    def start(self) -> WitnessPusher:
        for witness, thread in zip(self.witnesses, self._threads, strict=True):
            _log.info("witness %s: sending checkpoints to %s", witness.key.key_id, witness.url)
            thread.start()
        if self.witnesses:
            self._rounds.start()
        return self

    def close(self, wait: float = CLOSE_WAIT) -> None:
        """Stop sending, once each witness has been handed the log's last checkpoint;
        wait ``wait`` seconds at most for the exchanges."""
        deadline = time.monotonic() + wait
        self._rounds_end.set()
        if self._rounds.is_alive():
            self._rounds.join(wait)
        if not self._rounds.is_alive() and any(t.is_alive() for t in self._threads):
            last = self._last_checkpoint(deadline)
            if last is not None:
                for slot in self._slots.values():
                    slot.hand(last)
        self._stop.set()
        for slot in self._slots.values():
            slot.wake()
        for witness, thread in zip(self.witnesses, self._threads, strict=True):
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                _log.warning(
                    "witness %s: still answering at the stop; the last checkpoint may not "
                    "have reached it",
                    witness.key.key_id,
                )
        self._closed.set()  # a thread still answering keeps no cosignature from now on
        self._http.close()

    def _last_checkpoint(self, deadline: float) -> tuple[bytes, int] | None:
        """The log's latest checkpoint, read by ``deadline`` (a store gone at the stop must
        not hold it longer), or None."""
        found: list[tuple[bytes, int]] = []

        def read() -> None:
            try:
                found.append(self._latest())
            except Exception as exc:
                _log.warning("witnesses: cannot read the last checkpoint to send: %s", exc)

        reader = threading.Thread(target=read, name="encd-witnesses-last", daemon=True)
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        return found[0] if found else None

    def __enter__(self) -> WitnessPusher:  # (not started: push_once by hand)
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self) -> None:
        """Each round, the latest checkpoint is handed to every witness's thread at once,
        so the witnesses that keep up cosign the same checkpoints (an auditor's quorum
        needs several cosignatures on one); a thread still busy with an earlier one
        takes the latest when it is free."""
        while not self._rounds_end.wait(self.interval):
            try:
                latest = self._latest()
            except Exception as exc:  # the store away for a moment: try again next round
                _log.warning("witnesses: cannot read the latest checkpoint: %s", exc)
                continue
            for slot in self._slots.values():
                slot.hand(latest)

    def _send(self, witness: WitnessEndpoint) -> None:
        slot = self._slots[witness.key.key_id]
        while not (self._stop.is_set() and slot.empty()):  # (close hands it the last one)
            latest = slot.take(timeout=1.0)
            if latest is None:
                continue
            try:
                self._push(witness, *latest)
            except Exception as exc:  # the store away for a moment: try again next round
                _log.warning("witness %s: this round failed: %s", witness.key.key_id, exc)

    def _latest(self) -> tuple[bytes, int]:
        note = self.ledger.checkpoint()
        return note, Checkpoint.parse(parse_note(note).text).size

    def push_once(self) -> dict[str, str]:
        """One round, one witness after another: the latest checkpoint to each witness
        that has not cosigned it.  Returns, per witness key ID, "cosigned", "already" or
        what went wrong."""
        note, size = self._latest()
        return {w.key.key_id: self._push(w, note, size) for w in self.witnesses}

    def _push(self, witness: WitnessEndpoint, note: bytes, size: int) -> str:
        known = self._known[witness.key.key_id]
        if size in known.cosigned:
            return "already"
        outcome = self._exchange(witness, known, note, size)
        if outcome == "cosigned":
            known.cosigned = {size}
            if known.trouble:
                _log.info("witness %s: cosigning again", witness.key.key_id)
        elif self._stop.is_set():  # the last checkpoint, at the stop: always said
            _log.warning(
                "witness %s: the last checkpoint (tree size %d) was not cosigned at the stop: %s",
                witness.key.key_id,
                size,
                outcome,
            )
        elif outcome != known.trouble:
            _log.warning("witness %s: %s", witness.key.key_id, outcome)
        known.trouble = "" if outcome == "cosigned" else outcome
        return outcome

    def _post(self, url: str, body: bytes) -> httpx.Response:
        """The witness's answer, read to at most ``MAX_ANSWER`` bytes (a cosignature line
        is ~150) and within ``timeout`` seconds: a witness cannot make the appending
        process hold more, nor its thread wait on a trickle of bytes."""
        deadline = time.monotonic() + self.timeout
        headers = {
            "content-type": "text/plain; charset=utf-8",
            "accept-encoding": "identity",  # the limit counts the bytes we hold, not sent
        }
        with self._http.stream("POST", url, content=body, headers=headers) as answer:
            if answer.headers.get("content-encoding", "identity").lower() != "identity":
                raise _Unread("answered with a content-encoding after being asked for none")
            content = b""
            for block in answer.iter_bytes():
                content += block
                if len(content) > MAX_ANSWER:
                    raise _Unread(f"answered with more than {MAX_ANSWER} bytes")
                if time.monotonic() > deadline:
                    raise _Unread(f"did not finish answering within {self.timeout:g} s")
        return httpx.Response(answer.status_code, headers=answer.headers, content=content)

    def _exchange(self, witness: WitnessEndpoint, known: _Known, note: bytes, size: int) -> str:
        old = known.size or 0
        for _ in range(3):  # a 409 tells the witness's size: once more from there
            if old > size:  # another server of this ledger may have sent a newer checkpoint
                note, size = self._latest()
            if old > size:
                return (
                    f"the witness has cosigned a tree of {old} entries and this log has "
                    f"{size}: it was shown another history of this log, or entries were lost"
                )
            proof = self.ledger.consistency(old, size) if 0 < old < size else []
            body = AddCheckpoint(old, tuple(proof), note).to_bytes()
            try:
                answer = self._post(witness.url + "/add-checkpoint", body)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return f"cannot reach {witness.url}: {str(exc) or type(exc).__name__}"
            except _Unread as exc:
                return str(exc)
            kind = answer.headers.get("content-type", "").split(";")[0].strip()
            if answer.status_code == 409 and kind == SIZE_MEDIA_TYPE:
                held = _size(answer.content)
                if held is None:
                    return f"409 with a size that is not one: {show(answer.text, 40)}"
                if held == old:
                    return (
                        f"409 at size {old}: the witness holds another root for that size "
                        "(it was shown another history of this log)"
                    )
                if held < old:  # it cosigned a larger tree before: its state is lost
                    _log.warning(
                        "witness %s: holds a tree of %d entries, fewer than the %d it "
                        "cosigned before: it lost its state (sending it this log again "
                        "from there)",
                        witness.key.key_id,
                        held,
                        old,
                    )
                known.size = old = held
                continue
            if answer.status_code == 409:  # (without a size: the same size, another root)
                return (
                    f"409 at size {old}: the witness holds another root for that size (it was "
                    f"shown another history of this log): {show(_detail(answer), 200)}"
                )
            if answer.status_code != 200:
                return f"refused with {answer.status_code}: {show(_detail(answer), 200)}"
            found = _cosignature(witness, note, answer.content)
            if found is None:
                return f"answered 200 without a valid cosignature by {witness.key.key_id}"
            line, stamp = found
            if abs(stamp - time.time()) > CLOCK_SKEW:
                return (
                    f"cosigned at {stamp} (UNIX time), more than {CLOCK_SKEW} s from this "
                    "host's clock: one of the two clocks is wrong; not kept"
                )
            if self._closed.is_set():  # (the ledger may be closed: the service stopped)
                return "answered after the stop; not kept"
            self.ledger.add_cosignature(size, witness.key.key_id, line)
            known.size = size
            return "cosigned"
        return "the witness's size kept changing (another log process is sending it checkpoints?)"


class _Unread(Exception):
    """A witness's answer not read to its end: too long, or too slow."""


def _size(content: bytes) -> int | None:
    text = content.decode("ascii", "replace")
    if not text.endswith("\n") or not text[:-1].isascii() or not text[:-1].isdigit():
        return None
    return int(text[:-1]) if len(text) < 22 else None


def _detail(answer: httpx.Response) -> str:
    try:
        problem = answer.json()
    except ValueError:
        return answer.text
    return str(problem.get("detail", problem)) if isinstance(problem, dict) else answer.text


def _cosignature(witness: WitnessEndpoint, note: bytes, content: bytes) -> tuple[bytes, int] | None:
    """The one line of ``content`` that is ``witness``'s valid cosignature of ``note``, and
    its timestamp."""
    prefix = f"{SIG_PREFIX}{witness.key.name} ".encode()
    for line in content.splitlines(keepends=True):
        if not line.startswith(prefix) or not line.endswith(b"\n"):
            continue
        try:
            stamp = verify_cosignatures(note + line, [witness.key]).get(witness.key.name)
        except Error:
            continue
        if stamp is not None:
            return line, stamp
    return None


__all__ = [
    "INTERVAL",
    "WITNESSES_FILE",
    "WitnessEndpoint",
    "WitnessPusher",
    "configured_witnesses",
    "load_witnesses",
    "parse_witnesses",
]
