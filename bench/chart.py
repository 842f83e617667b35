"""Draw docs/performance-throughput.png: no-op burn-down jobs/s vs concurrency per library.

Runs in .venv-bench (matplotlib is a bench-only dependency). Reads from stdin a JSON object
``{library: [[concurrency, median, min, max], ...]}`` and writes the PNG named by argv[1].
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    data = json.load(sys.stdin)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    markers = {"river-queue": "o", "pgqueuer": "s", "procrastinate": "^"}
    for library, points in sorted(data.items()):
        xs = [p[0] for p in points]
        med = [p[1] for p in points]
        lo = [p[1] - p[2] for p in points]
        hi = [p[3] - p[1] for p in points]
        ax.errorbar(
            xs, med, yerr=[lo, hi], marker=markers.get(library, "o"), capsize=3, label=library
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrency (max jobs running at once)")
    ax.set_ylabel("no-op jobs worked per second")
    ax.set_title("Burn-down throughput vs concurrency (median, min-max bars)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(sys.argv[1])


if __name__ == "__main__":
    main()
