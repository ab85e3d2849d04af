"""The data directory: the log's key, the operator's key and the service's identity.

``encd init`` (or the first ``encd serve``) creates::

    <data dir>/            mode 0700
        log.key            the log's Ed25519 signing key (PKCS#8 PEM, 0600)
        operator.key       the operator party's Ed25519 key (PKCS#8 PEM, 0600)
        service.json       origin, operator id and name, the two verifier keys
        ledger.db          the SQLite ledger (unless ENCD_DATABASE_URL points elsewhere)

and appends the ledger's first event: the operator registering itself.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from encd.errors import InvalidInput
from encd.events import make_event
from encd.identifiers import check_legal_id
from encd.keys import SigningKey
from ledger.ledger import Ledger

# A valid USCC (check character included) used when no operator id is given:
# replace it with the operator's own with `encd init --operator-id`.
DEFAULT_OPERATOR_ID = "91500000MA6000001G"
DEFAULT_OPERATOR_NAME = "encd ledger operator"


@dataclass(frozen=True)
class Service:
    data_dir: Path
    origin: str
    operator_id: str
    operator_name: str
    log_key: SigningKey
    operator_key: SigningKey
    created: bool

    @property
    def log_key_path(self) -> Path:
        return self.data_dir / "log.key"

    @property
    def operator_key_path(self) -> Path:
        return self.data_dir / "operator.key"


def load_or_init(
    data_dir: Path,
    origin: str,
    operator_id: str | None = None,
    operator_name: str | None = None,
) -> Service:
    """Open the data directory, creating keys and service.json the first time.  Anything
    wrong with it (not a directory, unwritable, service.json not encd's, a key missing or
    not the one service.json names) is an InvalidInput naming the file and the fault."""
    config_path = data_dir / "service.json"
    if data_dir.exists() and not data_dir.is_dir():
        raise InvalidInput("data dir", f"{data_dir} is not a directory")
    if config_path.exists():
        return _load(data_dir, config_path, operator_id)
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
    config = {
        "origin": origin,
        "operator_id": operator_id,
        "operator_name": operator_name or DEFAULT_OPERATOR_NAME,
        "log_vkey": log_key.public.vkey,
        "operator_vkey": operator_key.public.vkey,
    }
    made: list[Path] = []  # what to take away again if the directory cannot be completed
    try:
        if not data_dir.exists():
            data_dir.mkdir(parents=True)
            made.append(data_dir)
            os.chmod(data_dir, 0o700)  # (mkdir's mode would be masked by the umask)
        for key, name in ((log_key, "log.key"), (operator_key, "operator.key")):
            key.save(data_dir / name)
            made.append(data_dir / name)
        partial = data_dir / "service.json.partial"  # service.json appears whole or not
        made.append(partial)
        partial.write_text(json.dumps(config, indent=2) + "\n")
        os.replace(partial, config_path)
    except OSError as exc:
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir() if path == data_dir else path.unlink(missing_ok=True)
        where = exc.filename or data_dir
        raise InvalidInput("data dir", f"cannot create {where}: {exc.strerror}") from None
    return Service(
        data_dir, origin, operator_id, config["operator_name"], log_key, operator_key, created=True
    )


def _load(data_dir: Path, config_path: Path, operator_id: str | None) -> Service:
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
    if operator_id and operator_id != config["operator_id"]:
        raise InvalidInput(
            "operator id",
            f"{data_dir} belongs to operator {config['operator_id']}, not {operator_id}",
        )
    log_key = _key(config["origin"], data_dir / "log.key", config.get("log_vkey"))
    operator_key = _key(
        config["operator_id"], data_dir / "operator.key", config.get("operator_vkey")
    )
    return Service(
        data_dir,
        config["origin"],
        config["operator_id"],
        config["operator_name"],
        log_key,
        operator_key,
        created=False,
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
        raise InvalidInput("data dir", f"{path}: {exc.message}") from None
    if vkey is not None and vkey != key.public.vkey:
        raise InvalidInput("data dir", f"{path} is not the key service.json names ({vkey})")
    return key


def ensure_genesis(ledger: Ledger, service: Service, now: datetime) -> None:
    """Append the operator's own registration if the ledger is empty."""
    if ledger.size() > 0:
        return
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
    ledger.append(raw)
