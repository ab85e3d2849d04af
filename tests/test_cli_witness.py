"""``encd witness`` and ``encd serve --witnesses`` as an operator and a bank run them: real
processes, real HTTP, the service in two worker processes."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from typer.testing import CliRunner

from api.setup import load_or_init
from encd.checkpoint import CosignerKey, verify_cosignatures
from encd.cli import app
from encd.keys import SigningKey
from tests.serving import serve

runner = CliRunner()


def encd(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@contextmanager
def witness_serving(path: Path, *args: str) -> Iterator[tuple[str, list[str]]]:
    """``encd witness serve`` on a free port, with ``args``; yields its URL once it says
    where it listens, and its output so far."""
    process = subprocess.Popen(
        [sys.executable, "-m", "encd.cli", "witness", "serve", str(path), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    stream = process.stdout
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(stream))
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"running on (https?://\S+)", "".join(seen))):
            assert process.poll() is None, "encd witness serve exited:\n" + "".join(seen)
            assert time.monotonic() < deadline, "encd witness serve did not start"
            time.sleep(0.05)
        yield found.group(1), seen
    finally:
        process.terminate()
        process.wait(timeout=60)
        reader.join(timeout=30)


def test_a_bank_s_witness_cosigns_a_served_log(tmp_path: Path, database_url: str) -> None:
    setup = load_or_init(tmp_path / "data", "encd.local/log")
    log_vkey = setup.log_key.public.vkey
    witness_dir = tmp_path / "witness"
    code, out = encd(
        "witness", "init", str(witness_dir), "--name", "witness.bank.example/w1", "--log", log_vkey
    )
    assert code == 0, out
    line = out.strip().splitlines()[-1]
    assert line.startswith("witness witness.bank.example/w1+")
    key = CosignerKey.from_vkey(line.split()[1])
    assert encd("witness", "show", str(witness_dir)) == (0, f"{line}\nlog {log_vkey}\n")
    code, out = encd(
        "witness", "init", str(witness_dir), "--name", "witness.bank.example/w1", "--log", log_vkey
    )
    assert code == 2 and "already holds a witness" in out
    (witness_dir / "witness.key").chmod(0o640)
    with witness_serving(witness_dir) as (witness_url, said):
        assert f"warning: {witness_dir / 'witness.key'} can be read by others" in "".join(said)
        assert "web pages" not in "".join(said)  # a witness serves none
        (tmp_path / "data" / "witnesses.txt").write_text(f"{line} {witness_url}\n")
        with serve(tmp_path / "data", database_url, "--workers", "2") as served:
            assert any(
                "checkpoints go to witness witness.bank.example/w1+" in s for s in served.output
            )
            deadline = time.monotonic() + 30
            while not verify_cosignatures(httpx.get(served.url + "/log/checkpoint").content, [key]):
                assert time.monotonic() < deadline, "the checkpoint was never cosigned"
                time.sleep(0.1)
            # an auditor downloads against a checkpoint its own policy's witnesses cosigned
            policy = tmp_path / "policy.txt"
            policy.write_text(f"log {log_vkey}\n{line}\nquorum 1\n")
            as_operator = ("--server", served.url, "--key", str(tmp_path / "data" / "operator.key"))
            code, out = encd(
                "export", "--all", "--witnessed", "--policy", str(policy),
                "--out", str(tmp_path / "ledger.encd"), *as_operator, "--party", setup.operator_id,
            )  # fmt: skip
            assert code == 0, out
            assert encd("audit", str(tmp_path / "ledger.encd"), "--policy", str(policy))[0] == 0


def test_serve_refuses_a_witnesses_file_it_cannot_use(tmp_path: Path) -> None:
    code, out = encd(
        "serve", "--data-dir", str(tmp_path / "d"), "--witnesses", str(tmp_path / "no")
    )
    assert code == 2
    assert f"--witnesses: {tmp_path / 'no'}: no such file" in out
    (tmp_path / "w.txt").write_text("witness somebody http://w.example\n")
    code, out = encd(
        "serve", "--data-dir", str(tmp_path / "d"), "--witnesses", str(tmp_path / "w.txt")
    )
    assert code == 2
    assert "line 1: not a witness's cosigner key" in out
    assert not (tmp_path / "d").exists(), "nothing is created for a bad setting"


def test_a_witness_that_lost_or_broke_its_state_does_not_serve(tmp_path: Path) -> None:
    """Starting over would let it cosign a fork of a log it already cosigned."""
    log_vkey = load_or_init(tmp_path / "data", "encd.local/log").log_key.public.vkey
    witness_dir = tmp_path / "witness"
    made = ("witness", "init", str(witness_dir), "--name", "w.bank.example/w", "--log", log_vkey)
    assert encd(*made)[0] == 0
    assert (witness_dir / "witness.db").is_file(), "init creates the state"
    (witness_dir / "witness.db").unlink()
    code, out = encd("witness", "serve", str(witness_dir), "--port", "0")
    assert code == 2 and "witness.db is missing: a witness must not forget" in out
    assert not (witness_dir / "witness.db").exists()
    (witness_dir / "witness.db").write_bytes(b"\x00garbage" * 512)
    code, out = encd("witness", "serve", str(witness_dir), "--port", "0")
    assert code == 2 and "is not a witness's state" in out
    # an init that stopped half-way is named, and the key left is never reused silently
    (witness_dir / "witness.conf").unlink()
    code, out = encd(*made)
    assert code == 2 and "but no witness.conf: an init that did not finish" in out


def test_witness_init_keeps_the_mode_of_a_directory_it_did_not_make(tmp_path: Path) -> None:
    log_vkey = load_or_init(tmp_path / "data", "encd.local/log").log_key.public.vkey
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    for where in (shared, tmp_path / "new"):
        code, out = encd("witness", "init", str(where), "--name", "w.example/w1", "--log", log_vkey)
        assert code == 0, out
        assert (where / "witness.key").stat().st_mode & 0o777 == 0o600
    assert shared.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    (shared / "witness.key").write_text("")
    code, out = encd("witness", "show", str(shared))
    assert code == 2, out
    assert f"FAIL: witness.key: {shared / 'witness.key'}: not a PKCS#8 PEM private key" in out
    assert "passphrase" not in out


def test_export_quorum_goes_with_witnessed() -> None:
    code, out = encd("export", "--all", "--quorum", "2")
    assert code == 2 and "--quorum: only with --witnessed" in out
    code, out = encd("export", "--all", "--witnessed", "--quorum", "0")
    assert code == 2 and "--quorum" in out
    code, out = encd("export", "--all", "--quorum", "1")
    assert code == 2 and "--quorum: only with --witnessed" in out
    code, out = encd("export", "--all", "--policy", "p.txt")
    assert code == 2 and "--policy: only with --witnessed" in out


def test_export_witnessed_policy_mistakes(tmp_path: Path) -> None:
    log_vkey = SigningKey("encd.local/log", bytes(32)).public.vkey
    for text, message in [
        (None, "--policy: cannot read"),
        (f"log {log_vkey}\n", "names no witness whose cosignatures could count"),
        ("quorum 1\n", "--policy: policy: no 'log <verifier key>' line"),
    ]:
        policy = tmp_path / "p.txt"
        if text is not None:
            policy.write_text(text)
        code, out = encd("export", "--all", "--witnessed", "--policy", str(policy))
        assert code == 2 and message in out, out
