"""docs/benchmarks.md from bench/results-<mode>.json: targets, every figure, the plot, profiles.

The report is regenerated from the stored results on every run, so nothing
in it is typed by hand except ``bench/findings.md`` (what the numbers and
the profiles mean), which is included as it stands.  A
``bench/baseline-<mode>.json`` (a copy of an earlier results file) adds a
"before" column.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench import plot
from bench.profile import render

MODE_ORDER = ("full", "quick", "tiny")

GROUPS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "1. Append in-process (durable, signatures verified) against raw Ed25519 verification",
        [
            ("verify_per_s_1core", "raw PyNaCl verify, one thread pinned to one core"),
            ("verify_per_s_2cores", "raw PyNaCl verify, two threads, both cores"),
            ("verify_ratio_2cores", "two cores / one core (how well verify spreads)"),
            ("signatures_per_event", "signatures per event in the workload"),
            ("message_bytes_mean", "signed envelope text per signature (mean)"),
            ("append_per_s_1core", "append_many, one caller, process pinned to one core"),
            ("append_per_s_2cores", "append_many, two callers, both cores"),
            ("append_per_s_1thread_unpinned", "append_many, one caller, both cores"),
            ("append_batch_mean_1core", "events per sequencer batch, one core (mean)"),
            ("append_batch_mean_2cores", "events per sequencer batch, two callers (mean)"),
            (
                "append_batch_mean_1thread_unpinned",
                "events per sequencer batch, one caller unpinned",
            ),
            ("sqlite_commits_per_s", "durable SQLite commits, one row each (the disk's limit)"),
            ("sqlite_commit_p50_ms", "one durable SQLite commit, p50"),
            ("append_ratio", "one core / raw verify one core (median of the repeats' ratios)"),
            ("append_ratio_2cores", "two cores / raw verify one core (idem)"),
            ("append_ratio_1thread_unpinned", "one caller unpinned / raw verify one core (idem)"),
        ],
    ),
    (
        "2. HTTP submissions (32 concurrent clients, loopback) against a FastAPI hello world",
        [
            ("hello_per_s", "hello-world POST (same bodies and headers)"),
            ("hello_p50_ms", "hello-world latency p50"),
            ("hello_p99_ms", "hello-world latency p99"),
            ("http_per_s", "signed transfers through POST /v1/events"),
            ("http_p50_ms", "submission to receipt p50"),
            ("http_p99_ms", "submission to receipt p99"),
            ("http_max_ms", "submission to receipt, slowest"),
            ("http_batch_mean", "events per sequencer batch during the load (GET /metrics)"),
            ("http_server_append_mean_ms", "in the server: submit to receipt, mean (GET /metrics)"),
            ("http_ratio", "transfers/s / hello-world requests/s (median of the rounds' ratios)"),
            ("hello_cpu_stolen", "machine CPU time taken by the hypervisor, hello-world rounds"),
            ("http_cpu_stolen", "machine CPU time taken by the hypervisor, encd rounds"),
        ],
    ),
    (
        "3. Time to agreement (a bank's event stream delivers the transfer, its proof verifies)",
        [
            ("agreement_p50_ms", "submission to verified proof at the bank, p50"),
            ("agreement_p99_ms", "submission to verified proof at the bank, p99"),
            ("stream_delivery_p50_ms", "submission to delivery on the stream, p50"),
            ("stream_delivery_p99_ms", "submission to delivery on the stream, p99"),
            ("agreement_submit_p50_ms", "one transfer alone: submission to receipt, p50"),
            ("agreement_submit_p99_ms", "one transfer alone: submission to receipt, p99"),
        ],
    ),
    (
        "4. Proofs and the title endpoint at the largest size",
        [
            ("final_size", "ledger size when measured (events)"),
            ("proof_p50_ms", "inclusion + consistency proof (Ledger), p50"),
            ("proof_p99_ms", "inclusion + consistency proof (Ledger), p99"),
            ("inclusion_p99_ms", "inclusion proof alone, p99"),
            ("consistency_p99_ms", "consistency proof alone, p99"),
            ("title_p50_ms", "GET /v1/documents/<id>/title, one client, p50"),
            ("title_p99_ms", "GET /v1/documents/<id>/title, one client, p99"),
        ],
    ),
    (
        "5. Growth",
        [
            (
                "append_per_s_empty",
                "append rate on a fresh ledger, probes in turn with those at size",
            ),
            ("append_per_s_at_size", "append rate, chunks at the largest size"),
            ("growth_ratio", "at the largest size / empty"),
            ("append_per_s_build_start", "append rate, the build's chunks 2-4 (chunk 1 warms up)"),
            ("build_append_per_s", "append rate over the whole build"),
            ("build_s", "building the ledger, signing included"),
            ("build_sign_s", "of which signing the events (outside the timed chunks)"),
            ("bytes_per_event", "SQLite file (and WAL) bytes per event"),
            ("event_bytes_mean", "signed event bytes (mean of the last 1,000)"),
            ("db_bytes", "SQLite file size"),
            ("startup_s", "Ledger() on the large ledger (median of 3)"),
        ],
    ),
    (
        "6. Offline audit of a full export",
        [
            ("export_per_s", "export_ledger to a file"),
            ("export_bytes", "export file size"),
            ("audit_per_s", "encd.audit.audit_file with a policy (steps 1-6)"),
            ("verify_per_s_at_audit", "raw verify, one thread, just before and after the audit"),
            ("audit_ratio", "audit events/s / twice that raw verify"),
            ("audit_ratio_2cores", "audit events/s / raw verify two cores (measured)"),
        ],
    ),
    (
        "7. The Merkle layer beside pymerkle's InmemoryTree",
        [
            ("merkle_size", "leaves"),
            ("encd_merkle_append_per_s", "encd CompactRange appends (nodes kept in a dict)"),
            ("pymerkle_append_per_s", "pymerkle InmemoryTree.append_entry"),
            ("merkle_append_ratio", "encd / pymerkle appends"),
            ("encd_inclusion_us", "encd inclusion proof, mean"),
            ("pymerkle_inclusion_us", "pymerkle inclusion proof, mean"),
            ("merkle_inclusion_ratio", "pymerkle time / encd time"),
            ("encd_consistency_us", "encd consistency proof, mean"),
            ("pymerkle_consistency_us", "pymerkle consistency proof, mean"),
            ("merkle_consistency_ratio", "pymerkle time / encd time"),
        ],
    ),
]


def fmt(key: str, value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    if "ratio" in key:
        return f"{value:.3f}"
    if key.endswith("_stolen"):
        return f"{100 * value:.1f}%"
    if "_per_s" in key:
        return f"{value:,.0f}/s"
    if key.endswith("_ms"):
        return f"{value:,.2f} ms"
    if key.endswith("_us"):
        return f"{value:,.1f} µs"
    if key.endswith(("_s", "_seconds")):
        return f"{value:,.2f} s"
    if "bytes" in key:
        return f"{value:,.0f} B"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def shortfall(target: dict[str, Any]) -> str:
    """How far a figure is from its target, as a factor."""
    figure, goal = target["figure"], target["value"]
    if target["met"]:
        return "met"
    if figure <= 0:
        return "missed"
    factor = goal / figure if target["op"] == ">=" else figure / goal
    return f"missed: ×{factor:.2f} to go" if factor < 1.1 else f"missed: ×{factor:.1f} to go"


def load_results(results_dir: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for mode in MODE_ORDER:
        path = results_dir / f"results-{mode}.json"
        if path.exists():
            found[mode] = json.loads(path.read_text())
    return found


def write_profiles(profile_dir: Path) -> None:
    """A text summary beside every raw py-spy profile."""
    titles = {
        "append.raw": "In-process append path: Ledger.append_many, one caller (py-spy)",
        "http-submit.raw": "HTTP submit path: the encd server under 32 clients (py-spy)",
        "audit.raw": "Offline audit: encd.audit.audit_file on a full export (py-spy)",
    }
    for raw in sorted(profile_dir.glob("*.raw")):
        raw.with_suffix(".txt").write_text(render(raw, titles.get(raw.name, raw.stem), 40))


def write(results_dir: Path, docs: Path) -> None:
    everything = load_results(results_dir)
    out: list[str] = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench.run` (`make bench`: quick sizes, `make bench-full`: a",
        "1,000,000-event ledger) from `bench/results-<mode>.json`; do not edit by hand —",
        "`bench/findings.md` is the hand-written part and is included below as it stands.",
        "Every figure is a ratio to a limit measured in the same run on the same machine",
        "(issue 6): absolute numbers drift on a shared machine, the ratios much less.",
        "",
    ]
    if not everything:
        out.append("No results yet: run `make bench`.")
    findings = results_dir / "findings.md"
    for mode, results in everything.items():
        baseline_path = results_dir / f"baseline-{mode}.json"
        baseline = json.loads(baseline_path.read_text()) if baseline_path.exists() else None
        out += _mode_section(mode, results, baseline, docs)
    if findings.exists():
        out += ["", findings.read_text().rstrip(), ""]
    for mode, results in everything.items():
        out += _profiles(mode, results, results_dir, docs)
    out += ["", METHOD.strip(), ""]
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text("\n".join(out).rstrip() + "\n")


def _rel(path: Path, docs: Path) -> str:
    return os.path.relpath(path, docs.parent)


def _mode_section(
    mode: str, r: dict[str, Any], baseline: dict[str, Any] | None, docs: Path
) -> list[str]:
    f = r["figures"]
    sizes = r["sizes"]
    before = baseline["figures"] if baseline else None
    out = [
        f"## {mode.capitalize()} run: {r['date']}, commit `{r['git_commit'][:12]}`"
        + (" (with uncommitted changes to ledger/encd/api)" if r.get("git_dirty") else ""),
        "",
        f"{r['cores']} cores, Python {r['python']}, {r['platform']}; "
        f"{r['total_s']:.0f} s in all. Sizes: appends {sizes['append_events']:,} events "
        f"(median of {sizes['repeats']} runs); HTTP {sizes['http_requests']:,} transfers from "
        f"{sizes['http_connections']} clients; agreement {sizes['agreement_transfers']} transfers; "
        f"large ledger {sizes['ledger_size']:,} events built, measured at "
        f"{sizes['ledger_final_size']:,}; Merkle {sizes['merkle_size']:,} leaves; pymerkle "
        f"{r['pymerkle']}.",
        "",
    ]
    if r.get("load_average_before", 0) > 0.5:
        out += [
            f"**The machine was not idle when this run started** (load average "
            f"{r['load_average_before']}): its figures are skewed.",
            "",
        ]
    if baseline:
        out += [
            f"*Before* is `bench/baseline-{mode}.json`: {baseline['date']}, commit "
            f"`{baseline['git_commit'][:12]}`.",
            "",
        ]
    at = sizes["ledger_final_size"]
    out += ["### Targets (issue 6)", ""]
    head = "| item | figure | target | this run |" + (" before |" if before else "") + " verdict |"
    out += [head, "|---|---|---|---|" + ("---|" if before else "") + "---|"]
    for t in r["targets"]:
        where = ""
        if t["item"] in (4, 5, 6) and at < 1_000_000:
            where = f" (at {at:,} events; the target is for 1,000,000)"
        row = (
            f"| {t['item']} | {t['what']}{where} | `{t['key']}` {t['op']} {fmt(t['key'], t['value'])} "
            f"| {fmt(t['key'], t['figure'])} |"
        )
        if before is not None:
            row += f" {fmt(t['key'], before.get(t['key'], '—'))} |"
        row += f" {shortfall(t)} |"
        out.append(row)
    out += ["", "### Every figure", ""]
    listed: set[str] = set()
    for title, rows in GROUPS:
        out += [f"**{title}**", ""]
        out += [
            "| figure | key | this run |" + (" before |" if before else ""),
            "|---|---|---|" + ("---|" if before else ""),
        ]
        for key, label in rows:
            if key not in f:
                continue
            listed.add(key)
            row = f"| {label} | `{key}` | {fmt(key, f[key])} |"
            if before is not None:
                row += f" {fmt(key, before.get(key, '—'))} |"
            out.append(row)
        out.append("")
    rest = sorted(k for k in f if k not in listed)
    if rest:
        out += ["**Other figures**", "", "| key | this run |", "|---|---|"]
        out += [f"| `{k}` | {fmt(k, f[k])} |" for k in rest]
        out.append("")
    image = docs.parent / f"benchmarks-append-{mode}.png"
    out += ["### Append throughput against ledger size", ""]
    if plot.png(r, image):
        out += [f"![append throughput against ledger size, {mode} run]({_rel(image, docs)})", ""]
    out += ["```", plot.text(r).rstrip(), "```", ""]
    return out


def _profiles(mode: str, r: dict[str, Any], results_dir: Path, docs: Path) -> list[str]:
    if not r.get("profiles"):
        return []
    out = [f"## Profiles ({mode} run)", ""]
    for name, raw_name in r["profiles"].items():
        txt = results_dir / "profiles" / Path(raw_name).with_suffix(".txt")
        if not txt.exists():
            continue
        lines = txt.read_text().splitlines()
        start = lines.index("encd's own functions (encd/, ledger/, api/) by cumulative time:")
        end = lines.index("", start) if "" in lines[start:] else len(lines)
        body = [*lines[:2], "", *lines[start : min(end, start + 2 + 25)]]
        out += [
            f"**{name.replace('_', ' ')}** (full list: `{_rel(txt, docs)}`)",
            "",
            "```",
            *body,
            "```",
            "",
        ]
    return out


METHOD = """
## How each figure is measured

- **Every measurement** runs in a fresh Python process (`bench.child`) with the garbage
  collector set as encd's own long-running processes set it (`encd.collector`: what
  start-up built frozen, a young collection every 50,000 allocations). Runs before
  `bbe1c1a` measured the in-process figures (append, the large ledger, the audit) with
  CPython's defaults, which the service never ran with.
- **Raw verify** (`bench.measures.verify_limit`): `nacl.signing.VerifyKey.verify` over the
  signatures of the append workload (the exact envelope texts the ledger verifies), keys
  built once, in a loop for a fixed time; one thread in a process pinned to CPU 0, and two
  threads unpinned. Each repeat measures the limits and then the appends, one after the
  other, and a ratio is the median of the repeats' own ratios: on a shared machine whose
  speed moves by up to ×1.5 within a minute, a slow spell then falls on both sides of a
  ratio rather than on one.
- **Append** (`bench.measures.append`): a fresh world (service keys, SQLite ledger in WAL
  mode with durable commits, the operator and seven corridor parties registered), then
  documents through a full lifecycle (issue, pledge, release, transfer, milestones,
  surrender, deliver), signed beforehand, fed to `Ledger.append_many` and timed to the
  last receipt. *One core*: the whole process pinned to CPU 0 (`os.sched_setaffinity`,
  inherited by the sequencer thread). *Two cores*: two callers, each with its own
  documents, unpinned. Median of the repeats. The batch sizes come from
  `Ledger.listeners` (called once per committed batch). *Durable SQLite commits*: sqlite3
  alone, one 64-byte row per `BEGIN IMMEDIATE … COMMIT` in a WAL file with
  `synchronous=FULL`: what one group commit costs at least on this disk.
- **HTTP** (`bench.measures.http`): the server (`api.server.running` for encd, a FastAPI
  app whose POST reads the body and answers 201 for the hello world) runs alone in its own
  process (`bench.serve`) on 127.0.0.1; the client (`bench.loadgen`) is an asyncio HTTP/1.1
  load generator with 32 keep-alive connections, each sending its requests one after the
  other. Every request (RFC 9421 signature, nonce, Content-Digest, the signed transfer) is
  built before the timed window; the hello world receives the same bytes and headers.
  Latency is from writing a request to reading its whole response. Both servers run side
  by side and take turns, three rounds of hello world then encd with a third of the
  requests each; rates are the medians of the rounds, the ratio the median of the rounds'
  ratios, and latencies (p50, p99) are over every request of every round. Batch sizes and the
  server's own submit-to-receipt time are read from `GET /metrics` before and after.
- **Time to agreement** (`bench.measures._agreement`): the bank opens `GET /v1/stream`
  (`Client.stream`), a submitter posts one transfer at a time on a document the bank has
  been party to; for each one the bank, on the stream message, fetches
  `GET /v1/events/<id>/receipt` and verifies the tlog-proof against the log key.
- **Large ledger** (`bench.measures.big`): built in chunks of signed events with
  `append_many`, the process pinned to one core (unpinned, the batch sizes, and so the
  rate, depend on how the caller and the sequencer meet on the two cores, which would
  hide any effect of size; see item 1); each chunk's append is timed alone (the plot),
  signing is not. Then three
  more chunks at the full size (the probes), each followed by a chunk on a fresh ledger in
  the same process (after one warm-up chunk there); *growth* = the median rate at size /
  the median rate on the fresh ledger, taken in turn so that a slow spell of the machine
  lands on both sides. Then the SQLite file size after closing, `Ledger()` start-up, 1,000
  inclusion + consistency proofs from `Ledger` at random leaves and sizes, the title
  endpoint one request at a time over HTTP for random documents, `export_ledger` to a
  file and `encd.audit.audit_file` on it with a policy naming the log key; the audit's
  limit is raw verify on one thread measured just before and just after it (the mean).
- **Merkle** (`bench.measures.merkle`): the same 40-byte entries appended to
  `encd.merkle.CompactRange` (keeping the nodes it returns in a dict, as the ledger keeps
  them) and to pymerkle's `InmemoryTree` (the two roots are checked equal), then proofs
  at the same random leaves and sizes.
- **Profiles** (`make bench` passes `--profile`): py-spy samples every thread, the
  benchmark process during an append run (200 Hz) and the encd server process during a
  second 32-client load (50 Hz; not the load timed above: py-spy pauses the process to
  take each sample, which slows a server of ~50 threads several times over, so only the
  shares mean something); `bench/profile.py` sets the waiting samples apart and sums the
  rest per function. The report shows encd's own functions; the full lists (frameworks
  included, and by self time) are in `bench/profiles/*.txt`.
"""
