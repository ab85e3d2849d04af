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
    """Open the data directory, creating keys and service.json the first time."""
    config_path = data_dir / "service.json"
    if config_path.exists():
        config = json.loads(config_path.read_text())
        if operator_id and operator_id != config["operator_id"]:
            raise InvalidInput(
                "operator id",
                f"{data_dir} belongs to operator {config['operator_id']}, not {operator_id}",
            )
        return Service(
            data_dir,
            config["origin"],
            config["operator_id"],
            config["operator_name"],
            SigningKey.load(config["origin"], data_dir / "log.key"),
            SigningKey.load(config["operator_id"], data_dir / "operator.key"),
            created=False,
        )
    operator_id = operator_id or DEFAULT_OPERATOR_ID
    try:
        check_legal_id(operator_id)
    except ValueError as exc:
        raise InvalidInput("operator id", str(exc)) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    log_key = SigningKey.generate(origin)
    operator_key = SigningKey.generate(operator_id)
    log_key.save(data_dir / "log.key")
    operator_key.save(data_dir / "operator.key")
    config = {
        "origin": origin,
        "operator_id": operator_id,
        "operator_name": operator_name or DEFAULT_OPERATOR_NAME,
        "log_vkey": log_key.public.vkey,
        "operator_vkey": operator_key.public.vkey,
    }
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return Service(
        data_dir, origin, operator_id, config["operator_name"], log_key, operator_key, created=True
    )


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
