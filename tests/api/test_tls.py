"""``encd serve --tls-cert --tls-key``: the service over HTTPS, in one process and in
workers, with certificates made here (a CA of the test's own, as a deployment's would be);
and the mistakes an operator makes with the two files, refused before anything starts."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import signal
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from api.client import Client, Unreachable
from api.server import GRACE, load_tls
from api.setup import load_or_init
from api.witness import init_witness
from encd.checkpoint import verify_cosignatures
from tests.api.test_workers import close, corridor, verify_receipt
from tests.serving import serve
from tests.test_cli import encd
from tests.test_cli_witness import witness_serving

NOW = datetime.datetime.now(datetime.UTC)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificate(
    directory: Path,
    *,
    valid_from: datetime.datetime = NOW - datetime.timedelta(days=1),
    valid_to: datetime.datetime = NOW + datetime.timedelta(days=90),
    password: bytes | None = None,
) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost: the paths of
    the CA's certificate, the server's chain and the server's key."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("encd test CA"))
        .issuer_name(_name("encd test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=2))
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca_path.write_bytes(ca.public_bytes(pem))
    cert_path.write_bytes(server.public_bytes(pem) + ca.public_bytes(pem))
    protection = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, protection))
    return ca_path, cert_path, key_path


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_the_service_over_https(
    tmp_path: Path, database_url: str, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = make_certificate(tmp_path / "tls")
    trust = ssl.create_default_context(cafile=str(ca))
    args = ("--workers", str(workers), "--tls-cert", str(cert), "--tls-key", str(key))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # (the clients' httpx trusts the CA)
    with serve(tmp_path / "data", database_url, *args, verify=trust) as served:
        assert served.url.startswith("https://127.0.0.1:")
        assert f"web pages: {served.url}/" in "".join(served.output)
        world, docs, heads = corridor(served, 1)
        raw, signer = docs.transfer(heads[0])
        with Client(served.url, signer) as client:
            receipt = client.submit(raw)
        verify_receipt(receipt, world.log_key.public)
        # the command line, told of the CA as httpx is (SSL_CERT_FILE, docs/cli.md)
        bank = tmp_path / "bank.key"
        world.actors["bank"].key.save(bank)
        who = ("--server", served.url, "--key", str(bank), "--party", world.id("bank"))
        code, out = encd("title", heads[0].doc, *who)
        assert code == 0 and out.startswith(f"OK: {heads[0].doc} is active"), out
        with httpx.Client(verify=trust) as http:
            page = http.get(f"{served.url}/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        # a client that does not trust the CA is refused by its own TLS, not by encd
        monkeypatch.delenv("SSL_CERT_FILE")
        with Client(served.url, signer) as untrusting, pytest.raises(Unreachable) as refused:
            untrusting.service()
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
        # plain HTTP to the HTTPS port gets no answer, and nothing is logged as an error
        host, port = served.url.removeprefix("https://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=20) as plain:
            plain.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            try:
                answered = plain.recv(1024)
            except ConnectionResetError:
                answered = b""
        assert not answered.startswith(b"HTTP/")
        close(world)
        # a client that keeps its connection open and idle (a browser, say) does not hold
        # the stop for the 30 s of the grace: the service waits ~2 s for its TLS goodbye
        idle = httpx.Client(verify=trust)
        assert idle.get(f"{served.url}/healthz").status_code == 200
        stopping = time.monotonic()
    took = time.monotonic() - stopping
    idle.close()
    assert took < GRACE / 2, f"the stop took {took:.1f} s"
    logged = "".join(served.output)
    assert "Traceback" not in logged and "ERROR" not in logged, logged


def test_a_witness_over_https_cosigns_a_log_served_over_https(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``encd witness serve`` takes the same two options; the log's service reaches it
    trusting the CA named by SSL_CERT_FILE, as every encd client does."""
    ca, cert, key = make_certificate(tmp_path / "tls")
    tls = ("--tls-cert", str(cert), "--tls-key", str(key))
    log_vkey = load_or_init(tmp_path / "data", "encd.local/log").log_key.public.vkey
    made = init_witness(tmp_path / "witness", "witness.bank.example/w1", [log_vkey])
    line = f"witness {made.cosigner.vkey}"
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # (the service's subprocess inherits it)
    with witness_serving(tmp_path / "witness", *tls) as (witness_url, _):
        assert witness_url.startswith("https://")
        (tmp_path / "data" / "witnesses.txt").write_text(f"{line} {witness_url}\n")
        trust = ssl.create_default_context(cafile=str(ca))
        with serve(tmp_path / "data", database_url, *tls, verify=trust) as served:
            deadline = time.monotonic() + 30
            while not verify_cosignatures(
                httpx.get(f"{served.url}/log/checkpoint", verify=trust).content, [made.cosigner]
            ):
                assert time.monotonic() < deadline, "".join(served.output)
                time.sleep(0.1)


def test_a_worker_started_after_the_files_broke_says_why_and_the_others_serve(
    tmp_path: Path, database_url: str
) -> None:
    """Every process reads the two files as it starts.  Replaced by something it cannot
    serve, a worker started then (one replacing a dead one) stops with one line naming
    the file and what is wrong, not a traceback at each try; the other worker serves on;
    once the files are mended, the next try serves again."""
    ca, cert, key = make_certificate(tmp_path / "tls")
    trust = ssl.create_default_context(cafile=str(ca))
    args = ("--workers", "2", "--tls-cert", str(cert), "--tls-key", str(key))
    with serve(tmp_path / "data", database_url, *args, verify=trust) as served:
        time.sleep(5.5)  # past the service's start (a process dying in it stops them all)
        good = cert.read_bytes()
        cert.write_text("not a certificate any more\n")
        victim = served.answerers()[-1]
        os.kill(victim, signal.SIGKILL)
        said = f"cannot serve HTTPS, this process stops: --tls-cert: {cert} holds no PEM"
        deadline = time.monotonic() + 60
        while said not in "".join(served.output):
            assert time.monotonic() < deadline, "".join(served.output)
            time.sleep(0.1)
        with httpx.Client(verify=trust) as http:  # the other worker serves on
            assert all(http.get(f"{served.url}/healthz").status_code == 200 for _ in range(5))
        cert.write_bytes(good)
        while len(served.answerers()) < 2 or "".join(served.output).count("ready for") < 3:
            assert time.monotonic() < deadline, "".join(served.output)
            time.sleep(0.2)
    logged = "".join(served.output)
    assert "Traceback" not in logged, logged


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_a_connection_that_never_shakes_hands_is_closed_at_the_request_deadline(
    tmp_path: Path, database_url: str, workers: int
) -> None:
    """A client that opens a TCP connection and never starts TLS is closed within
    ``--request-timeout``, as a plain-HTTP one that sends nothing is (asyncio's own
    handshake deadline is 60 s)."""
    ca, cert, key = make_certificate(tmp_path / "tls")
    args = ("--workers", str(workers), "--request-timeout", "1", "--tls-cert", str(cert))
    trust = ssl.create_default_context(cafile=str(ca))
    with serve(
        tmp_path / "data", database_url, *args, "--tls-key", str(key), verify=trust
    ) as served:
        host, port = served.url.removeprefix("https://").rsplit(":", 1)
        with socket.create_connection((host, int(port))) as silent:
            silent.settimeout(20)  # far past the deadline, well short of asyncio's 60 s
            with contextlib.suppress(ConnectionResetError):
                assert silent.recv(1024) == b""
        assert httpx.get(f"{served.url}/healthz", verify=trust).status_code == 200


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("cert only", "--tls-cert needs --tls-key too"),
        ("key only", "--tls-key needs --tls-cert too"),
        ("no such cert", "--tls-cert: cannot read"),
        ("cert is not PEM", "holds no PEM certificate"),
        ("key is not PEM", "--tls-key: "),
        ("key of another", "is not the key of the certificate in"),
        ("key with a password", "is encrypted with a password"),
    ],
)
def test_tls_files_an_operator_gets_wrong_are_refused_before_anything_starts(
    tmp_path: Path, mistake: str, message: str
) -> None:
    _, cert, key = make_certificate(tmp_path / "tls")
    _, _, other_key = make_certificate(tmp_path / "other")
    _, _, locked = make_certificate(tmp_path / "locked", password=b"secret")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    files = {
        "cert only": ["--tls-cert", str(cert)],
        "key only": ["--tls-key", str(key)],
        "no such cert": ["--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(key)],
        "cert is not PEM": ["--tls-cert", str(junk), "--tls-key", str(key)],
        "key is not PEM": ["--tls-cert", str(cert), "--tls-key", str(junk)],
        "key of another": ["--tls-cert", str(cert), "--tls-key", str(other_key)],
        "key with a password": ["--tls-cert", str(cert), "--tls-key", str(locked)],
    }[mistake]
    data_dir = tmp_path / "data"
    code, out = encd("serve", "--data-dir", str(data_dir), "--port", "0", *files)
    assert code == 2, out
    assert message in out, out
    assert not data_dir.exists(), "nothing is created for a bad setting"


def test_a_certificate_out_of_its_dates_is_named_at_start(tmp_path: Path) -> None:
    _, cert, key = make_certificate(
        tmp_path / "old",
        valid_from=NOW - datetime.timedelta(days=400),
        valid_to=NOW - datetime.timedelta(days=35),
    )
    _, warnings = load_tls(cert, key)
    assert len(warnings) == 1 and "expired at" in warnings[0], warnings
    _, cert, key = make_certificate(tmp_path / "early", valid_from=NOW + datetime.timedelta(days=3))
    _, warnings = load_tls(cert, key)
    assert len(warnings) == 1 and "is not valid before" in warnings[0], warnings
    _, cert, key = make_certificate(tmp_path / "good")
    assert load_tls(cert, key)[1] == []
