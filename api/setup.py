"""The data directory: the log's key, the operator's key and the service's identity.

``encd init`` (or the first ``encd serve``) creates::

    <data dir>/            mode 0700
        log.key            the log's Ed25519 signing key (PKCS#8 PEM, 0600)
        operator.key       the operator party's Ed25519 key (PKCS#8 PEM, 0600)
        service.json       origin, operator id and name, the two verifier keys
        ledger.db          the SQLite ledger (unless ENCD_DATABASE_URL points elsewhere)
        checkpoint         the newest checkpoint of the log seen (see ensure_extends_mark)

and appends the ledger's first event: the operator registering itself.  Its event id is
then recorded in service.json as ``genesis`` (``null`` until then): from then on a ledger
that is missing, empty or begins with another event is refused, where starting it afresh
would have the log key sign a second history (a fork) after a lost ledger or a mistyped
database URL.  A service.json with no ``genesis`` member at all was written by an earlier
encd, which began the ledger at once: its ledger is held to exist in the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from encd.checkpoint import Checkpoint, open_checkpoint
from encd.errors import Error, InvalidInput, VerificationError
from encd.events import SHA256_HEX, make_event
from encd.identifiers import check_legal_id
from encd.keys import SigningKey, check_key_name
from encd.merkle import verify_consistency
from encd.note import parse_note
from encd.validation import show
from ledger.db import has_schema
from ledger.ledger import Ledger

# A valid USCC (check character included) used when no operator id is given:
# replace it with the operator's own with `encd init --operator-id`.
DEFAULT_OPERATOR_ID = "91500000MA6000001G"
DEFAULT_OPERATOR_NAME = "encd ledger operator"
DEFAULT_ORIGIN = "encd.local/log"


@dataclass(frozen=True)
class Service:
    data_dir: Path
    origin: str
    operator_id: str
    operator_name: str
    log_key: SigningKey
    #: None once the ledger has begun and operator.key was moved off the server: the
    #: service signs with it only the ledger's first event (the operator's registration)
    operator_key: SigningKey | None
    created: bool
    genesis: str | None = None  # the event id of the log's first entry, once recorded
    #: the ledger has been begun: ``genesis`` is recorded, or service.json predates it (an
    #: encd before 2026-12-04 wrote no ``genesis`` and began the ledger at once); a new
    #: data directory's service.json holds ``"genesis": null`` until its ledger begins
    begun: bool = False
    made: tuple[Path, ...] = ()  # what load_or_init created, for ``undo``
    operator_vkey: str = ""  # the operator key's verifier key (as service.json has it)

    @property
    def log_key_path(self) -> Path:
        return self.data_dir / "log.key"

    @property
    def operator_key_path(self) -> Path:
        return self.data_dir / "operator.key"


def load_or_init(
    data_dir: Path,
    origin: str | None = None,
    operator_id: str | None = None,
    operator_name: str | None = None,
) -> Service:
    """Open the data directory, creating keys and service.json the first time.  Anything
    wrong with it (not a directory, unwritable, service.json not encd's, a key missing or
    not the one service.json names, an origin or operator given that is not the one it
    holds) is an InvalidInput naming the file and the fault."""
    config_path = data_dir / "service.json"
    try:
        if data_dir.exists() and not data_dir.is_dir():
            raise InvalidInput("data dir", f"{data_dir} is not a directory")
        found = config_path.exists()
    except OSError as exc:  # a directory on the way that may not be searched, say
        raise InvalidInput("data dir", f"cannot look at {data_dir}: {exc.strerror}") from None
    if found:
        return _load(data_dir, config_path, origin, operator_id, operator_name)
    origin = DEFAULT_ORIGIN if origin is None else origin
    check_origin(origin)
    stray = [name for name in ("log.key", "operator.key") if (data_dir / name).exists()]
    if stray:
        raise InvalidInput(
            "data dir",
            f"{data_dir} holds {' and '.join(stray)} but no service.json: put service.json "
            "back beside them, or move them away to start a new log",
        )
    operator_id = operator_id or DEFAULT_OPERATOR_ID
    try:
        check_legal_id(operator_id)
    except ValueError as exc:
        raise InvalidInput("operator id", str(exc)) from None
    if operator_name is not None:
        _check_name(operator_name)
    log_key = SigningKey.generate(origin)
    operator_key = SigningKey.generate(operator_id)
    name = operator_name or DEFAULT_OPERATOR_NAME
    config: dict[str, str | None] = {
        "origin": origin,
        "operator_id": operator_id,
        "operator_name": name,
        "log_vkey": log_key.public.vkey,
        "operator_vkey": operator_key.public.vkey,
        "genesis": None,  # (recorded when the ledger begins)
    }
    made: list[Path] = []  # what to take away again if the directory cannot be completed
    try:
        if not data_dir.exists():
            # each directory made, outermost first, so that an undo takes away them all
            missing = [data_dir, *itertools.takewhile(lambda p: not p.exists(), data_dir.parents)]
            for directory in reversed(missing):
                directory.mkdir()
                made.append(directory)
            os.chmod(data_dir, 0o700)  # (mkdir's mode would be masked by the umask)
        for key, file in ((log_key, "log.key"), (operator_key, "operator.key")):
            key.save(data_dir / file)
            made.append(data_dir / file)
        partial = data_dir / "service.json.partial"  # service.json appears whole or not
        made.append(partial)
        partial.write_text(json.dumps(config, indent=2) + "\n")
        os.replace(partial, config_path)
    except BaseException as exc:  # an OSError, or an interruption half-way
        _take_away(made)
        if not isinstance(exc, OSError):
            raise
        where = exc.filename or data_dir
        raise InvalidInput("data dir", f"cannot create {where}: {exc.strerror}") from None
    made.remove(partial)
    made.append(config_path)
    return Service(
        data_dir,
        origin,
        operator_id,
        name,
        log_key,
        operator_key,
        created=True,
        made=tuple(made),
        operator_vkey=operator_key.public.vkey,
    )


def check_origin(origin: str) -> str:
    """A log's name: a schema-less URL (c2sp.org/tlog-checkpoint), a key name of at most
    255 characters of printable ASCII."""
    check_key_name(origin, "origin")
    if "://" in origin:
        raise InvalidInput(
            "origin", f"a log's name is a URL without its scheme, got {show(origin)}"
        )
    if len(origin) > 255 or not origin.isascii():
        raise InvalidInput(
            "origin", f"a log's name is at most 255 ASCII characters, got {show(origin)}"
        )
    return origin


def _take_away(paths: list[Path] | tuple[Path, ...]) -> None:
    for path in reversed(paths):
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)


def undo(service: Service) -> None:
    """Take away what ``load_or_init`` made of a new data directory (its ledger could not
    be started): a retry then starts afresh, with the options it is given."""
    _take_away(service.made)


def _load(
    data_dir: Path,
    config_path: Path,
    origin: str | None,
    operator_id: str | None,
    operator_name: str | None,
) -> Service:
    try:
        config = json.loads(config_path.read_bytes())
    except OSError as exc:
        raise InvalidInput("service.json", f"cannot read {config_path}: {exc.strerror}") from None
    except (ValueError, RecursionError):
        raise InvalidInput("service.json", f"{config_path} is not JSON") from None
    names = ("origin", "operator_id", "operator_name")
    if not isinstance(config, dict) or not all(
        isinstance(config.get(name), str) and config[name] for name in names
    ):
        raise InvalidInput(
            "service.json",
            f"{config_path} is not encd's: it must be a JSON object with the strings "
            "origin, operator_id and operator_name (encd init writes it)",
        )
    try:
        check_legal_id(config["operator_id"])
        _check_name(config["operator_name"])
    except (ValueError, InvalidInput) as exc:
        reason = exc.message if isinstance(exc, InvalidInput) else str(exc)
        raise InvalidInput("service.json", f"{config_path}: {reason}") from None
    genesis = config.get("genesis")
    begun = "genesis" not in config or genesis is not None
    if genesis is not None and not (isinstance(genesis, str) and SHA256_HEX.fullmatch(genesis)):
        raise InvalidInput(
            "service.json", f"{config_path}: genesis must be an event id (64 hex digits)"
        )
    given = (
        ("origin", origin, "is the log", "a log's name cannot change"),
        ("operator id", operator_id, "belongs to operator", "nor can its operator"),
        (
            "operator name",
            operator_name,
            "names its operator",
            "the name the operator registered under",
        ),
    )
    for field, value, what, hint in given:
        held = config[field.replace(" ", "_")]
        if value is not None and value != held:
            raise InvalidInput(field, f"{data_dir} {what} {held!r}, not {value!r} ({hint})")
    log_key = _key(config["origin"], data_dir / "log.key", config.get("log_vkey"))
    operator_path = data_dir / "operator.key"
    operator_key: SigningKey | None = None
    if not (begun and config.get("operator_vkey") and not os.path.lexists(operator_path)):
        operator_key = _key(config["operator_id"], operator_path, config.get("operator_vkey"))
    return Service(
        data_dir,
        config["origin"],
        config["operator_id"],
        config["operator_name"],
        log_key,
        operator_key,
        created=False,
        genesis=genesis,
        begun=begun,
        operator_vkey=operator_key.public.vkey if operator_key else str(config["operator_vkey"]),
    )


def _check_name(name: str) -> None:
    """The operator's name, by the rule its registration's ``name`` follows."""
    from pydantic import TypeAdapter, ValidationError

    from encd.parties import Name

    try:
        TypeAdapter(Name).validate_python(name)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise InvalidInput("operator name", reason) from None


def _key(name: str, path: Path, vkey: object) -> SigningKey:
    """A key of the data directory, which must be the one service.json names (if it does)."""
    try:
        key = SigningKey.load(name, path)
    except FileNotFoundError:
        raise InvalidInput("data dir", f"{path} is missing (service.json names it)") from None
    except OSError as exc:
        raise InvalidInput("data dir", f"cannot read {path}: {exc.strerror}") from None
    except InvalidInput as exc:
        if "password" in exc.message.lower():
            raise InvalidInput(
                "data dir",
                f"{path} is encrypted: the service reads its data directory's keys unattended, "
                "so they are kept unencrypted (mode 0600, in a directory of mode 0700)",
            ) from None
        raise InvalidInput("data dir", f"{path}: {exc.message}") from None
    if vkey is not None and vkey != key.public.vkey:
        raise InvalidInput("data dir", f"{path} is not the key service.json names ({vkey})")
    return key


def ensure_genesis(ledger: Ledger, service: Service, now: datetime) -> None:
    """Append the operator's own registration if the ledger is empty, and record its event
    id in service.json.  A ledger that is empty, or that begins with another event, where
    service.json has recorded the first is refused (an InvalidInput): a new genesis would
    have the log key sign a second history."""
    if ledger.size() == 0:
        if service.begun:
            raise InvalidInput("ledger", f"it is empty, but {_began(service)}")
        _append_genesis(ledger, service, now)
    first = ledger.entries(0, 1)[0][1]
    if service.genesis is None:
        _record_genesis(service, first)
    elif first != service.genesis:
        raise InvalidInput("ledger", f"it begins with event {first[:16]}…, but {_began(service)}")
    ensure_extends_mark(ledger, service)


# --- the newest checkpoint seen signed -----------------------------------------------------

MARK_FILE = "checkpoint"  # <data dir>/checkpoint: the newest checkpoint this service has seen
MARK_INTERVAL = 1.0  # seconds between looks at the ledger's newest checkpoint


def ensure_extends_mark(ledger: Ledger, service: Service) -> None:
    """Refuse a ledger that does not extend the checkpoint kept in ``<data dir>/checkpoint``
    (an InvalidInput): an older copy of the ledger (a backup restored), or another history,
    whose next checkpoints would have the log key sign a fork.  Then keep the ledger's
    newest checkpoint there.  A file that does not open as a checkpoint of this log's key
    is replaced, with a warning."""
    path = service.data_dir / MARK_FILE
    newest = ledger.checkpoint()
    head = open_checkpoint(newest, service.log_key.public)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = None
    except OSError as exc:
        raise InvalidInput("data dir", f"cannot read {path}: {exc.strerror}") from None
    if data is not None:
        try:
            mark = open_checkpoint(data, service.log_key.public)
        except Error as exc:
            logging.getLogger("encd").warning(
                "encd: %s is not a checkpoint of this log (%s): it is replaced by the ledger's "
                "newest",
                path,
                exc.message,
            )
        else:
            _check_extends(ledger, head, mark, path)
            if mark.size >= head.size:
                return  # (the same tree: nothing newer to keep)
    keep_mark(path, newest)


def _check_extends(ledger: Ledger, head: Checkpoint, mark: Checkpoint, path: Path) -> None:
    remedy = (
        "Its next checkpoints would have the log key sign a second history (a fork) that "
        "holders of receipts and the witnesses would see.  Restore a copy of the ledger that "
        "is not older, or give its URL with --db or ENCD_DATABASE_URL.  To serve this copy "
        f"all the same, knowing that the entries it lacks are lost, remove {path}"
    )
    if head.size < mark.size:
        raise InvalidInput(
            "ledger",
            f"it holds {_entries(head.size)}, but this log has signed a checkpoint of "
            f"{_entries(mark.size)} ({path}): it is an older copy.  {remedy}",
        )
    if mark.size == 0:
        return  # (every tree extends the empty one)
    try:
        if head.size == mark.size:
            if head.root != mark.root:
                raise VerificationError("the two roots differ")
        else:
            proof = ledger.consistency(mark.size, head.size)
            verify_consistency(mark.size, head.size, proof, mark.root, head.root)
    except Error:
        raise InvalidInput(
            "ledger",
            f"its tree of {_entries(head.size)} does not extend the checkpoint of "
            f"{_entries(mark.size)} this log has signed ({path}): it holds another history.  "
            f"{remedy}",
        ) from None


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


def keep_mark(path: Path, note: bytes) -> None:
    """Write ``note`` (a signed checkpoint) to ``path``, whole or not at all, on disk."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as out:
            out.write(note)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise


class MarkKeeper:
    """Keeps ``<data dir>/checkpoint`` up with the ledger: every ``interval`` seconds, in a
    thread of the process that appends, the ledger's newest checkpoint is written there if
    it is newer than the one written last (once more as it stops).  A file that cannot be
    written is warned of once, and tried again each round."""

    def __init__(self, ledger: Ledger, data_dir: Path, interval: float = MARK_INTERVAL) -> None:
        self.ledger = ledger
        self.path = data_dir / MARK_FILE
        self.interval = interval
        self._size = -1
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="encd-mark", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.keep()

    def keep(self) -> None:
        log = logging.getLogger("encd")
        try:
            note = self.ledger.checkpoint()
            size = Checkpoint.parse(parse_note(note, strict=False).text).size
            if size <= self._size:
                return
            keep_mark(self.path, note)
        except OSError as exc:
            if not self._failing:
                log.warning(
                    "encd: cannot keep the newest checkpoint in %s (%s): a restored older "
                    "ledger would not be noticed at the next start",
                    self.path,
                    exc.strerror,
                )
            self._failing = True
            return
        except Exception:  # the store is away: the next round tries again
            return
        if self._failing:
            log.warning("encd: the newest checkpoint is kept in %s again", self.path)
        self._failing = False
        self._size = size

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.keep()


def missing_ledger(url: str, service: Service) -> str | None:
    """Why the ledger at ``url`` cannot be this data directory's, before it is opened (an
    SQLite file made, a schema created): where its ledger has begun (``Service.begun``),
    an SQLite file that does not exist, or a database without encd's schema, is a ledger
    elsewhere or lost."""
    if not service.begun:
        return None
    path = _sqlite_file(url)
    if path is not None and not os.path.exists(path):
        return f"it does not exist, but {_began(service)}"
    if not has_schema(url):
        return f"it is empty (no encd tables), but {_began(service)}"
    return None


def new_sqlite_files(url: str) -> list[Path]:
    """The files a new SQLite ledger at ``url`` would make that do not exist yet (to take
    away again if a new data directory cannot be completed); none if the ledger exists."""
    path = _sqlite_file(url)
    if path is None or os.path.exists(path):
        return []
    ends = ("", "-wal", "-shm", "-journal", "-sequencer.lock")
    return [Path(path + end) for end in ends if not os.path.exists(path + end)]


def _sqlite_file(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    with contextlib.suppress(Exception):
        parsed = make_url(url)
        path = parsed.database or ""
        if parsed.get_backend_name() == "sqlite" and path not in ("", ":memory:"):
            return None if path.startswith("file:") else path
    return None


@contextlib.contextmanager
def first_start(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's lock (flock on the directory itself, no file made) while
    the ledger is opened and its genesis appended, so two starts do not both append one,
    and one that fails does not take away what the other made."""
    fd = os.open(data_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _began(service: Service) -> str:
    config = service.data_dir / "service.json"
    if service.genesis is not None:
        began = f"{config} records that this log began with event {service.genesis[:16]}…"
    else:
        began = (
            f"{config} was written by an encd that recorded no genesis, and that began "
            "this log's ledger with it"
        )
    return (
        f"{began}: starting it afresh would have its log key sign a second history (a "
        "fork).  Restore the ledger, or give its URL with --db or ENCD_DATABASE_URL; a new "
        "log needs a new data directory (one that never served may simply be removed)"
    )


def _record_genesis(service: Service, event_id: str) -> None:
    """Add ``genesis`` to service.json (whole or not at all); a data directory that cannot
    be written (keys on a read-only mount, say) goes on without it, with a warning."""
    path = (service.data_dir / "service.json").resolve()  # (a link to it stays one)
    partial = path.with_name(f"service.json.{os.getpid()}.partial")
    try:
        config = json.loads(path.read_bytes())
        if config.get("genesis") == event_id:
            return
        config["genesis"] = event_id
        partial.write_text(json.dumps(config, indent=2) + "\n")
        os.chmod(partial, path.stat().st_mode & 0o7777)  # (its mode as it was)
        os.replace(partial, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        logging.getLogger("encd").warning(
            "encd: cannot record the log's first event in %s (%s): a lost ledger would not "
            "be noticed at the next start",
            path,
            exc.strerror,
        )


def _append_genesis(ledger: Ledger, service: Service, now: datetime) -> None:
    if service.operator_key is None:  # (only a begun ledger may be without it)
        raise InvalidInput("data dir", f"{service.operator_key_path} is missing")
    raw = make_event(
        [service.operator_key],
        type="register",
        party=service.operator_id,
        seq=0,
        prev=None,
        time=now,
        body={
            "name": service.operator_name,
            "roles": ["operator"],
            "keys": [service.operator_key.public.vkey],
        },
    )
    try:
        ledger.append(raw)
    except Error:
        if ledger.size() == 0:
            raise
        # another host of this service, started at the same moment on the same empty
        # ledger, appended its genesis first: that one begins the log (ensure_genesis
        # records it), as it would have had this host started a moment later
