"""The plot of append throughput against ledger size: a PNG (matplotlib, Agg), or text.

Each point is one chunk of the build (``Ledger.append_many`` over a chunk of
signed events, timed alone) at the ledger size it started from; the probes
are the chunks appended once the ledger had reached its full size.  Two
lines give the scale: the raw verify rate on one core and half of it (the
one-core target); a third, the append rate of the process pinned to one core
measured on its own (item 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def points(results: dict[str, Any]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    series = results["series"]
    build = [(int(p["size"]), float(p["events_per_s"])) for p in series["append_by_size"]]
    probes = [(int(p["size"]), float(p["events_per_s"])) for p in series["probes"]]
    return build, probes


def png(results: dict[str, Any], path: Path) -> bool:
    """Write the plot to ``path``; False when matplotlib is not installed."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    from matplotlib.ticker import FuncFormatter  # type: ignore[import-not-found,unused-ignore]

    build, probes = points(results)
    figures = results["figures"]
    verify = figures["verify_per_s_1core"]
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    ax.plot(
        [s for s, _ in build],
        [r for _, r in build],
        marker=".",
        linewidth=1,
        label=(
            f"append_many, one chunk of {results['sizes']['chunk_events']:,} events"
            + (", pinned to one core" if results.get("build_pinned") else "")
        ),
    )
    ax.plot(
        [s for s, _ in probes],
        [r for _, r in probes],
        marker="o",
        linestyle="none",
        color="tab:red",
        label="probe chunks at the full size",
    )
    ax.axhline(
        verify, color="tab:green", linestyle="--", label=f"raw verify, one core ({verify:,.0f}/s)"
    )
    pinned = figures.get("append_per_s_1core")
    if pinned:
        ax.axhline(
            pinned,
            color="tab:purple",
            linestyle="-.",
            label=f"append_many, process pinned to one core ({pinned:,.0f}/s)",
        )
    ax.axhline(
        verify / 2,
        color="tab:olive",
        linestyle=":",
        label=f"target: half of it ({verify / 2:,.0f}/s)",
    )
    ax.set_xlabel("ledger size (events) when the chunk was appended")
    ax.set_ylabel("events appended per second")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    ax.grid(True, alpha=0.3)
    ax.set_title(
        f"encd append throughput against ledger size ({results['mode']} run, "
        f"{results['date'][:10]}, {results['git_commit'][:8]}, {results['cores']} cores)"
    )
    ax.legend(loc="center right", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def text(results: dict[str, Any], width: int = 60, height: int = 12) -> str:
    """The same plot in characters, for a machine without matplotlib."""
    build, probes = points(results)
    everything = build + probes
    if not everything:
        return "(no points)\n"
    top = max(max(r for _, r in everything), results["figures"]["verify_per_s_1core"] / 2) * 1.05
    right = max(s for s, _ in everything) or 1
    grid = [[" "] * width for _ in range(height)]
    half = results["figures"]["verify_per_s_1core"] / 2
    half_row = height - 1 - min(height - 1, int(half / top * (height - 1)))
    for x in range(width):
        grid[half_row][x] = "-"
    for mark, pts in (("*", build), ("o", probes)):
        for size, rate in pts:
            x = min(width - 1, int(size / right * (width - 1)))
            y = height - 1 - min(height - 1, int(rate / top * (height - 1)))
            grid[y][x] = mark
    lines = [
        f"{top * (height - 1 - i) / (height - 1):>8,.0f} |" + "".join(row)
        for i, row in enumerate(grid)
    ]
    lines.append(" " * 9 + "+" + "-" * width)
    lines.append(" " * 10 + f"0{'ledger size':^{width - 12}}{right:,}")
    lines.append(
        "  * build chunks   o probes at the full size   --- target (half the one-core verify rate)"
    )
    return "\n".join(lines) + "\n"
