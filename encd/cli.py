"""The ``encd`` command (docs/cli.md).

Commands that need the service import it lazily, so ``encd audit`` and
``encd keygen`` run with the domain alone.  Exit status: 0 done (or valid);
1 tried and failed: refused by the service, invalid, the service unreachable
or its answer wrong; 2 bad usage: something given cannot be used, found before
anything is sent.  ``--json`` gives machines the same result.

What the command prints comes from users and from the service: it is printed
as text, never read as rich markup, with control characters shown escaped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import random
import re
import secrets
import signal
import stat
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from encd.canonical import parse_json
from encd.errors import Error, InvalidInput
from encd.events import SHA256_HEX
from encd.identifiers import check_legal_id
from encd.keys import SigningKey
from encd.validation import show

if TYPE_CHECKING:
    from api.client import Client
    from api.server import Tls
    from api.setup import Service

app = typer.Typer(
    name="encd",
    help="A ledger for electronic negotiable cargo documents: issue, endorse, pledge, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _nonempty_path(value: str | Path) -> Path:
    """A path option's value: an empty one would be read as the directory "."."""
    if str(value) == "":
        raise typer.BadParameter("a path must not be empty")
    return Path(value)


def path_option(*names: str, **settings: Any) -> Any:
    """``typer.Option`` for a path, refusing an empty one."""
    return typer.Option(*names, parser=_nonempty_path, metavar="<path>", **settings)


def path_argument(**settings: Any) -> Any:
    """``typer.Argument`` for a path, refusing an empty one."""
    return typer.Argument(parser=_nonempty_path, **settings)


TlsCertOpt = Annotated[
    Path | None,
    path_option(
        envvar="ENCD_TLS_CERT",
        help="Serve HTTPS with this certificate chain (PEM, the server's certificate "
        "first); with --tls-key.  Unset: plain HTTP (local use, or behind a TLS proxy).",
    ),
]
TlsKeyOpt = Annotated[
    Path | None,
    path_option(
        envvar="ENCD_TLS_KEY",
        help="The certificate's private key (PEM, unencrypted), for --tls-cert.",
    ),
]


def https(cert: Path | None, key: Path | None) -> Tls | None:
    """The checked --tls-cert and --tls-key (exit 2 for a mistake), None for plain HTTP."""
    from api.server import load_tls

    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        fail(f"{given} needs {missing} too: HTTPS takes a certificate and its key", 2)
    try:
        tls, expiring = load_tls(cert, key)
    except InvalidInput as exc:
        fail(exc.message, 2)
    for warning in expiring:
        say(f"encd: WARNING: {warning}; clients will refuse it", err)
    return tls


ServerOpt = Annotated[
    str, typer.Option("--server", envvar="ENCD_SERVER", help="The encd service's base URL.")
]
KeyOpt = Annotated[
    Path, path_option("--key", envvar="ENCD_KEY", help="Your private key file (PKCS#8 PEM).")
]
PartyOpt = Annotated[
    str, typer.Option("--party", envvar="ENCD_PARTY", help="Your party id (USCC or LEI).")
]
_json_wanted = False  # the running command's --json: a failure is then JSON too


def _note_json(value: bool) -> bool:
    global _json_wanted
    _json_wanted = value
    return value


JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print JSON for scripts.", callback=_note_json)
]
DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 30.0  # seconds: ENCD_TIMEOUT


def printable(text: str) -> str:
    """``text`` with control and format characters (escape sequences, bidi overrides)
    and lone surrogates shown as Python escapes; line feeds and tabs stay."""
    return "".join(
        ch if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs") else repr(ch)[1:-1]
        for ch in text
    )


FAIL_LIMIT = 1000  # characters of a failure's message shown


def one_line(text: str) -> str:
    """``text`` on one line (a service's refusal may hold line feeds: none may print a
    line of its own), cut to FAIL_LIMIT characters."""
    flat = " ".join(text.split())
    if len(flat) > FAIL_LIMIT:
        return flat[:FAIL_LIMIT] + f"… ({len(flat)} characters)"
    return flat


def say(text: str, to: Console | None = None) -> None:
    """A line of output: text, never markup, and not broken into lines (the terminal
    wraps it; a path or an id copied from it stays whole)."""
    (to or console).print(
        printable(text), markup=False, emoji=False, highlight=False, soft_wrap=True
    )


def fail(message: str, code: int = 1) -> NoReturn:
    """One ``FAIL:`` line on standard error and exit ``code``; under --json, also
    ``{"ok": false, "exit": code, "error": message}`` on standard output."""
    if _json_wanted:
        print(json.dumps({"ok": False, "exit": code, "error": message}, sort_keys=True))
    shown = escape(printable(one_line(message)))
    err.print("[red]FAIL:[/] " + shown, emoji=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


_PLAIN_FIELD = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # ids, statuses, amounts, currencies


def emit(result: Any, as_json: bool, human: str | None = None) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        say(human if human is not None else json.dumps(result, indent=2))


def got(answer: Any, *path: str | int, kind: type | tuple[type, ...] = object) -> Any:
    """``answer[path[0]][path[1]]…``, a field the service's answer always has, of type
    ``kind``; if it is missing or of another type, the service is not answering as the
    API says, and the command fails."""
    value = answer
    where = ".".join(str(p) for p in path)
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            fail(f"the service's answer has no {where}: it is not answering as encd expects")
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        fail(
            f"in the service's answer, {where} is of the wrong type: it is not answering as "
            "encd expects"
        )
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            fail(f"in the service's answer, {where} is not UTF-8 text")
    return value


def listed(answer: Any, *path: str | int) -> str:
    """A list of strings in the answer (parties, labels), comma-separated."""
    items = got(answer, *path, kind=list)
    return ", ".join(got(answer, *path, i, kind=str) for i in range(len(items)))


def warn_if_others_read(path: Path) -> None:
    """A warning on standard error if the key file ``path`` is readable by others."""
    mode = path.stat().st_mode
    if stat.S_ISREG(mode) and mode & 0o077:
        say(
            f"warning: {path} can be read by others (mode {stat.S_IMODE(mode):04o}): "
            f"chmod 600 {path}",
            err,
        )


def load_key(party: str, path: Path) -> SigningKey:
    passphrase = os.environ.get("ENCD_KEY_PASSPHRASE")
    if looks(path, lambda: path.exists() and not path.is_file()):
        fail(f"key file {path} is not a regular file", 2)
    try:
        warn_if_others_read(path)
        try:
            return SigningKey.load(party, path, os.fsencode(passphrase) if passphrase else None)
        except InvalidInput as exc:
            if not (passphrase and "not encrypted" in exc.message):
                raise
            # one ENCD_KEY_PASSPHRASE for every command: a clear key (a data directory's
            # operator.key, say) is read as it is
            return SigningKey.load(party, path)
    except FileNotFoundError:
        named = (
            ""
            if os.environ.get("ENCD_KEY") or path != Path("key.pem")
            else (" (the default: give your key file with --key or ENCD_KEY)")
        )
        fail(f"key file {path} does not exist{named}", 2)
    except OSError as exc:
        fail(f"cannot read key file {path}: {exc.strerror}", 2)
    except InvalidInput as exc:
        if "password" in exc.message.lower() and not passphrase:
            fail(f"{path} is encrypted: set ENCD_KEY_PASSPHRASE", 2)
        fail(f"key file {path}: {exc.message}", 2)


def looks(path: Path, test: Callable[[], bool]) -> bool:
    """``test()`` about ``path``; a path that cannot be looked at (a directory on the way
    that may not be searched) is bad usage, said so."""
    try:
        return test()
    except OSError as exc:
        fail(f"cannot look at {path}: {exc.strerror}", 2)


def check_party(value: str, option: str) -> str:
    """A party id given on the command line: a USCC or an LEI (exit 2 otherwise)."""
    try:
        check_legal_id(value)
    except ValueError as exc:
        fail(f"{option}: {exc}", 2)
    return value


_DOC_ID = re.compile(r"[A-Z0-9][A-Z0-9-]{2,63}")  # docs/formats/events.md


def doc_id(value: str, what: str = "DOC") -> str:
    """A document id given on the command line (exit 2 if it cannot be one)."""
    if not _DOC_ID.fullmatch(value):
        fail(
            f"{what}: a document id is 3 to 64 characters A-Z, 0-9 and '-', starting with a "
            f"letter or digit; got {value!r}",
            2,
        )
    return value


def hex_id(value: str, what: str) -> str:
    """A proposal or event id given on the command line: 64 lowercase hex digits."""
    if not SHA256_HEX.fullmatch(value):
        fail(f"{what}: expected 64 lowercase hex digits, got {value!r}", 2)
    return value


def timeout() -> float:
    """ENCD_TIMEOUT: the seconds each exchange with the service may take."""
    given = os.environ.get("ENCD_TIMEOUT", "").strip()
    if not given:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(given)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 86400:
        fail(f"ENCD_TIMEOUT: expected seconds, more than 0 and at most 86400, got {given!r}", 2)
    return seconds


def client(server: str, key: Path, party: str) -> Client:
    from api.client import Client

    if not party:
        fail("say who you are: --party <your party id> (or ENCD_PARTY)", 2)
    check_party(party, "--party (ENCD_PARTY)")
    if not base_url(server):
        fail(
            "--server (ENCD_SERVER): expected the service's base URL, http://host[:port] or "
            f"https://host[:port] (no path, user or query), got {server!r}",
            2,
        )
    signer = load_key(party, key)
    seconds = timeout()  # its own failure, before the try below (typer.Exit is an Exception)
    try:  # the environment's proxies and certificates are read here
        return Client(server, signer, timeout=seconds)
    except Exception as exc:  # a proxy URL httpx cannot use, a missing CA file, …
        used = [
            f"{name}={_without_password(os.environ[name])!r}"
            for name in CONNECTION_ENV
            for name in (name, name.lower())
            if os.environ.get(name)
        ]
        source = f" (set in the environment: {', '.join(used)})" if used else ""
        fail(f"cannot set up a connection to {server}: {exc or type(exc).__name__}{source}", 2)


def _without_password(value: str) -> str:
    """A proxy URL without its user information (``user:password@``), to be shown."""
    scheme, sep, rest = value.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return value
    return f"{scheme}://…@{rest.split('@', 1)[1]}"


#: The environment variables httpx reads to set up its connections (upper or lower case).
CONNECTION_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_BASE_URL = re.compile(r"(https?)://([^/?#@\s]+?)(?::([1-9][0-9]{0,4}))?/?")


def base_url(server: str) -> bool:
    """Whether ``server`` is a service's base URL: http or https, a host (DNS name, IPv4
    or bracketed IPv6) and a port 1-65535 written without a leading zero (the
    ``@authority`` signed is the URL's ``host[:port]``, without a default port)."""
    import ipaddress

    match = _BASE_URL.fullmatch(server)
    if not match or (match[3] and int(match[3]) > 65535):
        return False
    host = match[2]
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            return False
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return False
    try:
        host.encode("idna")  # an "xn--" label must be one
    except UnicodeError:
        return False
    return True


def read_content(path: Path) -> dict[str, Any]:
    """Document content from JSON or YAML, validated before anything is sent."""
    from encd.document import Document

    if looks(path, lambda: path.exists() and not path.is_file()):
        fail(f"{path} is not a regular file", 2)
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2)
    value: Any = None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        class _Loader(yaml.SafeLoader):
            """Dates stay strings, as in JSON: 2026-03-10 is text, not a datetime; a key
            given twice in one mapping is refused, as canonical JSON refuses it."""

            def construct_mapping(self, node: Any, deep: bool = False) -> Any:
                if isinstance(node, yaml.MappingNode):
                    seen: set[str] = set()
                    for key_node, _ in node.value:  # the keys written here: a merge
                        if key_node.tag == "tag:yaml.org,2002:merge":  # (<<) may be overridden
                            continue
                        key = self.construct_object(key_node, deep=True)
                        if isinstance(key, str) and key in seen:
                            raise yaml.constructor.ConstructorError(
                                None, None, f"key {key!r} appears twice", key_node.start_mark
                            )
                        if isinstance(key, str):
                            seen.add(key)
                return super().construct_mapping(node, deep)

        _Loader.yaml_implicit_resolvers = {
            first: [
                (tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"
            ]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        try:
            value = yaml.load(data, Loader=_Loader)
        except yaml.YAMLError as exc:
            fail(f"{path}: YAML: {exc}", 2)
        except ValueError as exc:  # int() refuses a number of more than 4300 digits, say
            said = str(exc)
            if "digits" in said:
                said = "a number has too many digits to be an exact integer"
            fail(f"{path}: YAML: {said}", 2)
        except RecursionError:
            fail(f"{path}: nested too deeply to be document content", 2)
    try:
        if path.suffix.lower() not in (".yaml", ".yml"):
            value = parse_json(data)
        Document.from_json(value)
    except InvalidInput as exc:
        fail(f"{path}: {exc.message}", 2)
    except RecursionError:
        fail(f"{path}: nested too deeply to be document content", 2)
    if not isinstance(value, dict):
        fail(f"{path}: document content must be an object", 2)
    return value


class _Overdue(BaseException):
    """The whole of an exchange with the service took longer than ENCD_TIMEOUT (a
    BaseException: no ``except Exception`` on the way may swallow it)."""


@contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise _Overdue in the main thread after ``seconds``: httpx's timeouts bound each
    read, and a service that sends a byte at a time would keep the command for ever."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def overdue(_signum: int, _frame: object) -> None:
        raise _Overdue

    previous = signal.signal(signal.SIGALRM, overdue)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(action: Any, whole: bool = True) -> Any:
    """Run a client action, within ENCD_TIMEOUT unless not ``whole`` (a download, whose each
    read is bounded, not the whole; or local work after the answers are in).  A refusal, an error or a wrong answer prints why and
    exits 1."""
    from api.client import ProblemError

    seconds = timeout()
    done: list[Any] = []
    try:
        with _deadline(seconds if whole else None):
            done.append(action())
    except _Overdue:
        if done:  # the deadline struck as it was being taken down: the answer is here
            return done[0]
        fail(f"the service did not finish answering within {seconds:g} s (ENCD_TIMEOUT)")
    except ProblemError as exc:
        problem = exc.problem
        field = problem.get("field")
        where = f" [{field}]" if isinstance(field, str) and field else ""
        title = problem.get("title") or _reason_phrase(exc.status)
        fail(f"{exc.status} {title}{where}: {problem.get('detail', '')}")
    except Error as exc:
        fail(exc.message)
    except KeyboardInterrupt:  # (typer would exit 130 saying nothing, --json or not)
        if done:  # the answer is here: the interruption came after it
            return done[0]
        fail(
            "interrupted (Ctrl-C) while waiting for the service: what was sent may or may "
            "not have taken effect",
            130,
        )
    return done[0]


def _reason_phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "(no title)"


# --- keys and the service -------------------------------------------------------------------


@app.command()
def keygen(
    party: Annotated[str, typer.Argument(help="The party id the key will belong to.")],
    out: Annotated[Path, path_option("--out", help="Where to write the private key.")],
    encrypt: Annotated[bool, typer.Option(help="Encrypt with ENCD_KEY_PASSPHRASE.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate an Ed25519 key; prints its public verifier key (give that to the operator)."""
    passphrase = os.environ.get("ENCD_KEY_PASSPHRASE") if encrypt else None
    if encrypt and not passphrase:
        fail("--encrypt needs ENCD_KEY_PASSPHRASE", 2)
    if not encrypt and os.environ.get("ENCD_KEY_PASSPHRASE"):
        fail(
            "ENCD_KEY_PASSPHRASE is set but --encrypt is not given: give --encrypt to encrypt "
            "the key with it, or unset it to write the key in clear",
            2,
        )
    key = SigningKey.generate(check_party(party, "PARTY"))
    if looks(out, out.is_dir):
        fail(f"--out: {out} is a directory; name the key file to write", 2)
    try:
        key.save(out, os.fsencode(passphrase) if passphrase else None)
    except FileExistsError:
        fail(f"{out} exists; refusing to overwrite a key", 2)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}", 2)
    result = {"key_file": str(out), "key_id": key.public.key_id, "vkey": key.public.vkey}
    emit(result, as_json, f"Wrote {out} (mode 0600)\nverifier key: {key.public.vkey}")


@app.command()
def init(
    data_dir: Annotated[Path, path_option(help="Data directory.")] = Path("encd-data"),
    origin: Annotated[
        str | None,
        typer.Option(
            help="The log's name (a schema-less URL); default encd.local/log.  An existing "
            "data directory's cannot change."
        ),
    ] = None,
    operator_id: Annotated[
        str | None,
        typer.Option(
            help="The operator's USCC or LEI; default: the placeholder 91500000MA6000001G, "
            "for trying encd only (the ledger's first event names the operator for good)."
        ),
    ] = None,
    operator_name: Annotated[str | None, typer.Option(help="The operator's name.")] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Database URL (default: ENCD_DATABASE_URL, else SQLite in the data dir)."
        ),
    ] = None,
) -> None:
    """Create the data directory, the log key and the operator key, and the ledger."""
    from api.server import WorkerFailed, prepare
    from api.settings import Settings
    from api.setup import load_or_init

    try:
        service = load_or_init(data_dir, origin, operator_id, operator_name)
    except Error as exc:
        fail(exc.message, 2)
    settings = Settings(data_dir=data_dir, database_url=db, origin=service.origin)
    try:
        prepare(settings, service)
    except WorkerFailed as exc:
        fail(str(exc), 2 if exc.refused else 1)
    say(made_where(service) if service.created else f"Found {data_dir}/")
    say(f"  log key       {service.log_key_path}  {service.log_key.public.vkey}")
    where = service.operator_key_path if service.operator_key else "kept elsewhere"
    say(f"  operator key  {where}  party {service.operator_id}")
    say(f"  ledger        {settings.redacted_url()}")
    placeholder_notice(service)


def made_where(service: Service) -> str:
    """What a first start made of its data directory: the directory itself (mode 0700), or
    only what is in it.  A directory that was there already keeps its mode; one that
    others may enter is named in a WARNING on standard error (the keys are 0600 either
    way, but the SQLite ledger, the documents' contents, is readable as the umask made it)."""
    data_dir = service.data_dir
    if data_dir in service.made:
        return f"Created {data_dir}/ (mode 0700)"
    try:
        mode = stat.S_IMODE(data_dir.stat().st_mode)
    except OSError:  # (gone since: the next step says so)
        return f"Created the service's files in {data_dir}/"
    if mode & 0o077:
        say(
            f"encd: WARNING: {data_dir}/ was there already and is mode {mode:04o}: other "
            f"users may enter it and read the ledger in it; chmod 700 {data_dir} (the keys "
            "are mode 0600)",
            err,
        )
    return f"Created the service's files in {data_dir}/, which was there already (mode {mode:04o})"


def placeholder_notice(service: Service) -> None:
    """A notice on standard error when a new ledger's operator is the placeholder id."""
    from api.setup import DEFAULT_OPERATOR_ID

    if service.created and service.operator_id == DEFAULT_OPERATOR_ID:
        say(
            f"encd: NOTICE: the operator is the placeholder party {DEFAULT_OPERATOR_ID} "
            "(no --operator-id): fine for trying encd, but the ledger's first event names "
            "it for good; for a real ledger, start afresh with encd init --operator-id "
            "<your USCC or LEI>",
            err,
        )


@app.command()
def serve(
    data_dir: Annotated[Path, path_option(help="Data directory.")] = Path("encd-data"),
    db: Annotated[str | None, typer.Option(help="Database URL (or ENCD_DATABASE_URL).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")
    ] = 8080,
    origin: Annotated[
        str | None,
        typer.Option(help="The log's name on first start (default encd.local/log)."),
    ] = None,
    authority: Annotated[
        str,
        typer.Option(
            envvar="ENCD_AUTHORITY",
            help="The names clients address the service by, host[:port], comma-separated "
            "(e.g. ledger.example.com,127.0.0.1:8080): a signed request for any other "
            "@authority is refused.  Unset: not checked (local use).",
        ),
    ] = "",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port and the ledger (one per core is a good "
            "start); each request is answered by one of them.",
        ),
    ] = 1,
    request_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds a client has to send a whole request (line, headers, body) once "
            "the service is ready for it; a connection still short of one is closed.",
        ),
    ] = 30.0,
    witnesses: Annotated[
        Path | None,
        path_option(
            help="The witnesses to send each new checkpoint to, one 'witness <cosigner vkey> "
            "<URL>' line each (default: witnesses.txt in the data directory, if there is one).",
        ),
    ] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
) -> None:
    """Run the service (creating the data directory and keys on first start)."""
    from api.server import WorkerFailed
    from api.server import serve as run_server
    from api.settings import Settings, parse_authorities
    from api.setup import load_or_init
    from api.witnessing import WITNESSES_FILE, load_witnesses

    try:
        names = parse_authorities(authority)
    except InvalidInput as exc:
        fail(f"--authority (ENCD_AUTHORITY): {exc.reason}", 2)
    tls = https(tls_cert, tls_key)
    if witnesses is None:  # (a data dir that cannot be searched is named as such)
        looks(data_dir, data_dir.exists)
    try:
        sent_to = load_witnesses(witnesses or data_dir / WITNESSES_FILE, witnesses is not None)
    except Error as exc:
        fail(f"--witnesses: {exc.message}" if witnesses else exc.message, 2)
    try:
        service = load_or_init(data_dir, origin)
    except Error as exc:
        fail(exc.message, 2)
    if service.created:
        say(
            f"{made_where(service)}: log key {service.log_key_path}, "
            f"operator key {service.operator_key_path} (party {service.operator_id})"
        )
        placeholder_notice(service)
    if names:
        notice = f"encd: @authority pinned to {', '.join(sorted(names))}"
    else:
        notice = (
            "encd: NOTICE: @authority is not pinned (--authority or ENCD_AUTHORITY): a request "
            "signed for another deployment with the same party keys verifies here; "
            "fine for local use only"
        )
    err.print(notice, markup=False, highlight=False, soft_wrap=True)
    for witness in sent_to:
        say(f"encd: checkpoints go to witness {witness.key.key_id} at {witness.url}", err)
    settings = Settings(
        data_dir=data_dir,
        database_url=db,
        origin=service.origin,
        authorities=names,
        witnesses=tuple(w.line() for w in sent_to),
    )
    try:
        run_server(
            settings, host, port, workers, request_timeout=request_timeout, service=service, tls=tls
        )
    except WorkerFailed as exc:
        fail(str(exc), 2 if exc.refused else 1)


@app.command()
def demo(
    out: Annotated[Path, path_option(help="Where to write the bundle and policy.")] = Path(
        "encd-demo"
    ),
) -> None:
    """The corridor story on an embedded SQLite ledger, through the real HTTP API."""
    from api.demo import run as run_demo

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--out: cannot make the directory {out}: {exc.strerror}", 2)
    if not os.access(out, os.W_OK | os.X_OK):
        fail(f"--out: cannot write in {out}", 2)
    for name in ("ENCD-CQ-2026-000417.encd", "policy.txt"):  # the two it replaces
        try:
            mode = (out / name).lstat().st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            fail(f"--out: cannot look at {out / name}: {exc.strerror}", 2)
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            fail(f"--out: {out / name} is not a regular file; the demo replaces only one", 2)
    ok = run_demo(out, console)
    if not ok:
        fail("some step did not behave as expected")
    audited = _audit(out / "ENCD-CQ-2026-000417.encd", out / "policy.txt", None, False)
    if not audited:
        raise typer.Exit(1)
    console.print("[green]OK:[/] every step behaved as expected and the bundle audits offline.")


# --- witnesses --------------------------------------------------------------------------

witness_app = typer.Typer(
    help="A witness (c2sp.org/tlog-witness) that cosigns a log's checkpoints: run by a bank "
    "or any party that wants the log to show everyone one history.",
    no_args_is_help=True,
)
app.add_typer(witness_app, name="witness")
WitnessDirArg = Annotated[Path, path_argument(help="The witness's directory.")]


@witness_app.command("init")
def witness_init(
    path: WitnessDirArg,
    name: Annotated[
        str,
        typer.Option(help="The witness's name, a schema-less URL (e.g. witness.bank.example/w1)."),
    ],
    log: Annotated[
        list[str], typer.Option(help="The verifier key of a log to witness (repeat for several).")
    ],
) -> None:
    """Create a witness: its key, its name and the logs it witnesses; prints its cosigner key."""
    from api.witness import init_witness

    try:
        made = init_witness(path, name, log)
    except Error as exc:
        fail(exc.message, 2)
    say(f"Created {path}/: witness key {path}/witness.key, witnessing {len(made.logs)} log(s)")
    say("Give this line to the log's operator (with the witness's URL) and to auditors:")
    say(f"witness {made.cosigner.vkey}")


@witness_app.command("show")
def witness_show(path: WitnessDirArg) -> None:
    """Print the witness's cosigner key and the logs it witnesses."""
    from api.witness import load_witness

    try:
        print(load_witness(path).describe(), end="")
    except Error as exc:
        fail(exc.message, 2)


@witness_app.command("serve")
def witness_serve(
    path: WitnessDirArg,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")
    ] = 8090,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
) -> None:
    """Serve POST /add-checkpoint: cosign each checkpoint consistent with the last one cosigned."""
    from api.server import WorkerFailed, serve_app
    from api.witness import create_witness_app, load_witness

    tls = https(tls_cert, tls_key)
    try:
        witness = load_witness(path)
        witness.open_state().close()
        warn_if_others_read(path / "witness.key")
    except Error as exc:
        fail(exc.message, 2)
    say(f"witness {witness.cosigner.vkey}", err)
    try:
        serve_app(create_witness_app(witness), host, port, pages=False, tls=tls)
    except WorkerFailed as exc:
        fail(str(exc), 1)


# --- parties ----------------------------------------------------------------------------


party_app = typer.Typer(help="Parties: registration (operator) and look-up.", no_args_is_help=True)
app.add_typer(party_app, name="party")


@party_app.command("register")
def party_register(
    party_id: Annotated[str, typer.Argument(help="The new party's USCC or LEI.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    role: Annotated[list[str], typer.Option(help="A role (repeat for several).")],
    vkey: Annotated[list[str], typer.Option(help="A verifier key of the party (repeat).")],
    agent_for: Annotated[list[str] | None, typer.Option(help="Carrier an agent acts for.")] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("operator.key"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """The operator registers a party."""
    from typing import get_args

    from encd.events import make_event
    from encd.parties import MAX_KEYS, RoleName

    check_party(party_id, "PARTY_ID")
    for i, agent in enumerate(agent_for or []):
        check_party(agent, f"--agent-for ({i + 1})")
    known: tuple[str, ...] = get_args(RoleName)
    for given in role:
        if given not in known:
            fail(f"--role: expected one of {', '.join(known)}, got {show(given)}", 2)
    keys = [_party_vkey(text, party_id, f"--vkey ({i + 1})") for i, text in enumerate(vkey)]
    for option, values in (("--role", role), ("--vkey", keys), ("--agent-for", agent_for or [])):
        if len(set(values)) != len(values):
            fail(f"{option}: {next(v for v in values if values.count(v) > 1)} is given twice", 2)
    if len(keys) > MAX_KEYS:
        fail(f"--vkey: a party registers with 1 to {MAX_KEYS} keys, got {len(keys)}", 2)
    c = client(server, key, party)
    body: dict[str, Any] = {"name": name, "roles": role, "keys": keys}
    if agent_for:
        body["agent_for"] = agent_for
    raw = make_event(
        [c.key],
        type="register",
        party=party_id,
        seq=0,
        prev=None,
        time=datetime.now(UTC),
        body=body,
    )
    result = run(lambda: c.register(raw))
    emit(result, as_json, f"OK: registered {party_id} ({', '.join(role)})")


def _party_vkey(text: str, party_id: str, option: str) -> str:
    from encd.keys import PublicKey

    try:
        found = PublicKey.from_vkey(text.strip())  # (a key pasted with a newline)
    except InvalidInput as exc:
        fail(f"{option}: {exc.reason}", 2)
    if found.name != party_id:
        fail(f"{option}: a key of {found.name}, not of {party_id}", 2)
    return found.vkey


def _party_key_id(text: str, party_id: str, option: str) -> str:
    name, plus, digits = text.rpartition("+")
    if not (plus and name == party_id and re.fullmatch("[0-9a-f]{8}", digits)):
        fail(
            f"{option}: expected a key id {party_id}+<8 lowercase hex digits>, got {show(text)}", 2
        )
    return text


def _party_change(
    server: str,
    key: Path,
    party: str,
    party_id: str,
    type_: str,
    body: dict[str, Any],
    as_json: bool,
    said: str,
) -> None:
    """Sign ``type_`` on ``party_id``'s chain, after its head as the service shows it."""
    from encd.events import make_event

    c = client(server, key, party)
    answer = run(lambda: c.party(party_id))
    if got(answer, "id", kind=str) != party_id:
        fail(f"the service answered about another party than {party_id}")
    raw = make_event(
        [c.key],
        type=type_,
        party=party_id,
        seq=got(answer, "seq", kind=int) + 1,
        prev=got(answer, "head", kind=str),
        time=datetime.now(UTC),
        body=body,
    )
    result = run(lambda: c.party_event(party_id, raw))
    emit(result, as_json, said)


@party_app.command("add-key")
def party_add_key(
    party_id: Annotated[str, typer.Argument(help="The party's USCC or LEI.")],
    vkey: Annotated[str, typer.Option(help="The verifier key to add (encd keygen prints it).")],
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Add a key to a party (signed by the party or the operator)."""
    check_party(party_id, "PARTY_ID")
    body = {"key": _party_vkey(vkey, party_id, "--vkey")}
    _party_change(
        server, key, party, party_id, "add_key", body, as_json, f"OK: key added to {party_id}"
    )


@party_app.command("rotate-key")
def party_rotate_key(
    party_id: Annotated[str, typer.Argument(help="The party's USCC or LEI.")],
    old: Annotated[str, typer.Option(help="The key id to revoke (<party id>+<8 hex digits>).")],
    new: Annotated[str, typer.Option(help="The verifier key that replaces it.")],
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Replace a party's key by a new one in one event (signed by the party or the operator)."""
    check_party(party_id, "PARTY_ID")
    body = {
        "old": _party_key_id(old, party_id, "--old"),
        "new": _party_vkey(new, party_id, "--new"),
    }
    said = f"OK: {old} revoked and a new key added to {party_id}"
    _party_change(server, key, party, party_id, "rotate_key", body, as_json, said)


@party_app.command("revoke-key")
def party_revoke_key(
    party_id: Annotated[str, typer.Argument(help="The party's USCC or LEI.")],
    key_id: Annotated[str, typer.Argument(help="The key id to revoke.")],
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Revoke a party's key: it signs nothing from then on (signed by the party or the
    operator; a party's last active key is rotated, not revoked)."""
    check_party(party_id, "PARTY_ID")
    body = {"key_id": _party_key_id(key_id, party_id, "KEY_ID")}
    _party_change(
        server, key, party, party_id, "revoke_key", body, as_json, f"OK: {key_id} revoked"
    )


@party_app.command("show")
def party_show(
    party_id: str,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Look a party up: its name, roles, keys (revoked ones marked) and chain head."""
    check_party(party_id, "PARTY_ID")
    c = client(server, key, party)
    answer = run(lambda: c.party(party_id))
    if got(answer, "id", kind=str) != party_id:
        fail(f"the service answered about another party than {party_id}")
    keys = []
    for i in range(len(got(answer, "keys", kind=list))):
        revoked = got(answer, "keys", i, "revoked", kind=bool)
        keys.append(got(answer, "keys", i, "vkey", kind=str) + ("  (revoked)" if revoked else ""))
    lines = [
        f"party     {party_id} ({got(answer, 'scheme', kind=str)})",
        f"name      {got(answer, 'name', kind=str)}",
        f"roles     {listed(answer, 'roles')}",
        *(f"key       {k}" for k in keys),
    ]
    if got(answer, "agent_for", kind=list):
        lines.append(f"agent for {listed(answer, 'agent_for')}")
    head = got(answer, "head", kind=str)
    lines.append(f"seq       {got(answer, 'seq', kind=int)}, head event {head}")
    emit(answer, as_json, "\n".join(lines))


# --- document events ------------------------------------------------------------------------


def _submit(
    server: str,
    key: Path,
    party: str,
    doc: str,
    type_: str,
    body: dict[str, Any],
    as_json: bool,
    propose: bool = False,
    retry_stale: bool = False,
) -> None:
    doc_id(doc)
    c = client(server, key, party)
    if retry_stale:
        receipt = run(lambda: _submit_at_head(c, doc, type_, body))
        emit(
            receipt,
            as_json,
            f"OK: {type_} logged at index {got(receipt, 'log_index', kind=int)} "
            f"(event {got(receipt, 'event_id', kind=str)})",
        )
        return
    raw = run(lambda: c.next_event(doc, type_, body))
    if propose:
        result = run(lambda: c.propose(raw))
        if got(result, "state", kind=str) == "applied":
            emit(
                result,
                as_json,
                f"OK: {type_} applied (log index {got(result, 'receipt', 'log_index', kind=int)})",
            )
        else:
            emit(
                result,
                as_json,
                f"OK: proposed {type_} as {got(result, 'id', kind=str)}; waiting for "
                + listed(result, "missing"),
            )
        return
    receipt = run(lambda: c.submit(raw))
    emit(
        receipt,
        as_json,
        f"OK: {type_} logged at index {got(receipt, 'log_index', kind=int)} "
        f"(event {got(receipt, 'event_id', kind=str)})",
    )


STALE_RETRIES = 8


def _submit_at_head(c: Any, doc: str, type_: str, body: dict[str, Any]) -> Any:
    """Sign ``body`` against the document's head and submit it; when another event took
    that head first (409 stale-event), sign against the new head and try again.  Only for
    events whose meaning does not depend on what came before them (a milestone)."""
    from api.client import ProblemError

    for attempt in range(1, STALE_RETRIES):
        try:
            return c.submit(c.next_event(doc, type_, body))
        except ProblemError as exc:
            if exc.problem.get("type") != "urn:encd:problem:stale-event":
                raise
            time.sleep(random.uniform(0.01, 0.05) * attempt)  # the others go on meanwhile
    return c.submit(c.next_event(doc, type_, body))


@app.command()
def issue(
    content: Annotated[Path, path_argument(help="Document content, JSON or YAML.")],
    holder: Annotated[str, typer.Option(help="The first holder's party id.")],
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Issue an eNCD (carrier)."""
    from encd.events import make_event

    value = read_content(content)
    check_party(holder, "--holder")
    c = client(server, key, party)
    raw = make_event(
        [c.key],
        type="issue",
        doc=value["id"],
        seq=0,
        prev=None,
        time=datetime.now(UTC),
        body={"content": value, "holder": holder},
    )
    receipt = run(lambda: c.submit(raw))
    emit(
        receipt,
        as_json,
        f"OK: issued {value['id']} to {holder} at index {got(receipt, 'log_index', kind=int)}",
    )


@app.command()
def transfer(
    doc: str,
    to: Annotated[str, typer.Option(help="The endorsee's party id.")],
    blank: Annotated[bool, typer.Option(help="Endorse in blank.")] = False,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Endorse the document to another party (holder)."""
    check_party(to, "--to")
    _submit(server, key, party, doc, "transfer", {"to": to, "blank": blank}, as_json)


@app.command()
def reject(
    doc: str,
    reason: Annotated[str | None, typer.Option()] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Reject a transfer just made to you."""
    _submit(server, key, party, doc, "reject_transfer", _reason(reason), as_json)


def _reason(reason: str | None) -> dict[str, Any]:
    return {"reason": reason} if reason else {}


@app.command()
def pledge(
    doc: str,
    bank: Annotated[str, typer.Option(help="The pledgee bank's party id.")],
    loan_ref: Annotated[str, typer.Option()],
    amount: Annotated[str, typer.Option(help="Decimal amount, e.g. 120000.00")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code.")],
    registry_ref: Annotated[str, typer.Option(help="Pledge registry reference.")],
    maturity: Annotated[str, typer.Option(help="YYYY-MM-DD")],
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Propose a pledge (holder or bank); the other countersigns with `encd countersign`."""
    check_party(bank, "--bank")
    try:
        due = date.fromisoformat(maturity) if len(maturity) == 10 else None
    except ValueError:
        due = None
    if due is None:
        fail(f"--maturity: expected a real date YYYY-MM-DD, got {maturity!r}", 2)
    if due < datetime.now(UTC).date():
        fail(f"--maturity: {maturity} is past: a pledge is for a loan not yet due", 2)
    body = {
        "pledgee": bank,
        "loan_ref": loan_ref,
        "amount": amount,
        "currency": currency,
        "registry_ref": registry_ref,
        "maturity": maturity,
    }
    _checked(body, "pledge", {"pledgee": "--bank", **_options(body)})
    _submit(server, key, party, doc, "pledge", body, as_json, propose=True)


def _options(body: Mapping[str, Any]) -> dict[str, str]:
    return {name: "--" + name.replace("_", "-") for name in body}


def _checked(body: dict[str, Any], type_: str, options: Mapping[str, str]) -> None:
    """The body by its event's rule (docs/formats/events.md §5) before anything is sent; a
    field that breaks it is named by its option (``options``: body field to option)."""
    from encd.title import RULES
    from encd.validation import parse_model

    try:
        parse_model(RULES[type_].body, body, "")
    except InvalidInput as exc:
        field = exc.field.split("[")[0]
        option = options.get(field) or options.get(field.split(".")[0]) or field
        fail(f"{option}: {exc.reason}", 2)


@app.command()
def countersign(
    proposal_id: str,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Sign a proposal waiting for you (applies it when yours is the last signature).

    What is signed is the event text the proposal id names (its SHA-256): one the service
    sent that is not is refused, and what it does is printed."""
    from encd.events import Event, sign_text

    hex_id(proposal_id, "PROPOSAL_ID")
    c = client(server, key, party)
    proposal = run(lambda: c.proposal(proposal_id))
    text = got(proposal, "text", kind=str)
    if hashlib.sha256(text.encode()).hexdigest() != proposal_id:
        fail(f"the service sent a text that is not proposal {proposal_id}'s: nothing signed")
    signature = b"".join(s.line().encode() for s in sign_text(text.encode(), [c.key]))
    signed = text.encode() + b"\n" + signature
    try:
        event = Event.parse(signed)
    except InvalidInput as exc:
        fail(f"proposal {proposal_id} is not a document event ({exc.message}): nothing signed")
    if event.is_party_event:
        fail(f"proposal {proposal_id} is not a document event: nothing signed")
    current = None
    if event.type == "amend":  # what it changes, against the content the service holds
        held = run(lambda: c.document(event.subject))
        current = got(held, "title", "content", kind=dict)
    what = describe(event.type, event.subject, event.body, current)
    result = run(lambda: c.countersign(proposal_id, signed))
    if got(result, "state", kind=str) == "applied":
        index = got(result, "receipt", "log_index", kind=int)
        emit(result, as_json, f"OK: signed {what}; applied at index {index}")
    else:
        waiting = listed(result, "missing")
        emit(result, as_json, f"OK: signed {what}; still waiting for {waiting}")


def _without_nulls(value: Any) -> Any:
    """``value`` without the null members of its objects, at every depth."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def describe(
    kind: str, doc: str, body: Mapping[str, Any], current: Mapping[str, Any] | None = None
) -> str:
    """What a document event does, in words, for whoever is asked to sign it; for an
    amendment, given the ``current`` content, which of its fields it changes."""

    def value(name: str) -> str:
        item = body.get(name)
        return item if isinstance(item, str) else json.dumps(item)

    if kind == "pledge":
        return (
            f"pledge of {doc} to {value('pledgee')} for {value('amount')} "
            f"{value('currency')} (loan {value('loan_ref')}, registry {value('registry_ref')}, "
            f"maturity {value('maturity')})"
        )
    if kind == "amend":
        from encd.events import content_digest

        new = body.get("content")
        changes = ""
        if current is not None and isinstance(new, dict):
            new_held = _without_nulls(new)  # as the service holds it (formats/title.md §1)
            changed = sorted(k for k in {*current, *new_held} if current.get(k) != new_held.get(k))
            changes = f", changing {', '.join(changed) or 'nothing'}"
        return (
            f"amendment of {doc}'s content to the content of digest "
            f"{content_digest(new)[:16]}…{changes}"
        )
    if kind == "switch_to_paper":
        return f"switch of {doc} to paper document {value('paper_document_number')}"
    reason = f" (reason: {value('reason')})" if "reason" in body else ""
    return f"{kind} of {doc}{reason}"


@app.command()
def proposals(
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Open proposals you must sign or have signed."""
    c = client(server, key, party)
    found: list[dict[str, Any]] = []
    after: str | None = None
    seen: set[str] = set()
    while True:  # every page, oldest first (api.md §4, Answers)
        page = run(functools.partial(c.proposals, after=after))
        listed_here = got(page, "proposals", kind=list)
        found += [got(page, "proposals", i, kind=dict) for i in range(len(listed_here))]
        # (a service from before pages sends no next: its one answer holds them all)
        after = got(page, "next", kind=(str, type(None))) if "next" in page else None
        if after is None:
            break
        if after in seen:
            fail(f"the service's answer sends back to page {after} again: not as encd expects")
        seen.add(after)
    result = {"proposals": found, "next": None}
    lines = []
    for p in found:
        text = got(p, "text", kind=str)
        try:
            envelope = json.loads(text)
            what = describe(envelope["type"], envelope["doc"], envelope["body"])
        except (Error, TypeError, ValueError, KeyError, AttributeError, RecursionError):
            what = f"{got(p, 'type', kind=str)} of {got(p, 'document', kind=str)} (not an event)"
        lines.append(f"{got(p, 'id', kind=str)}  {what}; waiting for {listed(p, 'missing')}")
    emit(result, as_json, "\n".join(lines) or "no open proposals")


def _simple(type_: str, propose: bool = False, doc_help: str = "") -> Any:
    def command(
        doc: str,
        reason: Annotated[str | None, typer.Option()] = None,
        server: ServerOpt = DEFAULT_SERVER,
        key: KeyOpt = Path("key.pem"),
        party: PartyOpt = "",
        as_json: JsonOpt = False,
    ) -> None:
        _submit(server, key, party, doc, type_, _reason(reason), as_json, propose=propose)

    command.__doc__ = doc_help
    return command


app.command("release")(_simple("release", doc_help="Release the pledge (pledgee)."))
app.command("enforce")(_simple("enforce", doc_help="Enforce the pledge: the bank becomes holder."))
app.command("deliver")(_simple("deliver", doc_help="Deliver the goods (carrier)."))
app.command("refuse")(_simple("refuse", doc_help="Refuse delivery: back to active (carrier)."))
app.command("surrender")(
    _simple(
        "surrender",
        propose=True,
        doc_help="Surrender for delivery (holder; the pledgee countersigns if pledged).",
    )
)
app.command("void")(
    _simple(
        "void", propose=True, doc_help="Void a document issued in error (carrier and first holder)."
    )
)


@app.command()
def instruct(
    doc: str,
    text: str,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Give the carrier an instruction (holder)."""
    _submit(server, key, party, doc, "instruct", {"instruction": text}, as_json)


@app.command()
def acknowledge(
    doc: str,
    instruction: Annotated[str, typer.Argument(help="The instruct event's id.")],
    accept: Annotated[bool, typer.Option("--accept/--decline")] = True,
    note: Annotated[str | None, typer.Option()] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Answer a holder's instruction (carrier)."""
    hex_id(instruction, "INSTRUCTION")
    body: dict[str, Any] = {"instruction": instruction, "accepted": accept}
    if note:
        body["note"] = note
    _submit(server, key, party, doc, "acknowledge", body, as_json)


@app.command()
def milestone(
    doc: str,
    kind: Annotated[
        str,
        typer.Option(
            help="gate_in, departed, arrived, transshipped, loaded, "
            "discharged, customs_cleared, gate_out or other"
        ),
    ],
    locode: Annotated[str, typer.Option(help="UN/LOCODE, e.g. CNQZH")],
    place: Annotated[str, typer.Option(help="Place name")],
    at: Annotated[str | None, typer.Option(help="RFC 3339 UTC time (default: now)")] = None,
    note: Annotated[str | None, typer.Option()] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Record a tracking milestone (carrier or its agent)."""
    from encd.document import Place
    from encd.events import format_time, parse_time
    from encd.validation import parse_model

    body: dict[str, Any] = {
        "kind": kind,
        "location": {"locode": locode, "name": place},
        "at": at or format_time(datetime.now(UTC).replace(microsecond=0)),
    }
    if note:
        body["note"] = note
    where = {"location.locode": "--locode", "location.name": "--place", "location": "--locode"}
    _checked(body, "milestone", {**_options(body), **where})
    try:
        parse_model(Place, body["location"], "location")
        if (parse_time(body["at"], "at") - datetime.now(UTC)).total_seconds() > 300:
            raise InvalidInput(
                "at", f"{body['at']} is in the future: a milestone is recorded once it happened"
            )
    except InvalidInput as exc:
        fail(f"{where.get(exc.field, '--' + exc.field)}: {exc.reason}", 2)
    _submit(server, key, party, doc, "milestone", body, as_json, retry_stale=True)


@app.command()
def amend(
    doc: str,
    content: Annotated[Path, path_argument(help="The new content, JSON or YAML.")],
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Propose an amendment (carrier, holder and pledgee if pledged must sign)."""
    from encd.events import content_digest

    doc_id(doc)
    value = read_content(content)
    if value["id"] != doc:  # (the title rules refuse it too, once sent)
        fail(f"{content}: its id is {show(value['id'], 60)}, not the document {doc}", 2)
    c = client(server, key, party)
    current = run(lambda: c.document(doc))
    supersedes = got(current, "title", "content_digest", kind=str)
    if content_digest(value) == supersedes:  # (sent again after it applied, say)
        fail(f"{content} is the document's current content: there is nothing to amend", 2)
    body = {"content": value, "supersedes": supersedes}
    _submit(server, key, party, doc, "amend", body, as_json, propose=True)


@app.command("switch-to-paper")
def switch_to_paper(
    doc: str,
    paper_number: Annotated[str, typer.Option(help="The paper document's number.")],
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Propose switching to paper (carrier, holder, and pledgee if pledged)."""
    _submit(
        server,
        key,
        party,
        doc,
        "switch_to_paper",
        {"paper_document_number": paper_number},
        as_json,
        propose=True,
    )


# --- reading --------------------------------------------------------------------------------


@app.command()
def title(
    doc: str,
    log_key: Annotated[
        str | None,
        typer.Option(
            help="The log's verifier key you trust (default: the key the service names at "
            "GET /v1/service, asked for each time: pass the key you trust to check it)."
        ),
    ] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Who holds the document, is it pledged, to whom — verified against the log.

    The head event is proved in the log; a party to the document also has the title
    replayed from the document's bundle (its events, each proved).  Anyone else gets
    the other fields as the service reports them, and is told so."""
    from api.client import ProblemError, verify_title, verify_title_replay
    from encd.errors import VerificationError
    from encd.keys import PublicKey

    doc_id(doc)
    if log_key is not None:
        try:
            trusted = PublicKey.from_vkey(log_key)
        except InvalidInput as exc:
            fail(f"--log-key: {exc.reason}", 2)
    c = client(server, key, party)
    if log_key is None:
        advertised = got(run(c.service), "log_key", kind=str)
        try:
            trusted = PublicKey.from_vkey(advertised)
        except (InvalidInput, TypeError, AttributeError):
            fail(f"the service names as its log key {advertised!r}, not a verifier key")
    answer = run(lambda: c.title(doc))

    def checked() -> Any:
        try:
            return verify_title(answer, trusted, doc)
        except VerificationError as exc:
            if log_key is None or "no signature from a known key" not in exc.message:
                raise
            raise VerificationError(  # (the key the user gave is the likelier fault)
                f"{exc.message}: the title's checkpoint is not signed by the --log-key given "
                f"({trusted.key_id}); is that this service's log key?"
            ) from None

    checkpoint = run(checked)

    pledge = answer.get("pledge")
    named = [  # what the answer says the caller is to the document
        role
        for role, who in (
            ("holder", answer.get("holder")),
            ("controller", answer.get("controller")),
            ("pledgee", pledge.get("pledgee") if isinstance(pledge, dict) else None),
        )
        if who == c.key.name
    ]

    def bundle_if_party() -> bytes | None:
        try:
            return c.bundle(doc)
        except ProblemError as exc:
            if exc.status != 403:
                raise
            if named:  # a party by the answer's own account: its events are yours to see
                raise VerificationError(
                    f"the answer names you as {doc}'s {' and '.join(named)} but the service "
                    "refuses you its events (403): the answer cannot be checked"
                ) from None
            return None  # not a party to the document: its events are not ours

    bundle = run(bundle_if_party)
    if bundle is None:
        replayed = (
            "the other fields as the service reports them (not a party to the document, "
            "you cannot have its events replayed; an auditor's `encd audit` of its bundle can)"
        )
    else:
        entries = run(lambda: verify_title_replay(answer, bundle, trusted), whole=False)
        replayed = f"replayed from the document's bundle ({entries} entries, each proved)"

    def said(value: Any) -> str:
        """A field of the answer as printed: one not replayed may hold anything (say()
        shows its control characters escaped)."""
        if isinstance(value, str) and _PLAIN_FIELD.fullmatch(value):
            return value
        return show(value, 60) if isinstance(value, str) else repr(value)[:60]

    pledge_text = (
        f"pledged to {said(pledge.get('pledgee'))} "
        f"({said(pledge.get('amount'))} {said(pledge.get('currency'))})"
        if isinstance(pledge, dict)
        else "not pledged"
    )
    emit(
        answer | {"replayed": bundle is not None},
        as_json,
        f"OK: {doc} is {said(answer.get('status'))}; holder {said(answer.get('holder'))}, "
        f"control {said(answer.get('controller'))}; {pledge_text}; head {answer['head'][:16]}… "
        f"proved in the log at index {answer['head_index']} of the checkpoint of "
        f"{checkpoint.size} entries the service signed; {replayed}",
    )


@app.command()
def history(
    doc: str,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """The document's events (its parties and auditors only)."""
    from encd.events import Event

    doc_id(doc)
    c = client(server, key, party)
    result = run(lambda: c.history(doc))
    lines = []
    for i in range(len(got(result, "events", kind=list))):
        raw = got(result, "events", i, "event", kind=str)
        index = got(result, "events", i, "index", kind=int)
        try:
            event = Event.parse(raw.encode())
        except InvalidInput:
            fail(f"the service's answer holds, at log index {index!r}, something not an event")
        signers = ", ".join(s.name for s in event.signatures)
        lines.append(
            f"{index!s:>8}  seq {event.seq:<4} {event.type:<16} signed by {signers}; event {event.id}"
        )
    emit(result, as_json, "\n".join(lines))


@app.command()
def export(
    doc: Annotated[str | None, typer.Argument(help="A document id; omit with --all.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="The full ledger (auditors).")] = False,
    out: Annotated[
        Path | None,
        path_option(help="Output file (default: <document id>.encd, or ledger.encd)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file.")] = False,
    witnessed: Annotated[
        bool,
        typer.Option(
            "--witnessed",
            help="Against the newest checkpoint the log's witnesses cosigned (for an audit "
            "whose policy asks for a quorum), not the latest.",
        ),
    ] = False,
    quorum: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=100,
            help="With --witnessed: the newest checkpoint at least this many witnesses "
            "cosigned (default: the --policy's quorum, or 1).",
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        path_option(
            help="With --witnessed: count only the cosignatures of this audit policy's "
            "witnesses, and ask for its quorum (docs/verification.md).",
        ),
    ] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Download a document bundle (or the full export) for offline audit.

    The file is written whole or not at all, and one already there is kept unless
    --force.  ENCD_TIMEOUT bounds each read of the download, not the whole of it."""
    if doc is not None and all_:
        fail("give a document id or --all, not both", 2)
    if doc is None and not all_:
        fail("give a document id or --all", 2)
    if doc is not None:
        doc_id(doc)
    for given, name in ((quorum, "--quorum"), (policy, "--policy")):
        if given is not None and not witnessed:
            fail(f"{name}: only with --witnessed", 2)
    counted: list[str] = []
    if policy is not None:
        from encd.audit import read_policy

        try:
            trusted = read_policy(policy)
        except Error as exc:
            fail(f"--policy: {exc.message}", 2)
        if not trusted.witnesses:
            fail(f"--policy: {policy} names no witness whose cosignatures could count", 2)
        counted = [w.key_id for w in trusted.witnesses]
        quorum = quorum or trusted.quorum
    wanted = (quorum or 1) if witnessed else 0
    target = out or Path(f"{doc}.encd" if doc else "ledger.encd")
    if looks(target, target.is_dir):
        fail(f"--out: {target} is a directory", 2)
    _replaceable(target, force)
    if not looks(target.parent, target.parent.is_dir):
        fail(f"--out: no directory {target.parent} to write {target.name} in", 2)
    c = client(server, key, party)
    partial = _partial_beside(target)
    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _terminated) if main else None  # (as Ctrl-C)
    try:
        with partial.open("wb") as file:
            if all_:
                data = run(lambda: c.export(witnessed=wanted, witnesses=counted), whole=False)
            else:
                data = run(
                    lambda: c.bundle(doc or "", witnessed=wanted, witnesses=counted), whole=False
                )
            try:
                file.write(data)
                file.flush()
                _replaceable(target, force)  # (again: it may have appeared while downloading)
                os.replace(partial, target)
            except OSError as exc:
                fail(f"cannot write {target}: {exc.strerror}", 2)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        if before is not None:
            signal.signal(signal.SIGTERM, before)
    result = {"file": str(target), "bytes": len(data)}
    emit(result, as_json, f"OK: wrote {target} ({len(data)} bytes)")


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # (what a shell shows for a process ended by the signal)


def _partial_beside(target: Path) -> Path:
    """A new, empty file beside ``target`` to write it under first (made before anything
    is sent, so a directory that cannot be written in is found at once); a short name of
    its own, whatever the length of the target's, with the mode the umask gives."""
    for _ in range(100):
        partial = target.with_name(f".encd-{secrets.token_hex(6)}.partial")
        try:
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return partial
        except FileExistsError:
            continue
        except OSError as exc:
            fail(f"--out: cannot write in {target.parent}: {exc.strerror}", 2)
    fail(f"--out: cannot make a temporary file in {target.parent}", 2)


def _replaceable(target: Path, force: bool) -> None:
    """Refuse to replace what is at ``target``: anything, unless ``force``; even then, a
    symbolic link (dangling or not), a device, a FIFO: only a regular file."""
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        fail(f"--out: cannot look at {target}: {exc.strerror}", 2)
    if not force:
        fail(f"{target} exists; refusing to overwrite it (--force to)", 2)
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        fail(f"--out: {target} is {kind}; --force replaces only a regular file", 2)


# --- the offline auditor --------------------------------------------------------------------


@app.command()
def audit(
    path: Annotated[Path, path_argument(help="A document bundle or a full export.")],
    policy: Annotated[Path | None, path_option(help="Trust policy (docs/verification.md).")] = None,
    trusted_checkpoint: Annotated[
        Path | None,
        path_option(
            help="A checkpoint you already trust; the bundle's must be consistent with it."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a bundle offline with encd alone: exit 0 valid, 1 invalid, 2 usage."""
    if not _audit(path, policy, trusted_checkpoint, as_json):
        raise typer.Exit(1)


def _audit(path: Path, policy: Path | None, trusted_checkpoint: Path | None, as_json: bool) -> bool:
    from encd.audit import UsageError, audit_file
    from encd.collector import long_running

    try:
        size = path.stat().st_size if path.is_file() else 0
    except OSError as exc:  # a directory on the way that may not be searched, say
        fail(f"cannot look at {path}: {exc.strerror}", 2)
    try:
        with long_running():  # a large export's document states, out of the collector's way
            if size > 4 << 20 and not as_json:  # a long audit shows its progress
                from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

                columns = (BarColumn(), DownloadColumn(), TimeRemainingColumn())
                with Progress(*columns, console=err, transient=True) as bar:
                    task = bar.add_task("audit", total=size)
                    report = audit_file(
                        path, policy, trusted_checkpoint, lambda n: bar.update(task, completed=n)
                    )
            else:
                report = audit_file(path, policy, trusted_checkpoint)
    except UsageError as exc:
        fail(exc.message, 2)
    if as_json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        for line in report.lines():
            say(line, console if report.ok else err)
    return report.ok


def main() -> None:
    """The ``encd`` command.  Each command says itself what failed; what none foresaw is
    still one ``FAIL:`` line (ENCD_DEBUG=1 shows the traceback instead)."""
    try:
        app()
    except Exception as exc:
        if os.environ.get("ENCD_DEBUG"):
            raise
        what = exc.message if isinstance(exc, Error) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            if _json_wanted:
                print(json.dumps({"ok": False, "exit": 1, "error": what}, sort_keys=True))
        with contextlib.suppress(Exception):
            err.print(
                "[red]FAIL:[/] " + escape(printable(one_line(what))),
                emoji=False,
                highlight=False,
                soft_wrap=True,
            )
        sys.exit(1)


if __name__ == "__main__":
    main()
