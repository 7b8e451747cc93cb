"""froc.png: the FROC curve as LUNA16 draws it, false positives per scan on a
log scale from 1/8 to 8, with the seven points CPM averages marked."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from torchlite.analysis.froc import FrocResult, interpolate_curve
from torchlite.utils.atomic import atomic_write


def rate_label(rate: float) -> str:
    """1/8 rather than 0.125."""
    if 0 < rate < 1 and float(1 / rate).is_integer():
        return f"1/{int(1 / rate)}"
    return f"{rate:g}"


def write_froc_plot(path: str | os.PathLike, result: FrocResult, title: str = "FROC") -> Path:
    """Draw ``result`` to ``path`` (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = result.fp_rates[0], result.fp_rates[-1]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    try:
        if result.n_nodules:
            # The interpolated curve the sensitivities are read from (the log axis cannot show its
            # origin, so it is sampled over the plotted range instead of drawn through its points).
            xs = np.geomspace(lo, hi, 400)
            ax.plot(xs, [interpolate_curve(result.curve_fps, result.curve_sensitivity, x) for x in xs],
                    color="tab:blue", label="FROC")
            ax.plot(result.fp_rates, result.sensitivities, "o", color="tab:red",
                    label=f"CPM = {result.cpm:.3f}")
            for x, y in zip(result.fp_rates, result.sensitivities):
                ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
            ax.legend(loc="lower right")
        else:
            ax.text(0.5, 0.5, "no nodules in the evaluated scans", transform=ax.transAxes, ha="center")
        ax.set_xscale("log", base=2)
        ax.set_xlim(lo / 1.15, hi * 1.15)
        ax.set_xticks(result.fp_rates)
        ax.set_xticklabels([rate_label(r) for r in result.fp_rates])
        ax.set_ylim(0.0, 1.05)
        ax.set_xlabel("average false positives per scan")
        ax.set_ylabel("sensitivity")
        ax.set_title(f"{title}: {result.n_nodules} nodules, {result.n_scans} scans", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
    return Path(path)
