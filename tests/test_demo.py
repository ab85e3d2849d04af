"""``encd demo``, as a newcomer runs it: every step behaves, and what it writes audits
offline only with the bank's witness's cosignature."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from encd.audit import audit_file
from encd.checkpoint import CosignerKey
from encd.cli import app
from encd.keys import SigningKey


def test_the_demo_plays_the_story_and_its_bundle_is_witnessed(tmp_path: Path) -> None:
    precious = tmp_path / "elsewhere.txt"  # a link where the demo writes is replaced, not
    precious.write_text("mine")  # written through
    (tmp_path / "policy.txt").symlink_to(precious)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "cosigned by witness.cq-rural-bank.example/w1" in " ".join(result.output.split())
    bundle, policy = tmp_path / "ENCD-CQ-2026-000417.encd", tmp_path / "policy.txt"
    assert precious.read_text() == "mine" and not policy.is_symlink()
    lines = policy.read_text().splitlines()
    assert lines[-1] == "quorum 1" and lines[-2].startswith("witness witness.cq-rural-bank")
    report = audit_file(bundle, policy)
    assert report.ok and report.witnesses == ["witness.cq-rural-bank.example/w1"]
    # the same policy with another key under the witness's name: the quorum is not met
    impostor = CosignerKey.of(SigningKey("witness.cq-rural-bank.example/w1", bytes(32)))
    policy.write_text("\n".join([*lines[:-2], f"witness {impostor.vkey}", "quorum 1"]) + "\n")
    report = audit_file(bundle, policy)
    assert not report.ok and report.step == 7
