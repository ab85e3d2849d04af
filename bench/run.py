"""``make bench`` and ``make bench-full``: every measurement, bench/results.json, the report.

    python -m bench.run [--mode quick|full|tiny] [--profile] [--results DIR] [--docs FILE]
    python -m bench.run --report-only           # docs/benchmarks.md from the stored results

Each figure of issue 6 is a ratio to a limit measured in the same run on the
same machine (``TARGETS`` lists them with their targets).  Each measurement
runs in a fresh process (``bench.child``); a figure taken ``repeats`` times
is their median, and every run's value is kept under ``runs``.

Writes ``<results>/results.json`` and ``<results>/results-<mode>.json``
(figures, ratios, targets, sizes, date, git commit, core count, the
append-rate series), and regenerates ``--docs`` from the results of every
mode present, with a plot of append throughput against ledger size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.child import call
from bench.measures import Stolen

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    key: str
    op: str  # ">=" or "<="
    value: float
    item: int
    what: str

    def met(self, figure: float) -> bool:
        return figure >= self.value if self.op == ">=" else figure <= self.value


TARGETS = (
    Target("append_ratio", ">=", 0.5, 1, "in-process append, one core / raw verify, one core"),
    Target(
        "append_ratio_2cores",
        ">=",
        1.0,
        1,
        "in-process append, two cores / raw verify, one core",
    ),
    Target("http_ratio", ">=", 0.25, 2, "HTTP transfers/s / hello-world POSTs/s, 32 clients"),
    Target("http_p99_ms", "<=", 50.0, 2, "HTTP submission to receipt, p99 (ms), 32 clients"),
    Target("agreement_p99_ms", "<=", 100.0, 3, "submission to verified proof at a bank, p99 (ms)"),
    Target("proof_p99_ms", "<=", 1.0, 4, "inclusion + consistency proof, p99 (ms), largest size"),
    Target("title_p99_ms", "<=", 10.0, 4, "GET title, p99 (ms), largest size"),
    Target("growth_ratio", ">=", 0.8, 5, "append rate at the largest size / on an empty ledger"),
    Target("audit_ratio", ">=", 0.75, 6, "offline audit of an export / twice raw verify, one core"),
)


@dataclass(frozen=True)
class Mode:
    name: str
    repeats: int
    verify: dict[str, Any]
    append: dict[str, Any]
    http: dict[str, Any]
    big: dict[str, Any]
    merkle: dict[str, Any]
    profile_append: dict[str, Any] = field(default_factory=dict)
    sqlite_commits: int = 300


MODES = {
    "tiny": Mode(
        "tiny",
        repeats=1,
        verify={"documents": 4, "per_document": 10, "seconds": 0.1},
        append={"documents": 4, "per_document": 10},
        http={
            "connections": 4,
            "docs_per_connection": 2,
            "requests_per_connection": 4,
            "warmup_per_connection": 1,
            "agreement_transfers": 3,
            "rounds": 2,
        },
        big={
            "size": 300,
            "chunk_docs": 2,
            "per_document": 10,
            "proof_samples": 20,
            "title_samples": 10,
        },
        merkle={"size": 500, "samples": 20},
        profile_append={"documents": 4, "per_document": 10},
        sqlite_commits=10,
    ),
    "quick": Mode(
        "quick",
        repeats=3,
        verify={"documents": 100, "per_document": 50, "seconds": 1.0},
        append={"documents": 100, "per_document": 50},
        http={
            "connections": 32,
            "docs_per_connection": 4,
            "requests_per_connection": 60,
            "warmup_per_connection": 5,
            "agreement_transfers": 200,
            "rounds": 3,
        },
        big={
            "size": 20_000,
            "chunk_docs": 20,
            "per_document": 50,
            "proof_samples": 1000,
            "title_samples": 500,
        },
        merkle={"size": 100_000, "samples": 1000},
        profile_append={"documents": 100, "per_document": 50},
    ),
    "full": Mode(
        "full",
        repeats=3,
        verify={"documents": 100, "per_document": 50, "seconds": 2.0},
        append={"documents": 200, "per_document": 50},
        http={
            "connections": 32,
            "docs_per_connection": 8,
            "requests_per_connection": 120,
            "warmup_per_connection": 5,
            "agreement_transfers": 500,
            "rounds": 3,
        },
        big={
            "size": 1_000_000,
            "chunk_docs": 100,
            "per_document": 50,
            "proof_samples": 2000,
            "title_samples": 1000,
        },
        merkle={"size": 1_000_000, "samples": 2000},
        profile_append={"documents": 100, "per_document": 50},
    ),
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def reported_rate(result: dict[str, Any]) -> float:
    """The rate a measurement reports: verifications/s or events/s."""
    return float(result["verify_per_s"] if "verify_per_s" in result else result["events_per_s"])


def busy_elsewhere() -> float:
    """The 1-minute load average: other work on the machine skews every figure (on two
    cores, a busy second core even changes how encd's threads meet, see item 1)."""
    return round(os.getloadavg()[0], 2)


def measure(mode: Mode, profile_dir: Path | None = None) -> dict[str, Any]:
    load_before = busy_elsewhere()
    if load_before > 0.5:
        log(f"the machine is not idle (load average {load_before}): figures will be skewed")
    started = time.perf_counter()
    durations: dict[str, float] = {}
    runs: dict[str, list[float]] = {}
    f: dict[str, Any] = {}

    stolen: dict[str, float] = {}
    since = [Stolen.snapshot()]

    def phase(name: str) -> None:
        durations[name] = round(time.perf_counter() - started - sum(durations.values()), 1)
        now = Stolen.snapshot()
        if len(now) > 7 and len(since[0]) > 7:  # the hypervisor's share of the CPU time
            total = sum(now) - sum(since[0])
            stolen[name] = round((now[7] - since[0][7]) / total, 3) if total else 0.0
        since[0] = now

    # 1. the verify limit, and appends in-process: each repeat measures the limit and then
    # the appends, and each ratio is the median of the repeats' own ratios, so that a slow
    # spell of a shared machine falls on both sides of a ratio rather than on one
    rounds: list[dict[str, dict[str, Any]]] = []
    for _ in range(mode.repeats):
        rounds.append(
            {
                "verify_1core": call("verify_limit", cpus={0}, **mode.verify),
                "verify_2cores": call("verify_limit", threads=2, **mode.verify),
                "append_1core": call("append", cpus={0}, **mode.append),
                "append_2cores": call("append", threads=2, **mode.append),
                "append_1thread_unpinned": call("append", **mode.append),
            }
        )
        log("repeat " + ", ".join(f"{k} {reported_rate(v):,.0f}/s" for k, v in rounds[-1].items()))
    for name in rounds[0]:
        runs[name] = [reported_rate(r[name]) for r in rounds]
    for name in ("verify_1core", "verify_2cores"):
        f[f"verify_per_s_{name[7:]}"] = statistics.median(runs[name])
    for name in ("append_1core", "append_2cores", "append_1thread_unpinned"):
        f[f"append_per_s_{name[7:]}"] = statistics.median(runs[name])
        f[f"append_batch_mean_{name[7:]}"] = statistics.median(
            float(r[name]["batch_mean"]) for r in rounds
        )
    f["signatures_per_event"] = rounds[-1]["verify_1core"]["signatures_per_event"]
    f["message_bytes_mean"] = rounds[-1]["verify_1core"]["message_bytes_mean"]
    commits = call("sqlite_commit", commits=mode.sqlite_commits)
    f.update(commits)
    log(f"durable SQLite commits: {commits['sqlite_commits_per_s']:,.0f}/s")

    def paired(figure: str, limit: str = "verify_1core") -> float:
        return statistics.median(a / v for a, v in zip(runs[figure], runs[limit], strict=True))

    f["append_ratio"] = paired("append_1core")
    f["append_ratio_2cores"] = paired("append_2cores")
    f["append_ratio_1thread_unpinned"] = paired("append_1thread_unpinned")
    f["verify_ratio_2cores"] = paired("verify_2cores")
    phase("verify_and_append")
    # 2, 3. HTTP and time to agreement
    log("HTTP: hello world, then encd (32 clients), then time to agreement")
    http_profile = str(profile_dir / "http-submit.raw") if profile_dir else None
    h = call("http", profile=http_profile, **mode.http)
    f.update({k: v for k, v in h.items() if isinstance(v, int | float)})
    runs["hello_rounds"] = h["hello_per_s_rounds"]
    runs["http_rounds"] = h["http_per_s_rounds"]
    phase("http")
    # 4, 5, 6. a large ledger
    log(f"a ledger of {mode.big['size']:,} events: growth, proofs, title, start-up, audit")
    b = call("big", **mode.big)
    series, probes, pinned = b.pop("series"), b.pop("probes"), b.pop("build_pinned")
    f.update({k: v for k, v in b.items() if isinstance(v, int | float)})
    f["growth_ratio"] = b["append_per_s_at_size"] / b["append_per_s_empty"]
    # against the limit measured just before and just after the audit, in the same process
    f["audit_ratio"] = b["audit_per_s"] / (2 * b["verify_per_s_at_audit"])
    f["audit_ratio_2cores"] = b["audit_per_s"] / f["verify_per_s_2cores"]
    phase("big")
    # 7. the Merkle layer beside pymerkle
    m = call("merkle", **mode.merkle)
    f.update({k: v for k, v in m.items() if isinstance(v, int | float) and k != "roots_agree"})
    if "pymerkle_append_per_s" in m:
        f["merkle_append_ratio"] = m["encd_merkle_append_per_s"] / m["pymerkle_append_per_s"]
        f["merkle_inclusion_ratio"] = m["pymerkle_inclusion_us"] / m["encd_inclusion_us"]
        f["merkle_consistency_ratio"] = m["pymerkle_consistency_us"] / m["encd_consistency_us"]
    phase("merkle")
    profiles: dict[str, str] = {}
    if profile_dir is not None:
        log("profiling the in-process append path (py-spy)")
        call("append", profile=str(profile_dir / "append.raw"), **mode.profile_append)
        log("profiling the offline audit (py-spy)")
        call("audit_profile", profile=str(profile_dir / "audit.raw"), **mode.profile_append)
        profiles = {"append": "append.raw", "http_submit": "http-submit.raw", "audit": "audit.raw"}
        phase("profiles")
    cpus = os.cpu_count() or 0
    return {
        "mode": mode.name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "ledger", "encd", "api")),
        "cores": cpus,
        "cores_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sizes": {
            "append_events": mode.append["documents"] * mode.append["per_document"],
            "verify_signatures": round(
                mode.verify["documents"] * mode.verify["per_document"] * f["signatures_per_event"]
            ),
            "http_connections": h["connections"],
            "http_workers": h["workers"],
            "http_requests": h["requests"],
            "agreement_transfers": h["agreement_transfers"],
            "ledger_size": b["ledger_size"],
            "ledger_final_size": b["final_size"],
            "chunk_events": b["chunk_events"],
            "proof_samples": b["proof_samples"],
            "title_samples": b["title_samples"],
            "audit_entries": b["audit_entries"],
            "merkle_size": m["merkle_size"],
            "repeats": mode.repeats,
        },
        "pymerkle": m.get("pymerkle_version", m.get("pymerkle", "not installed")),
        "merkle_roots_agree": m.get("roots_agree"),
        "figures": f,
        "targets": [{**asdict(t), "figure": f[t.key], "met": t.met(f[t.key])} for t in TARGETS],
        "series": {"append_by_size": series, "probes": probes},
        "build_pinned": pinned,
        "runs": runs,
        "durations_s": durations,
        "cpu_stolen_by_phase": stolen,
        "total_s": round(time.perf_counter() - started, 1),
        "load_average_before": load_before,
        "profiles": profiles,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--mode", choices=sorted(MODES), default="quick")
    parser.add_argument("--profile", action="store_true", help="also profile with py-spy")
    parser.add_argument("--results", type=Path, default=ROOT / "bench")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    from bench import report

    if not args.report_only:
        profile_dir = args.results / "profiles" if args.profile else None
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
        results = measure(MODES[args.mode], profile_dir)
        args.results.mkdir(parents=True, exist_ok=True)
        text = json.dumps(results, indent=2, sort_keys=True) + "\n"
        (args.results / "results.json").write_text(text)
        (args.results / f"results-{args.mode}.json").write_text(text)
        if profile_dir is not None:
            report.write_profiles(profile_dir)
        log(f"wrote {args.results / 'results.json'} ({results['total_s']:.0f} s in all)")
    report.write(args.results, args.docs)
    log(f"wrote {args.docs}")


if __name__ == "__main__":
    main()
