"""The benchmark harness (bench/) runs: every measurement at tiny sizes, and its parts.

No test here asserts a time or a rate: only that the scripts run, write the
results with every expected key, and that the numbers are positive.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from bench import report
from bench.loadgen import percentile
from bench.profile import load
from bench.run import TARGETS, main

RATIOS = ("append_ratio", "append_ratio_2cores", "http_ratio", "growth_ratio", "audit_ratio")
FIGURES = (
    "verify_per_s_1core",
    "verify_per_s_2cores",
    "append_per_s_1core",
    "append_per_s_2cores",
    "hello_per_s",
    "http_per_s",
    "http_p50_ms",
    "http_p99_ms",
    "agreement_p50_ms",
    "agreement_p99_ms",
    "proof_p99_ms",
    "title_p99_ms",
    "append_per_s_empty",
    "append_per_s_at_size",
    "bytes_per_event",
    "startup_s",
    "audit_per_s",
    "verify_per_s_at_audit",
    "encd_merkle_append_per_s",
    "encd_inclusion_us",
)


@pytest.mark.slow
@pytest.mark.skipif(
    bool(os.environ.get("ENCD_DATABASE_URL")),
    reason="the benchmarks measure the SQLite store; the SQLite run of the suite covers them",
)
def test_every_benchmark_runs_at_tiny_sizes_and_writes_its_results(tmp_path: Path) -> None:
    docs = tmp_path / "docs" / "benchmarks.md"
    main(["--mode", "tiny", "--results", str(tmp_path), "--docs", str(docs)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results == json.loads((tmp_path / "results-tiny.json").read_text())
    assert results["mode"] == "tiny"
    assert results["cores"] >= 1 and results["date"] and len(results["git_commit"]) == 40
    assert all(value > 0 for value in results["sizes"].values())
    figures = results["figures"]
    expected = [*RATIOS, *FIGURES]
    if importlib.util.find_spec("pymerkle") is None:
        assert results["pymerkle"] == "not installed"
    else:
        expected += ["merkle_append_ratio", "merkle_inclusion_ratio", "pymerkle_append_per_s"]
        assert results["merkle_roots_agree"] is True
    missing = [key for key in expected if key not in figures]
    assert not missing
    numbers = {k: v for k, v in figures.items() if isinstance(v, int | float)}
    assert numbers == figures
    assert [k for k, v in numbers.items() if not v > 0 and not k.endswith("_stolen")] == []
    assert all(0 <= v < 1 for k, v in numbers.items() if k.endswith("_stolen"))
    # the tiny mode's HTTP takes two rounds, hello world and encd in turn
    assert len(results["runs"]["hello_rounds"]) == len(results["runs"]["http_rounds"]) == 2
    assert {t["key"] for t in results["targets"]} == {t.key for t in TARGETS}
    assert all(isinstance(t["met"], bool) for t in results["targets"])
    series = results["series"]["append_by_size"]
    assert series and all(p["events_per_s"] > 0 for p in series)
    text = docs.read_text()
    for target in TARGETS:
        assert f"`{target.key}`" in text
    assert "Append throughput against ledger size" in text


def test_profiles_are_summed_per_function_and_waits_set_apart(tmp_path: Path) -> None:
    raw = tmp_path / "p.raw"
    raw.write_text(
        "Thread.run (threading.py:982);Ledger._run (ledger/ledger.py:276);"
        "Ledger._flush (ledger/ledger.py:443) 6\n"
        "Thread.run (threading.py:982);Ledger._run (ledger/ledger.py:270);"
        "Condition.wait (threading.py:320) 10\n"
        "main (bench/child.py:40);append (bench/measures.py:120);"
        "crypto_sign_open (nacl/bindings/crypto_sign.py:50) 4\n"
        # the sequencer process's threads that block in C below their own frame
        "Thread.run (threading.py:982);SequencerServer._announce (ledger/sequencer.py:165) 3\n"
        "Thread.run (threading.py:982);_sequencer.<locals>.watch (api/server.py:349) 2\n"
    )
    profile = load(raw)
    assert (profile.busy, profile.waiting) == (10, 15)
    assert profile.cumulative["Ledger._run (ledger/ledger.py)"] == 6
    assert profile.own["crypto_sign_open (nacl/bindings/crypto_sign.py)"] == 4
    assert "Thread.run (threading.py)" not in profile.cumulative


def test_percentiles_and_the_report_formats() -> None:
    assert percentile([], 99) == 0.0
    assert percentile([5.0], 50) == 5.0
    assert percentile([float(v) for v in range(1, 102)], 99) == pytest.approx(100.0)
    assert report.fmt("http_ratio", 0.05312) == "0.053"
    assert report.fmt("verify_per_s_1core", 16583.2) == "16,583/s"
    assert report.fmt("http_p99_ms", 35.891) == "35.89 ms"
    missed = {"figure": 0.1, "value": 0.5, "op": ">=", "met": False}
    assert report.shortfall(missed) == "missed: ×5.0 to go"
